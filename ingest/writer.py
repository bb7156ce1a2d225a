"""The insert side of a recording, on its own thread.

The recorder's loop only copies records out of the kernel's ring buffer (a memcpy per drain) and
hands them here; decoding and the columnar insert run on this thread, so a slow insert never stops
the ring from being drained. Batches are up to ``batch_rows`` records or ``batch_seconds`` old.
If the store falls far behind, ``put`` blocks (bounded memory) and the kernel counts what it drops.

``on_insert(upto_ns)`` is told, after each insert, that every record taken from the ring before
``upto_ns`` is in the store (a live indexer reads behind the writer from there).

Every table goes through ``redact`` (``record --redact``) on its way to the store.

A store error stops the writer for good: it writes nothing more, notes when (``failed_ns``) and
keeps the error (``error``; ``put``, ``check`` and ``close`` raise it in the caller's thread), and
never blocks a producer again. ``guard`` is called before every write and at least every
``IDLE_CHECK_SECONDS`` while idle; it raises when the store can no longer be written (e.g. its
directory was removed, which the engine would not notice: it recreates paths as it writes).
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np

from osrewind.ingest import decode
from osrewind.ingest.redact import Redactor
from osrewind.ingest.store import Store

MAX_QUEUED_ROWS = 1_000_000
IDLE_CHECK_SECONDS = 0.25


class EventWriter:
    def __init__(self, store: Store, run_id: uuid.UUID, progress: Callable[[int], None] | None = None,
                 batch_rows: int = 50_000, batch_seconds: float = 0.5,
                 on_insert: Callable[[int], None] | None = None, redact: Redactor | None = None,
                 guard: Callable[[], None] | None = None) -> None:
        self.store = store
        self.redact = redact if redact else None
        self.run_id = run_id
        self.progress = progress or (lambda n: None)
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.on_insert = on_insert
        self.written = 0            # records inserted (lost markers not counted)
        self.guard = guard
        self.failed_ns: int | None = None   # CLOCK_MONOTONIC when the store failed, None while it works
        self._seq = 0
        self._queue: queue.Queue = queue.Queue()
        self._space = threading.Semaphore(MAX_QUEUED_ROWS // 1000)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="osrewind-writer", daemon=True)
        self._thread.start()

    def put(self, ev: np.ndarray, taken_ns: int = 0) -> None:
        """Records to insert; ``taken_ns``: when the drain that read them began (every record stamped
        before then that had reached the ring is in this batch or an earlier one)."""
        self.check()
        if len(ev):
            units = max(1, len(ev) // 1000)
            for _ in range(units):
                self._space.acquire()
            self._queue.put(("events", (ev, taken_ns), units))

    def insert(self, table: str, data) -> None:
        """Any other Arrow table (e.g. the baseline), written in order with the events: one thread
        uses the store client."""
        self._queue.put(("table", (table, data), 0))

    def lost(self, ts: int, count: int) -> None:
        self._queue.put(("lost", (ts, count), 0))

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the writer (e.g. the store failed), None while it works."""
        return self._error

    def check(self) -> None:
        """Re-raise, in the caller's thread, an error the writer hit (e.g. the store failed)."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        self.check()

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        pending: list[np.ndarray] = []
        rows = 0
        taken = 0
        oldest = 0.0
        try:
            while True:
                timeout = (IDLE_CHECK_SECONDS if self.guard else None) if not pending else \
                    max(0.0, self.batch_seconds - (time.monotonic() - oldest))
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = "flush"
                if self.guard is not None:
                    self.guard()
                if item is None or item == "flush":
                    self._insert(pending, taken)
                    pending, rows = [], 0
                    if item is None:
                        return
                    continue
                what, payload, units = item
                if what == "table":
                    table, data = payload
                    self.store.insert_arrow(table, self.redact.table(table, data) if self.redact else data)
                    continue
                if what == "lost":
                    self._insert(pending, taken)
                    pending, rows = [], 0
                    ts, count = payload
                    self.store.insert_arrow("events", decode.lost_row(self.run_id, ts, self._seq, count))
                    self._seq += 1
                    continue
                if not pending:
                    oldest = time.monotonic()
                ev, taken_ns = payload
                pending.append(ev)
                rows += len(ev)
                taken = max(taken, taken_ns)
                for _ in range(units):
                    self._space.release()
                if rows >= self.batch_rows:
                    self._insert(pending, taken)
                    pending, rows = [], 0
        except BaseException as exc:  # noqa: BLE001 - handed to the recorder thread by check()
            self.failed_ns = time.monotonic_ns()
            self._error = exc
            # keep releasing producers so the recorder never blocks on a dead writer
            for _ in range(MAX_QUEUED_ROWS // 1000):
                self._space.release()

    def _insert(self, pending: list[np.ndarray], taken_ns: int = 0) -> None:
        if not pending:
            return
        ev = np.concatenate(pending) if len(pending) > 1 else pending[0]
        batch = decode.to_arrow(ev, self.run_id, self._seq)
        self.store.insert_arrow("events", self.redact.table("events", batch) if self.redact else batch)
        self._seq += len(ev)
        self.written += len(ev)
        self.progress(self.written)
        if self.on_insert is not None and taken_ns:
            try:
                self.on_insert(taken_ns)
            except Exception:  # noqa: BLE001 - indexing is derived data: never stops the recording
                self.on_insert = None
