-- cpu_switches: every context switch in a window, per CPU in time order: who came on (tid, process,
-- comm; process -1 for a task outside the recording's scope, tid 0 for idle).
-- Parameters: run (UUID); t_from, t_to (Int64, CLOCK_MONOTONIC ns, inclusive).
SELECT cpu, ts, a1 AS next_tid, a2 AS next_pid, path AS next_comm
FROM events
WHERE run_id = {run:UUID} AND kind = 'sched_switch' AND ts BETWEEN {t_from:Int64} AND {t_to:Int64}
ORDER BY cpu, ts, seq
