-- file_history: every use of one path in a run, in order: opened to read or write, renamed to or
-- from it, deleted (paths resolved against the process's cwd and dirfds while indexing).
-- Parameters: run (UUID), path (String).
SELECT ts, pid, start_ns, op, path, path2
FROM file_access
WHERE run_id = {run:UUID} AND (path = {path:String} OR (op = 'rename' AND path2 = {path:String}))
  AND gen = (SELECT max(gen) FROM index_builds WHERE run_id = {run:UUID})   -- the current index build
ORDER BY ts
