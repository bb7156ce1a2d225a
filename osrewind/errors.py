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
