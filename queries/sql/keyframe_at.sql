-- keyframe_at: the last keyframe of a run at or before instant `at` (the state after the fact at
-- (ts, seq)), to rewind from it instead of from the run's start. The position is found first on the
-- small columns, so only one state blob is read.
-- Parameters: run (UUID), at (Int64, CLOCK_MONOTONIC ns).
SELECT ts, seq, facts, format, state
FROM keyframes
WHERE run_id = {run:UUID}
  AND (ts, seq) = (SELECT max((ts, seq)) FROM keyframes WHERE run_id = {run:UUID} AND ts <= {at:Int64})
LIMIT 1
