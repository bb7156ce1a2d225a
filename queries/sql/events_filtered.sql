-- events_filtered: the facts of one run, filtered, in time order (or newest first when `backwards`).
-- Parameters: run (UUID); t_from, t_to (Int64, CLOCK_MONOTONIC ns, inclusive);
-- pids (Array(UInt32), empty = all; matched against tgid or tid, and a context switch's next process); kinds (Array(String), empty = all);
-- path_re (String, RE2 on path or rename target, empty = all; bytes that are not UTF-8 are matched as
-- U+FFFD, one per run); failed (UInt8: only syscalls that returned an error, and aggregates with failures);
-- nrs (Array(UInt16), syscall numbers: the syscall stream and its aggregates, these only, empty = all);
-- backwards (UInt8); c_ts, c_seq (Int64, UInt64: a cursor, rows strictly after it,
-- or before it when backwards); lim (UInt64).
SELECT
    ts, seq, toString(kind) AS kind, tgid, tid, ret, a0, a1, a2, a3, a4, a5, dur, nr, cpu, comm, path, path2,
    argv
FROM events
WHERE run_id = {run:UUID}
  AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
  AND if({backwards:UInt8}, (ts, seq) < ({c_ts:Int64}, {c_seq:UInt64}), (ts, seq) > ({c_ts:Int64}, {c_seq:UInt64}))
  AND (empty({pids:Array(UInt32)}) OR has({pids:Array(UInt32)}, tgid) OR has({pids:Array(UInt32)}, tid)
       OR (kind = 'sched_switch' AND a2 >= 0 AND has({pids:Array(UInt32)}, toUInt32(a2))))
  AND (empty({kinds:Array(String)}) OR has({kinds:Array(String)}, toString(kind)))
  AND (empty({nrs:Array(UInt16)}) OR (kind IN ('syscall', 'syscall_agg') AND has({nrs:Array(UInt16)}, nr)))
  AND ({path_re:String} = '' OR match(toValidUTF8(path), {path_re:String})
       OR match(toValidUTF8(path2), {path_re:String}))
  AND (NOT {failed:UInt8} OR (kind = 'syscall_agg' AND a1 > 0) OR (ret < 0 AND ret >= -4095
       AND kind NOT IN ('fork', 'exec', 'exec_args', 'exit_call', 'task_exit', 'lost', 'signal_generate',
                        'signal_deliver', 'oom_victim', 'sched_switch', 'sched_wakeup', 'sched_migrate', 'io', 'sock_state')))
ORDER BY
    if({backwards:UInt8}, -ts, ts),
    if({backwards:UInt8}, -toInt64(seq), toInt64(seq))
LIMIT {lim:UInt64}
