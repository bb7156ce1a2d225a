-- top_processes: the busiest processes of a run in a time window: on-CPU time (from context
-- switches: how long each switched-in task ran until the next switch on that CPU), syscalls, time
-- spent in syscalls, failed syscalls (recorded ones, and those the kernel counted in `syscall_agg`
-- facts while the stream was degraded: a0 calls, a1 failed, dur their time) and facts of any kind.
-- Parameters: run (UUID), t_from, t_to (Int64, CLOCK_MONOTONIC ns), lim (UInt32).
WITH
    oncpu AS (
        SELECT toUInt32(a2) AS pid, sum(least(next_ts, {t_to:Int64}) - ts) AS cpu_ns
        FROM (
            SELECT ts, a2, leadInFrame(ts, 1, {t_to:Int64}) OVER (PARTITION BY cpu ORDER BY ts, seq
                ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING) AS next_ts
            FROM events
            WHERE run_id = {run:UUID} AND kind = 'sched_switch' AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
        )
        WHERE a2 >= 0
        GROUP BY pid
    ),
    activity AS (
        SELECT tgid AS pid, any(comm) AS comm, count() AS events,
               countIf(kind = 'syscall') + sumIf(a0, kind = 'syscall_agg') AS syscalls,
               sumIf(dur, kind IN ('syscall', 'syscall_agg')) AS syscall_ns,
               countIf(kind = 'syscall' AND ret < 0 AND ret >= -4095) + sumIf(a1, kind = 'syscall_agg') AS failed
        FROM events
        WHERE run_id = {run:UUID} AND ts BETWEEN {t_from:Int64} AND {t_to:Int64} AND tgid != 0
        GROUP BY tgid
    )
SELECT a.pid, a.comm, coalesce(o.cpu_ns, 0) AS cpu_ns, a.syscalls, a.syscall_ns, a.failed, a.events
FROM activity AS a
LEFT JOIN oncpu AS o ON o.pid = a.pid
ORDER BY cpu_ns DESC, syscall_ns DESC, events DESC
LIMIT {lim:UInt32}
