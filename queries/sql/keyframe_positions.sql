-- keyframe_positions: where a run's keyframes are (small columns only), to pick the one for an
-- instant without reading any state blob.
-- Parameters: run (UUID).
SELECT ts, seq
FROM keyframes
WHERE run_id = {run:UUID}
ORDER BY ts, seq
