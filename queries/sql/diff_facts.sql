-- diff_facts: what a run's processes did that a diff compares, each as a signature without pids,
-- fds or times: execs, process forks, file operations with their result (ok or the errno number),
-- connects and binds, exit_group codes; in time order. `child`: a fork's new pid (to name what it
-- became), else 0.
-- Parameters: run (UUID).
SELECT ts, tgid, toString(kind) AS kind, if(kind = 'fork', a1, 0) AS child,
       multiIf(kind = 'open', concat('open', char(31), if(bitAnd(a2, 579) != 0, 'write', 'read'), char(31), path),
               kind = 'fork', 'fork',
               kind = 'exec', concat('exec', char(31), path),
               kind = 'exit_call', concat('exit', char(31), toString(bitAnd(a0, 255))),
               kind = 'rename', concat('rename', char(31), path, char(31), path2),
               concat(toString(kind), char(31), path))
         || if(kind IN ('fork', 'exec', 'exit_call'), '', concat(char(31), if(ret >= 0, 'ok', toString(-ret))))
         AS sig
FROM events
WHERE run_id = {run:UUID}
  AND kind IN ('exec', 'fork', 'open', 'unlink', 'rename', 'mkdir', 'chdir', 'exec_fail', 'connect', 'bind',
               'exit_call')
  AND NOT (kind = 'fork' AND a2 != -1 AND bitAnd(a2, 65536) != 0)
  AND NOT (kind = 'exit_call' AND a1 != 1)
ORDER BY ts, seq
