-- keyframe_positions: where a run's keyframes are (small columns only), to pick the one for an
-- instant without reading any state blob; from the run's current index build.
-- Parameters: run (UUID).
SELECT ts, seq
FROM keyframes
WHERE run_id = {run:UUID}
  AND gen = (SELECT max(gen) FROM index_builds WHERE run_id = {run:UUID})   -- the current index build
ORDER BY ts, seq
