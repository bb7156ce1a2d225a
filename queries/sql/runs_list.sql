-- runs_list: every recorded run, newest first, with its real end (a run whose recorder died keeps
-- status 'recording' and end_ns 0: its last event's time stands in for the end).
-- Parameters: limit (UInt32).
SELECT
    toString(r.run_id) AS run_id, r.name, r.host, r.kernel, r.command, r.cwd, r.scope, r.root_pid,
    r.start_ns,
    greatest(r.end_ns, coalesce(e.last_ts, r.start_ns)) AS end_ns,
    r.wall_offset_ns,
    greatest(r.events, coalesce(e.n, 0)) AS events,
    r.lost, r.exit_code, r.status
FROM (SELECT * FROM runs FINAL) AS r
LEFT JOIN (SELECT run_id, max(ts) AS last_ts, count() AS n FROM events GROUP BY run_id) AS e
    ON e.run_id = r.run_id
ORDER BY r.start_ns DESC, r.run_id
LIMIT {limit:UInt32}
