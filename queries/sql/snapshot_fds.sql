-- snapshot_fds: the open file descriptors of the baseline processes when recording started.
-- Parameters: run (UUID).
SELECT pid, fd, target, kind, flags
FROM snapshot_fds
WHERE run_id = {run:UUID}
ORDER BY pid, fd
