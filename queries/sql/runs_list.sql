-- runs_list: every recorded run, newest first, as its run row says: O(runs), never a scan of the
-- events. The recorder writes a run's counts and end when it finishes; a run whose row was never
-- finished (status 'recording': still being recorded, or its recorder died) has events 0 and
-- end_ns 0 here, and queries/runs.py completes it from `run_totals`.
-- Parameters: limit (UInt32).
SELECT
    toString(r.run_id) AS run_id, r.name, r.host, r.kernel, r.command, r.cwd, r.scope, r.root_pid,
    r.start_ns, r.end_ns, r.wall_offset_ns, r.events, r.lost, r.exit_code, r.status,
    -- why it ended so (a failed run); a matcher, not a name: a store made before the column, read
    -- without upgrading it, has none, and the row is one column shorter
    COLUMNS('^status_detail$'),
    -- how files were identified: 'kernel' or 'path' (none in a store made before the column)
    COLUMNS('^identity$')
FROM (SELECT * FROM runs FINAL) AS r
ORDER BY r.start_ns DESC, r.run_id
LIMIT {limit:UInt32}
