-- top_files: paths opened, renamed, deleted or made in a time window, most touched first.
-- Parameters: run (UUID), t_from, t_to (Int64), lim (UInt32).
SELECT path, count() AS touches, countIf(kind = 'open') AS opens, countIf(ret < 0) AS failed,
       uniqExact(tgid) AS processes, groupUniqArray(3)(toString(kind)) AS kinds
FROM events
WHERE run_id = {run:UUID} AND kind IN ('open', 'rename', 'unlink', 'mkdir', 'chdir', 'exec', 'exec_fail')
  AND ts BETWEEN {t_from:Int64} AND {t_to:Int64} AND path != ''
GROUP BY path
ORDER BY touches DESC, path
LIMIT {lim:UInt32}
