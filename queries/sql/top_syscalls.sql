-- top_syscalls: syscalls of a run in a time window by total time spent in them.
-- Parameters: run (UUID), t_from, t_to (Int64), lim (UInt32).
SELECT nr, count() AS calls, sum(dur) AS total_ns, max(dur) AS max_ns,
       countIf(ret < 0 AND ret >= -4095) AS failed, uniqExact(tgid) AS processes
FROM events
WHERE run_id = {run:UUID} AND kind = 'syscall' AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
GROUP BY nr
ORDER BY total_ns DESC, calls DESC
LIMIT {lim:UInt32}
