"""osrewind: a flight recorder and time-travel debugger for Linux.

Stages, each in its own top-level folder mapped under this package:
``osrewind.probes`` (kernel programs and their loader) -> ``osrewind.ingest`` (decode, batch,
store) -> ``osrewind.queries`` (rewind and named SQL) -> ``osrewind.cli`` / ``osrewind.tui``.
A stage imports only from the stages before it (checked by import-linter in the test suite).
"""

__version__ = "0.1.0"
