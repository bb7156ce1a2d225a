-- keyframe_state: one keyframe's state blob, by its exact position in an index build (gen: the
-- run's current one is max(gen) in index_builds, 0 when it has no row there).
-- Parameters: run (UUID), ts (Int64), seq (UInt64), gen (UInt64).
SELECT state
FROM keyframes
PREWHERE run_id = {run:UUID} AND ts = {ts:Int64} AND seq = {seq:UInt64}
  AND gen = {gen:UInt64}   -- the current index build (see index_builds)
LIMIT 1
