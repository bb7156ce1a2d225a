-- top_syscalls: syscalls of a run in a time window by total time spent in them. Syscalls the kernel
-- counted instead of recording (`syscall_agg`: a0 calls, a1 failed, dur their time summed, ts the
-- first one's entry) count in full; max_ns is over recorded calls only.
-- Parameters: run (UUID), t_from, t_to (Int64), lim (UInt32).
SELECT nr, sum(if(kind = 'syscall_agg', a0, 1)) AS calls, sum(dur) AS total_ns, maxIf(dur, kind = 'syscall') AS max_ns,
       countIf(kind = 'syscall' AND ret < 0 AND ret >= -4095) + sumIf(a1, kind = 'syscall_agg') AS failed,
       uniqExact(tgid) AS processes
FROM events
WHERE run_id = {run:UUID} AND kind IN ('syscall', 'syscall_agg') AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
GROUP BY nr
ORDER BY total_ns DESC, calls DESC
LIMIT {lim:UInt32}
