-- snapshot_procs: the processes in scope when recording started (the /proc baseline).
-- Parameters: run (UUID).
SELECT pid, ppid, start_ns, uid, comm, exe, argv, cwd, threads, ts
FROM snapshot_procs
WHERE run_id = {run:UUID}
ORDER BY pid
