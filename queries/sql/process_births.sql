-- process_births: which process forked which, for following a process tree (--tree).
-- Parameters: run (UUID).
SELECT tgid AS parent, toUInt32(a1) AS child
FROM events
WHERE run_id = {run:UUID} AND kind = 'fork'
  AND (a2 = -1 OR bitAnd(a2, 65536) = 0)   -- not CLONE_THREAD
UNION ALL
SELECT ppid AS parent, pid AS child
FROM snapshot_procs
WHERE run_id = {run:UUID}
