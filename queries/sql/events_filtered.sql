-- events_filtered: the facts of one run, filtered, in time order (or newest first when `backwards`).
-- Parameters: run (UUID); t_from, t_to (Int64, CLOCK_MONOTONIC ns, inclusive);
-- pids (Array(UInt32), empty = all; matched against tgid or tid); kinds (Array(String), empty = all);
-- path_re (String, RE2 on path or rename target, empty = all); failed (UInt8: only syscalls that
-- returned an error); backwards (UInt8); c_ts, c_seq (Int64, UInt64: a cursor, rows strictly after it,
-- or before it when backwards); lim (UInt64).
SELECT
    ts, seq, toString(kind) AS kind, tgid, tid, ret, a0, a1, a2, a3, comm, path, path2, argv
FROM events
WHERE run_id = {run:UUID}
  AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
  AND if({backwards:UInt8}, (ts, seq) < ({c_ts:Int64}, {c_seq:UInt64}), (ts, seq) > ({c_ts:Int64}, {c_seq:UInt64}))
  AND (empty({pids:Array(UInt32)}) OR has({pids:Array(UInt32)}, tgid) OR has({pids:Array(UInt32)}, tid))
  AND (empty({kinds:Array(String)}) OR has({kinds:Array(String)}, toString(kind)))
  AND ({path_re:String} = '' OR match(path, {path_re:String}) OR match(path2, {path_re:String}))
  AND (NOT {failed:UInt8} OR (ret < 0 AND ret >= -4095
       AND kind NOT IN ('fork', 'exec', 'exec_args', 'exit_call', 'task_exit', 'lost', 'signal_generate',
                        'signal_deliver', 'oom_victim')))
ORDER BY
    if({backwards:UInt8}, -ts, ts),
    if({backwards:UInt8}, -toInt64(seq), toInt64(seq))
LIMIT {lim:UInt64}
