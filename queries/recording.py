"""Recording a run and indexing it, as every way in does it (``osrewind record``, ``demo``, the TUI's
live mode): the recorder (``osrewind.ingest.recorder``) writes keyframes as it goes through a live
indexer; when it has ended, the tail is indexed and the run's history written. A store that failed
under the recording takes no keyframes (``osrewind reindex`` builds them once it works)."""

from __future__ import annotations

import time
from collections.abc import Callable

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
