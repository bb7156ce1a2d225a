-- run_processes: every process of a run (from the run's index): birth, parent, execs, exit.
-- Parameters: run (UUID).
-- cgroup (a matcher: a store made before the column has none, the row is one shorter)
SELECT pid, start_ns, ppid, parent_start_ns, end_ns, exit_code, from_snapshot, exec_ts, exec_exe, exec_argv,
       COLUMNS('^cgroup$')
FROM processes
WHERE run_id = {run:UUID}
  AND gen = (SELECT max(gen) FROM index_builds WHERE run_id = {run:UUID})   -- the current index build
ORDER BY start_ns, pid
