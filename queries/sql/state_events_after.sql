-- state_events_after: the facts that change processes, fd tables, working directories, sockets and
-- what runs where, in order, strictly after the cursor (c_ts, c_seq: a keyframe's position, or -1, 0
-- for the run's start) up to and including instant `at`, at most `lim` of them.
-- Parameters: run (UUID), at (Int64, CLOCK_MONOTONIC ns), c_ts (Int64), c_seq (UInt64), lim (UInt64),
-- io_nrs (Array(UInt16): the numbers of the read/write/send/recv syscalls, whose byte counts add up
-- per socket), uid_nrs (Array(UInt16): setuid, setreuid, setresuid, which set a process's real uid).
SELECT
    ts, seq, CAST(kind, 'Int8') AS kind_code, tgid, tid, ret, a0, a1, a2, a3, a4, a5, nr, cpu, comm, path, path2, argv
FROM events
WHERE run_id = {run:UUID}
  AND ts <= {at:Int64}
  AND ts >= {c_ts:Int64}                               -- lets the primary key skip what is before
  AND (ts, seq) > ({c_ts:Int64}, {c_seq:UInt64})
  AND (kind IN ('fork', 'exec', 'exec_args', 'exec_fail', 'exit_call', 'task_exit', 'wait', 'open',
               'close', 'close_range', 'dup', 'setfd', 'pipe', 'chdir', 'fchdir', 'rename', 'unlink',
               'socket', 'socketpair', 'accept', 'anonfd', 'sched_switch', 'sched_wakeup', 'bind', 'connect',
               'listen', 'shutdown', 'sock_state', 'sockname', 'io', 'identity', 'cgroup')
       OR (kind = 'syscall' AND ret > 0 AND has({io_nrs:Array(UInt16)}, nr))
       OR (kind = 'syscall' AND ret = 0 AND has({uid_nrs:Array(UInt16)}, nr)))
ORDER BY ts, seq
LIMIT {lim:UInt64}
