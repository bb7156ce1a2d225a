-- process_reads: the files one process (pid, start_ns) opened for reading or read from, up to an instant.
-- Parameters: run (UUID), pid (UInt32), start (Int64), until (Int64).
SELECT DISTINCT path
FROM file_access
WHERE run_id = {run:UUID} AND pid = {pid:UInt32} AND start_ns = {start:Int64} AND op = 'read'
  AND ts <= {until:Int64}
  AND gen = (SELECT max(gen) FROM index_builds WHERE run_id = {run:UUID})   -- the current index build
ORDER BY path
