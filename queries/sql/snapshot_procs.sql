-- snapshot_procs: the processes in scope when recording started (the /proc baseline).
-- Parameters: run (UUID).
-- The last column, the cgroup, is a matcher: a store made before it has none (the row is shorter).
SELECT pid, ppid, start_ns, uid, comm, exe, argv, cwd, threads, ts, COLUMNS('^cgroup$')
FROM snapshot_procs
WHERE run_id = {run:UUID}
ORDER BY pid
