-- keyframe_at: the last keyframe of a run at or before instant `at` (the state after the fact at
-- (ts, seq)), to rewind from it instead of from the run's start.
-- Parameters: run (UUID), at (Int64, CLOCK_MONOTONIC ns).
SELECT ts, seq, facts, format, state
FROM keyframes
WHERE run_id = {run:UUID} AND ts <= {at:Int64}
ORDER BY ts DESC, seq DESC
LIMIT 1
