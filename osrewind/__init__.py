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


def _inherited_signals() -> tuple[frozenset[int], frozenset[int]]:
    """(ignored, blocked) signals as osrewind's parent left them, read before anything here changes
    them (the embedded store blocks SIGPIPE in the thread that opens it). Python itself ignores
    SIGPIPE and SIGXFSZ at startup, so whether the parent did is unknown: they count as default."""
    import signal

    forced = {signal.SIGPIPE, signal.SIGXFSZ}
    ignored = frozenset(int(s) for s in signal.valid_signals()
                        if s not in forced and signal.getsignal(s) is signal.SIG_IGN)
    blocked = frozenset(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return ignored, blocked


# What a recorded command gets back before exec (with every other signal at its default), so it runs
# as it would have without osrewind: `nohup osrewind record -- cmd` still ignores SIGHUP.
INHERITED_SIGNALS_IGNORED, INHERITED_SIGNAL_MASK = _inherited_signals()


def _umask() -> int:
    mask = _os.umask(0o077)
    _os.umask(mask)
    return mask


# The umask osrewind was started with: the embedded store narrows this process's umask to 077 (a
# store is private), and a recorded command gets this one back before it starts.
INHERITED_UMASK = _umask()
