-- run_gaps: where the kernel dropped records (ring buffer full): when it was noticed and how many.
-- Parameters: run (UUID).
SELECT ts, a0 AS lost
FROM events
WHERE run_id = {run:UUID} AND kind = 'lost'
ORDER BY ts
