-- top_endpoints: network endpoints in a time window: addresses connected to, accepted from, bound,
-- and TCP connections by their state changes.
-- Parameters: run (UUID), t_from, t_to (Int64), lim (UInt32).
SELECT endpoint, sum(n) AS events, groupUniqArray(4)(what) AS how, sum(failed) AS failed
FROM (
    SELECT path AS endpoint, toString(kind) AS what, 1 AS n, toUInt8(ret < 0 AND kind != 'accept') AS failed
    FROM events
    WHERE run_id = {run:UUID} AND kind IN ('connect', 'accept', 'bind') AND path != ''
      AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
    UNION ALL
    SELECT path2 AS endpoint, 'tcp' AS what, 1 AS n, 0 AS failed
    FROM events
    WHERE run_id = {run:UUID} AND kind = 'sock_state' AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
)
GROUP BY endpoint
ORDER BY events DESC, endpoint
LIMIT {lim:UInt32}
