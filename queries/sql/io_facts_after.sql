-- io_facts_after: the successful reads, writes, sends and receives (syscall facts with ret > 0 whose
-- number is in io_nrs) strictly after the cursor (c_ts, c_seq) up to and including instant `at`, in
-- order, at most `lim` of them: only the columns the indexer needs of them (who, which fd, how many
-- bytes, which call). The indexer reads them beside `state_events_after` with an empty io_nrs, so the
-- many reads and writes of a run never carry the string columns of the few state facts.
-- Parameters: run (UUID), at (Int64, CLOCK_MONOTONIC ns), c_ts (Int64), c_seq (UInt64), lim (UInt64),
-- io_nrs (Array(UInt16)).
SELECT ts, seq, tgid, a0, ret, nr
FROM events
WHERE run_id = {run:UUID}
  AND ts <= {at:Int64}
  AND ts >= {c_ts:Int64}                               -- lets the primary key skip what is before
  AND (ts, seq) > ({c_ts:Int64}, {c_seq:UInt64})
  AND kind = 'syscall' AND ret > 0 AND has({io_nrs:Array(UInt16)}, nr)
ORDER BY ts, seq
LIMIT {lim:UInt64}
