"""osrewind: a flight recorder and time-travel debugger for Linux.

Stages, each in its own top-level folder mapped under this package:
``osrewind.probes`` (kernel programs and their loader) -> ``osrewind.ingest`` (decode, batch,
store) -> ``osrewind.queries`` (rewind and named SQL) -> ``osrewind.cli`` / ``osrewind.tui``.
A stage imports only from the stages before it (checked by import-linter in the test suite).
"""

import os as _os

__version__ = "0.1.0"


def _open_fds() -> frozenset[int]:
    try:
        return frozenset(int(n) for n in _os.listdir("/proc/self/fd"))
    except OSError:
        return frozenset({0, 1, 2})


# The fds osrewind was started with (its user's stdin/out/err, a jobserver pipe...): a recorded
# command inherits these, and none of the ones osrewind's own engine opens later.
INHERITED_FDS = _open_fds()
