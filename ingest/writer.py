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

import collections
import queue
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from osrewind.ingest import decode
from osrewind.ingest.redact import Redactor
from osrewind.ingest.store import Store
from osrewind.probes import records

MAX_QUEUED_ROWS = 1_000_000


def _unit_bytes() -> int:
    """Drained bytes per queue unit: MAX_QUEUED_ROWS // 1000 units hold up to a quarter of the
    memory available (at most 4 GiB, at least 1000 MiB): the ~860 MB of compact records of a
    3M-block `dd bs=1` are held while the store catches up."""
    try:
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        avail = 0
    return min(4 << 20, max(1 << 20, avail // 4 // (MAX_QUEUED_ROWS // 1000)))


QUEUE_UNIT_BYTES = _unit_bytes()
# While records arrive faster than this (per second, over the last FLOOD_WINDOW seconds), decoding and
# inserting wait, up to FLOOD_MAX_UNITS units held: on a small machine the recorded workload keeps the
# CPUs, the store catches up when the flood ends (or when the recording does).
FLOOD_RECORDS_PER_S = 400_000
FLOOD_WINDOW = 0.3
FLOOD_MAX_UNITS = (MAX_QUEUED_ROWS // 1000) * 3 // 4
# records decoded and inserted at once when catching up (one insert, one part)
CATCH_UP_RECORDS = 1_000_000
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
        self._pairer = decode.SyscallPairer()   # the syscall lane's enters and exits, paired across batches
        self.shed = 0               # stream records dropped because the queue was full (counted as lost)
        self._queue: queue.Queue = queue.Queue()
        self._space = threading.Semaphore(MAX_QUEUED_ROWS // 1000)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="osrewind-writer", daemon=True)
        self._thread.start()

    def put(self, ev: records.Drained | np.ndarray, taken_ns: int = 0) -> None:
        """Records to insert: a drain of the rings, or state-lane records made in user space;
        ``taken_ns``: when the drain that read them began (every record stamped before then that had
        reached the ring is in this batch or an earlier one)."""
        self.check()
        if isinstance(ev, np.ndarray):
            ev = records.Drained(state=ev)
        if len(ev):
            units = min(MAX_QUEUED_ROWS // 1000, max(1, ev.nbytes // QUEUE_UNIT_BYTES))
            got = 0
            while got < units and self._space.acquire(blocking=False):
                got += 1
            if got < units and ev.raw.keys() - {"events"}:
                # the queue is full: the stream lanes are shed here (counted), the state lane is kept
                self._release(got)
                kept = records.Drained({r: b for r, b in ev.raw.items() if r == "events"}, ev.state)
                self.shed += len(ev) - len(kept)
                self.lost(time.monotonic_ns(), len(ev) - len(kept), records.DROP_CODES["queue_full"])
                if not len(kept):
                    return
                ev, got, units = kept, 0, 1
            for _ in range(units - got):
                self._space.acquire()
            self._queue.put(("events", (ev, taken_ns), units))

    def insert(self, table: str, data) -> None:
        """Any other Arrow table (e.g. the baseline), written in order with the events: one thread
        uses the store client."""
        self._queue.put(("table", (table, data), 0))

    def lost(self, ts: int, count: int, cause: int = 0) -> None:
        """``count`` records dropped before ``ts`` at ``cause`` (``records.DROPS``)."""
        self._queue.put(("lost", (ts, count, cause), 0))

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
        held_units = 0           # queue units of the records in `pending`, released once inserted
        arrivals: collections.deque = collections.deque()   # (when, records) of recent batches
        try:
            while True:
                timeout = (IDLE_CHECK_SECONDS if self.guard else None) if not pending else \
                    max(0.0, self.batch_seconds - (time.monotonic() - oldest))
                if pending and self._flooding(arrivals, held_units):
                    timeout = FLOOD_WINDOW / 3
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = "flush"
                if self.guard is not None:
                    self.guard()
                if item == "flush" and self._flooding(arrivals, held_units):
                    continue
                if item is None or item == "flush":
                    self._insert(pending, taken, final=item is None)
                    pending, rows = [], 0
                    self._release(held_units)
                    held_units = 0
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
                    self._release(held_units)
                    held_units = 0
                    ts, count, cause = payload
                    self.store.insert_arrow("events", decode.lost_row(self.run_id, ts, self._seq, count, cause))
                    self._seq += 1
                    continue
                if not pending:
                    oldest = time.monotonic()
                ev, taken_ns = payload
                pending.append(ev)
                rows += len(ev)
                taken = max(taken, taken_ns)
                held_units += units
                now = time.monotonic()
                arrivals.append((now, len(ev)))
                while arrivals and arrivals[0][0] < now - FLOOD_WINDOW:
                    arrivals.popleft()
                if rows >= self.batch_rows and not self._flooding(arrivals, held_units):
                    self._insert(pending, taken)
                    pending, rows = [], 0
                    self._release(held_units)
                    held_units = 0
        except BaseException as exc:  # noqa: BLE001 - handed to the recorder thread by check()
            self.failed_ns = time.monotonic_ns()
            self._error = exc
            # keep releasing producers so the recorder never blocks on a dead writer
            for _ in range(MAX_QUEUED_ROWS // 1000):
                self._space.release()

    def _release(self, units: int) -> None:
        for _ in range(units):
            self._space.release()

    @staticmethod
    def _flooding(arrivals: collections.deque, held_units: int) -> bool:
        """Records are arriving faster than FLOOD_RECORDS_PER_S and there is room to hold them."""
        if not arrivals or held_units >= FLOOD_MAX_UNITS:
            return False
        if time.monotonic() - arrivals[-1][0] > FLOOD_WINDOW:
            return False
        return sum(n for _, n in arrivals) > FLOOD_RECORDS_PER_S * FLOOD_WINDOW

    def _insert(self, pending: list[records.Drained], taken_ns: int = 0, final: bool = False) -> None:
        """Decode and insert ``pending`` (in parts of about CATCH_UP_RECORDS records)."""
        if not pending and not final:
            return
        start, count = 0, 0
        for i, d in enumerate(pending):
            count += len(d)
            if count >= CATCH_UP_RECORDS and i + 1 < len(pending):
                self._insert_part(pending[start : i + 1], 0, False)  # the store is complete only at the end
                start, count = i + 1, 0
        self._insert_part(pending[start:], taken_ns, final)

    def _insert_part(self, pending: list[records.Drained], taken_ns: int, final: bool) -> None:
        tables, n, held_since = decode.lane_tables(pending, self._pairer, self.run_id, self._seq, final=final)
        if n:
            batch = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            self.store.insert_arrow("events", self.redact.table("events", batch) if self.redact else batch)
        self._seq += n
        self.written += n
        self.progress(self.written)
        if held_since is not None:  # a syscall whose enter is still to come may be older than the drain
            taken_ns = min(taken_ns, held_since)
        if self.on_insert is not None and taken_ns:
            try:
                self.on_insert(taken_ns)
            except Exception:  # noqa: BLE001 - indexing is derived data: never stops the recording
                self.on_insert = None
