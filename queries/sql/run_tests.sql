-- run_tests: the tests of a recorded pytest session (pytest --osrewind), in the order they started:
-- node id, outcome (passed, failed, error, skipped, died), pid, xdist worker, window and phases
-- (CLOCK_MONOTONIC ns; 0: the phase did not happen), failure message. Parameters: run (UUID).
SELECT nodeid, outcome, pid, worker, start_ns, end_ns, setup_start_ns, setup_end_ns, call_start_ns,
       call_end_ns, teardown_start_ns, teardown_end_ns, message
FROM tests
WHERE run_id = {run:UUID}
ORDER BY start_ns, nodeid
