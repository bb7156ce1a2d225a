-- event_density: how many facts fall in each of equal time buckets of a span (the timeline's sparkline).
-- Parameters: run (UUID); t_from, t_to (Int64, CLOCK_MONOTONIC ns, inclusive); width (Int64, ns per bucket).
SELECT intDiv(ts - {t_from:Int64}, {width:Int64}) AS bucket, count() AS facts
FROM events
WHERE run_id = {run:UUID} AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
GROUP BY bucket
ORDER BY bucket
