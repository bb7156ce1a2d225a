-- keyframe_state: one keyframe's state blob, by its exact position.
-- Parameters: run (UUID), ts (Int64), seq (UInt64).
SELECT state
FROM keyframes
PREWHERE run_id = {run:UUID} AND ts = {ts:Int64} AND seq = {seq:UInt64}
LIMIT 1
