-- run_totals: what an unfinished run row cannot say, counted from the stored facts of those runs
-- only (the events' primary key starts with run_id, so other runs are never read): the records
-- stored (lost markers not counted, as the recorder counts them), the records lost (the sum of the
-- `lost` facts) and the instant of the last fact.
-- Parameters: runs (Array(UUID)).
SELECT
    toString(e.run_id) AS run,
    countIf(kind != 'lost') AS events,
    toUInt64(sumIf(a0, kind = 'lost')) AS lost,
    max(ts) AS last_ts
FROM events AS e
WHERE has({runs:Array(UUID)}, e.run_id)
GROUP BY e.run_id
ORDER BY e.run_id
