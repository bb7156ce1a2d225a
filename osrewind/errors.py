"""The one exception family users see. The CLI prints ``osrewind: <message>`` and exits non-zero."""


class OsrewindError(Exception):
    """A user-facing error: the message is one line that says what is wrong and what to do."""

    exit_code = 2


class UsageError(OsrewindError):
    """Bad input from the user: unknown run, malformed time, out-of-range instant..."""


class EnvironmentProblem(OsrewindError):
    """The machine cannot record: not root, BCC or kernel headers missing, tracefs unavailable."""

    exit_code = 3


class StoreError(OsrewindError):
    """The store cannot be opened or used: locked by a recording, corrupt, unreachable."""

    exit_code = 4


class CommandNotRun(OsrewindError):
    """The command to record could not be started. Exits as a shell would: 127 when it was not
    found, 126 when it was found but could not be run (permission denied, not an executable, a
    directory). ``result`` is the run's summary when a (failed) run was written, else None."""

    def __init__(self, message: str, exit_code: int = 127, result: object = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.result = result
