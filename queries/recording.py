"""Recording a run and indexing it, as every way in does it (``osrewind record``, ``demo``, the TUI's
live mode): the recorder (``osrewind.ingest.recorder``) writes keyframes as it goes through a live
indexer; when it has ended, the tail is indexed and the run's history written. A store that failed
under the recording takes no keyframes (``osrewind reindex`` builds them once it works)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from osrewind.ingest.recorder import Recorder, RecordOptions
from osrewind.queries import keyframes
from osrewind.queries.runs import resolve_run


class Session:
    """One recording and its index. ``run()`` records and returns the recorder's result; ``index()``
    then finishes the keyframes (its errors are the caller's to report: the run is saved either way)."""

    def __init__(self, store, opts: RecordOptions, progress: Callable[[str], None] | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.indexer = keyframes.LiveIndexer(store)
        self.recorder = Recorder(store, opts, progress, indexer=self.indexer, notice=notice)
        self.run_id = str(self.recorder.run_id)
        self.indexed_s = 0.0

    def run(self):
        return self.recorder.run()

    def index(self, result, progress: Callable[[int], None] | None = None) -> bool:
        """The tail of the run's keyframes and its history; False (nothing done) when the store failed
        under the recording."""
        failure = result.failure
        if failure is not None and failure.in_store:
            return False
        t0 = time.monotonic()
        self.indexer.progress = progress
        self.indexer.finish(resolve_run(self.store, self.run_id))
        self.indexed_s = time.monotonic() - t0
        return True


@dataclass
class Hunt:
    """What ``hunt`` saw: every attempt's result, and the passing and the failing run it kept."""
    attempts: list = field(default_factory=list)
    passed: object | None = None
    failed: object | None = None

    @property
    def found(self) -> bool:
        return self.passed is not None and self.failed is not None


def hunt(store, options: Callable[[int], RecordOptions], runs: int,
         on_attempt: Callable[[int, object, Hunt], None] | None = None,
         notice: Callable[[str], None] | None = None) -> Hunt:
    """Record the command of ``options(i)`` again and again (at most ``runs`` times) until it has both
    passed (exit 0) and failed (any other exit); keep the first run of each, indexed, and delete the
    others. Stops early when a recording is interrupted (Ctrl-C) or fails (the store): what was kept
    stays. ``on_attempt(i, result, hunt)`` after each."""
    found = Hunt()
    for i in range(runs):
        session = Session(store, options(i), notice=notice)
        result = session.run()
        found.attempts.append(result)
        keep = False
        if result.status == "complete" and result.exit_code is not None:
            if result.exit_code == 0 and found.passed is None:
                found.passed, keep = result, True
            elif result.exit_code != 0 and found.failed is None:
                found.failed, keep = result, True
        if keep or result.status != "complete":
            session.index(result)   # (an interrupted or failed recording is kept as it is)
        else:
            store.delete_run(str(result.run_id))   # a repeat of an outcome already kept
        if on_attempt is not None:
            on_attempt(i, result, found)
        if found.found or result.status != "complete":
            break
    return found
