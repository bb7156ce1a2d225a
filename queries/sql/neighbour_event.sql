-- neighbour_event: the latest fact (lost-record gaps included) before an instant (backwards = 1) or the earliest after it, looked
-- for within [t_from, t_to] (callers widen the window until one is found); NULL when there is none.
-- Parameters: run (UUID); at (Int64, CLOCK_MONOTONIC ns, excluded); t_from, t_to (Int64); backwards (UInt8).
SELECT if({backwards:UInt8}, maxOrNull(ts), minOrNull(ts)) AS found
FROM events
WHERE run_id = {run:UUID} AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
  AND if({backwards:UInt8}, ts < {at:Int64}, ts > {at:Int64})
