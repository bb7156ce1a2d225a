"""The insert side of a recording: the run's spool first, then decode and insert on their own thread.

Everything a recording keeps goes through here, in order: drains of the rings (``put_rings``, the
ring's bytes copied once, straight into the spool), state records made in user space (``put``),
``lost`` markers and whole tables (``insert``, e.g. the /proc baseline). Each is appended to the
run's spool (``osrewind.ingest.spool``) on the caller's thread, which does nothing else with it; the
writer thread reads the frames back behind it, decodes them and inserts columnar batches of up to
``batch_rows`` records or ``batch_seconds`` old. A slow store never holds up the drain: the spool
absorbs the difference, up to its ``max_bytes``; past that the stream lanes (every syscall, the
scheduler) are shed and counted as lost (``spool_full``) while state facts are always kept.

While a program is recorded, the writer, the inserters and the store engine's threads run in the
background (nice 19, ``osrewind.ingest.background``): they take the CPU the recorded program leaves
over, so a flood is stored while it lasts, and a program that keeps every CPU busy loses almost
nothing to them (the spool holds what they have not taken yet).

Decoding and inserting overlap: the writer thread decodes a batch while inserter threads put the
ones before into the store, two at a time (``INSERTERS``, each on its own connection: the engine
works outside the interpreter lock and runs an insert on one thread, so after a flood decode and
inserts use both CPUs). Inserts may finish in any order; their commits (checkpoint, progress, the
indexer told) stay in spool order. An insert that fails stops the writer, and a batch after it that
went in meanwhile is taken out again: the store holds exactly what the checkpoint says.
While it catches up, the embedded store's merges wait (``PAUSED_MERGES_INSERTS``).

After each insert the writer checkpoints the spool (how far the store is complete) and the spool
deletes what is behind it: a recorder killed mid-run leaves exactly the frames not yet inserted,
which ``osrewind.ingest.spool.recover`` ingests later. ``replay`` is that recovery's entry point.

``on_insert(upto_ns)`` is told, after each insert, that every record taken from the rings before
``upto_ns`` is in the store (a live indexer reads behind the writer from there); not while the
writer is more than ``CATCH_UP_BYTES`` behind, so a catch-up has the interpreter to itself.

Every table goes through ``redact`` (``record --redact``) on its way to the store.

A store error stops the writer for good: it inserts nothing more, notes when (``failed_ns``) and
keeps the error (``error``; ``put``, ``check`` and ``close`` raise it in the caller's thread).
``guard`` is called before every insert and at least every ``IDLE_CHECK_SECONDS`` while idle; it
raises when the store can no longer be written (e.g. its directory was removed, which the engine
would not notice: it recreates paths as it writes).
"""

from __future__ import annotations

import errno
import io
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable

import numpy as np
import pyarrow as pa

from osrewind.ingest import decode, spool
from osrewind.ingest.redact import Redactor
from osrewind.ingest.schema import TABLES
from osrewind.ingest.spool import Frame, Pos, Spool
from osrewind.ingest.store import Store
from osrewind.probes import records

# records decoded and inserted at once (one insert, one part): the most a batch holds (fewer when
# they arrive slower than this in batch_seconds). Larger parts cost less a row, in the insert and in
# the merges after it (a dd flood stored while it lasts: 14.0 s of CPU in all against 15.6 with
# parts of 50k, and stored 0.27 s after the flood against 0.46: medians of 4, interleaved); while
# catching up, the next part is decoded while this one is inserted
CATCH_UP_RECORDS = 250_000
# Behind by more than this (spool bytes not yet in the store), the writer is catching up: the live
# indexer is not woken (about a quarter of a second of the writer's work at flood rates)
CATCH_UP_BYTES = 32 << 20
IDLE_CHECK_SECONDS = 0.25
# Inserts at once (each its own connection, the engine runs an insert on one thread). Replaying a
# 4M-event dd spool with merges waiting, two side by side caught up in 0.94-1.0 s what one at a time
# took 1.28-1.52; in the recorder itself, whose catch-up shares the CPUs with more (the hooks being
# released, the spool's files), 1.30-1.33 s against 1.35-1.50 (3 rounds each, interleaved)
INSERTERS = 2
# While catching up, the embedded store's merges wait (a quarter of the CPU time of a catch-up went
# to merging the parts it had just made): for at most this many inserts, then they run again
PAUSED_MERGES_INSERTS = 200

_STREAM_RINGS = ("rb_sc", "rb_sched")


def keep_freed_memory() -> None:
    """Let the C allocator keep the memory a batch frees for the next batch (glibc only; elsewhere
    nothing changes). By default each large array is mapped fresh and unmapped when freed, so every
    batch's decode paid the kernel for zeroing new pages again: 10-30% of the decode time here."""
    global _KEPT
    if _KEPT:
        return
    _KEPT = True
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 256 << 20)   # requests up to 256 MiB come from the heap...
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)   # ...which keeps up to 256 MiB free for reuse
    except (OSError, AttributeError):
        pass


def _drained(raw: dict[str, np.ndarray], states: list[np.ndarray]) -> records.Drained:
    """What ``spool.read_drains`` read, as the decoder takes it (the user-space state parts as one
    array of state records)."""
    state = None if not states else states[0] if len(states) == 1 else np.concatenate(states)
    return records.Drained(raw, None if state is None else state.view(records.EVENT_DTYPE))


_KEPT = False
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


class EventWriter:
    def __init__(self, store: Store, run_id: uuid.UUID, spool_: Spool,
                 progress: Callable[[int], None] | None = None,
                 batch_rows: int = CATCH_UP_RECORDS, batch_seconds: float = 0.5,
                 on_insert: Callable[[int], None] | None = None, redact: Redactor | None = None,
                 guard: Callable[[], None] | None = None, thread: bool = True) -> None:
        self.store = store
        self.spool = spool_
        self.redact = redact if redact else None
        self.run_id = run_id
        self.progress = progress or (lambda n: None)
        self.batch_rows = batch_rows
        self.batch_seconds = batch_seconds
        self.on_insert = on_insert
        self.written = 0            # records inserted (lost markers not counted)
        self._decoded = 0           # records decoded (inserted, or on their way to the inserter)
        self.guard = guard
        self.failed_ns: int | None = None   # CLOCK_MONOTONIC when the store failed, None while it works
        self.seq = 0
        self.stream = decode.SyscallStream()   # the syscall lane: task names carried across batches
        # recovering a dead recorder's spool: ring bytes the disk lost are cut, and a whole table's rows
        # of this run (the baseline) replace any its first insert left
        self.recovering = False
        self.shed = 0               # stream records not spooled because the spool was full (counted as lost)
        self._consumed = 0          # payload bytes of the frames inserted so far
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = None
        # decoded batches waiting for an inserter thread: one queued, so besides the batches being
        # inserted (one per inserter) at most two more are decoded (one queued, one waiting to be)
        self._jobs: queue.Queue | None = None
        self._inserters: list[threading.Thread] = []
        self._channels: list[Store] = []        # the inserters' own connections besides ``store``
        self._insert_error: BaseException | None = None
        # inserts finish in any order, their checkpoints in spool order: batch ``_next_commit`` is
        # committed (checkpoint, progress, indexer told) once every batch before it has been
        self._commit_lock = threading.Lock()
        self._next_job = 0
        self._next_commit = 0
        self._done: dict[int, Callable[[], None]] = {}   # inserted, waiting for a batch before them
        self._committed_seq = 0                          # rows numbered below this are committed
        self._merges_paused = 0     # inserts made while merges wait (0: they run)
        self._merges_capped = False  # they waited PAUSED_MERGES_INSERTS inserts: they run until caught up
        keep_freed_memory()
        if thread:
            self._jobs = queue.Queue(maxsize=1)
            stores = [store]
            for _ in range(INSERTERS - 1):
                channel = store.insert_channel() if hasattr(store, "insert_channel") else None
                if channel is not None:
                    self._channels.append(channel)
                    stores.append(channel)
            for i, target in enumerate(stores):
                t = threading.Thread(target=self._insert_jobs, args=(target,), name=f"osrewind-inserter-{i}",
                                     daemon=True)
                t.start()
                self._inserters.append(t)
            self._thread = threading.Thread(target=self._run, name="osrewind-writer", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ producer side (the drain)

    def put_rings(self, views: dict[str, np.ndarray], taken_ns: int = 0) -> None:
        """A drain of the rings (``Probe.drain_into``'s views): copied into the spool at once.
        ``taken_ns``: when the drain began (every record stamped before then that had reached a
        ring is in this drain or an earlier one)."""
        self.check()
        if self.spool.full and any(r in views for r in _STREAM_RINGS):
            # the store is too far behind: the stream lanes are shed here (counted), state facts kept
            shed = sum(len(views[r]) // records.slot_size(records.RINGS[r]) for r in _STREAM_RINGS if r in views)
            views = {r: v for r, v in views.items() if r not in _STREAM_RINGS}
            self.shed += shed
            self.lost(time.monotonic_ns(), shed, records.DROP_CODES["spool_full"])
            if not views:
                return
        parts = [(spool.RING_PARTS[r], v) for r, v in views.items() if len(v)]
        if parts:
            self._queue.put(self.spool.append(spool.DRAIN, taken_ns, parts))

    def put(self, state: np.ndarray, taken_ns: int = 0) -> None:
        """State-lane records made in user space (``records.EVENT_DTYPE``: --aggregate-io sums,
        degraded syscalls' counts), kept like a drain's."""
        self.check()
        if len(state):
            self._queue.put(self.spool.append(spool.DRAIN, taken_ns, [(spool.PART_STATE, state)]))

    def insert(self, table: str, data: pa.Table) -> None:
        """Any other Arrow table (e.g. the baseline), kept in order with the events (nothing, once
        the writer has failed)."""
        if self._error is not None:
            return
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, data.schema) as w:
            w.write_table(data)
        self._queue.put(self.spool.append(spool.TABLE, 0, [(spool.PART_NAME, table.encode()),
                                                           (spool.PART_ARROW, sink.getvalue())]))

    def lost(self, ts: int, count: int, cause: int = 0) -> None:
        """``count`` records dropped before ``ts`` at ``cause`` (``records.DROPS``)."""
        if self._error is not None:
            return
        self._queue.put(self.spool.append(spool.LOST, ts, [(spool.PART_LOST, spool.LOST_ROW.pack(ts, count, cause))]))

    @property
    def error(self) -> BaseException | None:
        """The error that stopped the writer (e.g. the store failed), None while it works."""
        return self._error

    def check(self) -> None:
        """Re-raise, in the caller's thread, an error the writer hit (e.g. the store failed)."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Insert everything spooled, then stop the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join()
        self.check()

    @property
    def backlog(self) -> int:
        """Spooled bytes not in the store yet."""
        return self.spool.backlog

    # ------------------------------------------------------------------ recovery

    def resume(self, checkpoint: dict | None) -> None:
        """Carry on from a checkpoint of an earlier writer of this run (recovery)."""
        if checkpoint:
            self.seq = self._committed_seq = int(checkpoint["seq"])
            self.written = self._decoded = int(checkpoint["written"])
            self.stream.restore(checkpoint["held"])

    def replay(self, frames: Iterable[Frame]) -> None:
        """Insert ``frames`` (read back from a dead recorder's spool) on this thread, then the end;
        far behind (a large spool), merges wait meanwhile, as after a flood."""
        pending: list[Frame] = []
        rows = 0
        for f in frames:
            if f.type == spool.DRAIN:
                pending.append(f)
                rows += f.records()
                if rows >= CATCH_UP_RECORDS:
                    self._insert(pending)
                    pending, rows = [], 0
            else:
                self._insert(pending)
                pending, rows = [], 0
                self._one(f)
        self._insert(pending)
        self._settle()   # merges run again (a catch-up made them wait)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        pending: list[Frame] = []
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
                if self._insert_error is not None:   # the inserter stopped: so does the writer
                    raise self._insert_error
                if self.guard is not None:
                    self.guard()
                if item is None or item == "flush":
                    self._insert(pending, taken)
                    pending, rows = [], 0
                    if item is None:
                        self._settle()
                        return
                    continue
                if item.type != spool.DRAIN:
                    self._insert(pending, taken)
                    pending, rows = [], 0
                    self._one(item)
                    continue
                if not pending:
                    oldest = time.monotonic()
                pending.append(item)
                n = item.records()
                rows += n
                taken = max(taken, item.taken_ns)
                if rows >= self.batch_rows:
                    self._insert(pending, taken)
                    pending, rows = [], 0
        except BaseException as exc:  # noqa: BLE001 - handed to the recorder thread by check()
            self.failed_ns = self.failed_ns or time.monotonic_ns()
            self._error = self._why(exc)
        finally:
            if self._jobs is not None:
                for _ in self._inserters:
                    self._jobs.put(None)   # each inserter stops after what it has
                for t in self._inserters:
                    t.join()
                self._unmake_uncommitted()
                for channel in self._channels:
                    channel.close()

    def _why(self, exc: BaseException) -> BaseException:
        """What stopped the writer, in the user's terms: an insert that failed because the store's
        directory was just removed (the engine's "file not found") is the store being gone, which
        the guard says plainly; any other error is itself."""
        if self.guard is not None and isinstance(exc, Exception):
            try:
                self.guard()
            except Exception as gone:  # noqa: BLE001 - the guard's own error is the better reason
                return gone
        return exc

    def _one(self, f: Frame) -> None:
        """A LOST or TABLE frame: inserted on its own (once the batches before it are in), then
        checkpointed."""
        self._settle()
        data = spool.read_payload(self.spool.path, f)
        if f.type == spool.LOST:
            ts, count, cause = spool.LOST_ROW.unpack(data[spool.PART_LOST].tobytes())
            self.store.insert_arrow("events", decode.lost_row(self.run_id, ts, self.seq, count, cause))
            self.seq += 1
        elif f.type == spool.TABLE:
            name = data[spool.PART_NAME].tobytes().decode()
            if name not in TABLES:
                raise spool.SpoolError(errno.EINVAL, f"spool frame for unknown table {name!r}")
            table = pa.ipc.open_stream(pa.py_buffer(data[spool.PART_ARROW])).read_all()
            if self.recovering:
                self.store.client.command(f"{self.store.delete_from(name)} WHERE run_id = {{run:UUID}}",
                                          parameters={"run": str(self.run_id)})
            self.store.insert_arrow(name, self.redact.table(name, table) if self.redact else table)
        self._consumed += f.nbytes
        self._checkpoint(f.end)

    def _checkpoint(self, pos: Pos) -> None:
        self.spool.checkpoint(pos, self.seq, self.written, self.stream.held(), self._consumed)

    def _settle(self) -> None:
        """Wait until every decoded batch is in the store; raise what stopped the inserter."""
        if self._jobs is not None:
            self._jobs.join()
        with self._commit_lock:
            self._pace_merges(False)
        if self._insert_error is not None:
            raise self._insert_error

    def _pace_merges(self, catching_up: bool) -> None:
        """Merges wait while the writer catches up, for at most PAUSED_MERGES_INSERTS inserts (then
        they run until it has caught up), and run again once it has. Called on the inserting thread,
        or on the writer's once the inserter is idle."""
        try:
            if not catching_up:
                self._merges_capped = False
                if self._merges_paused:
                    self._merges_paused = 0
                    self.store.pause_merges("events", False)
            elif self._merges_paused:
                self._merges_paused += 1
                if self._merges_paused > PAUSED_MERGES_INSERTS:
                    self._merges_paused, self._merges_capped = 0, True
                    self.store.pause_merges("events", False)
            elif not self._merges_capped:
                self._merges_paused = 1 if self.store.pause_merges("events", True) else 0
        except Exception:  # noqa: BLE001, S110 - merges are the engine's housekeeping: never stops an insert
            pass

    def _insert_jobs(self, store: Store) -> None:
        """An inserter thread (INSERTERS of them, each on its own connection to the store): decoded
        batches into the store, each then committed in spool order (``_commit``). After an error it
        only acknowledges what comes (the writer thread raises the error)."""
        assert self._jobs is not None
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._insert_error is None:
                    index, insert, commit = job
                    insert(store)
                    self._commit(index, commit)
            except BaseException as exc:  # noqa: BLE001 - raised on the writer thread by _settle
                with self._commit_lock:
                    self.failed_ns = self.failed_ns or time.monotonic_ns()
                    self._insert_error = self._insert_error or exc
                self._queue.put("flush")   # wakes the writer thread, which stops with the error
            finally:
                self._jobs.task_done()

    def _commit(self, index: int, commit: Callable[[], None]) -> None:
        """Batch ``index`` is in the store: commit it, and every inserted batch after it that waited
        for it, in order."""
        with self._commit_lock:
            self._done[index] = commit
            while self._next_commit in self._done and self._insert_error is None:
                self._done.pop(self._next_commit)()
                self._next_commit += 1

    def _unmake_uncommitted(self) -> None:
        """After an insert failed, the batches after it that went in meanwhile (the other inserter's)
        are taken out again, so that the store holds exactly what the checkpoint says: everything
        before the failure, nothing after. Best effort (a store that failed may refuse this too);
        recovering a spool deletes rows past its checkpoint the same way."""
        if not self._done:
            return
        self._done.clear()
        try:
            self.store.delete_events_from(str(self.run_id), self._committed_seq)
        except Exception:  # noqa: BLE001, S110 - the run says it failed, and when
            pass

    def _insert(self, pending: list[Frame], taken_ns: int = 0) -> None:
        """Read back, decode and insert ``pending`` (in parts of about CATCH_UP_RECORDS records)."""
        if not pending:
            return
        start, count = 0, 0
        for i, f in enumerate(pending):
            count += f.records()
            if count >= CATCH_UP_RECORDS and i + 1 < len(pending):
                self._insert_part(pending[start : i + 1], 0)  # the store is complete only at the end
                start, count = i + 1, 0
        self._insert_part(pending[start:], taken_ns)

    def _insert_part(self, frames: list[Frame], taken_ns: int) -> None:
        if self.guard is not None:
            self.guard()
        if self.recovering:   # each frame's ring bytes cut where a torn one ends, before joining
            drains = []
            for f in frames:
                raw, states = spool.read_drains(self.spool.path, [f])
                drains.append(_drained({r: spool.valid_prefix(b, records.RINGS[r]) for r, b in raw.items()}, states))
        else:
            drains = [_drained(*spool.read_drains(self.spool.path, frames))]
        tables, n = decode.lane_tables(drains, self.stream, self.run_id, self.seq)
        batch = None
        if n:
            batch = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            batch = self.redact.table("events", batch) if self.redact else batch
            batch = decode.without_empty_columns(batch)
        self.seq += n
        self._decoded += n
        # what the checkpoint after this batch's insert says: as things stand now, decoded
        end = frames[-1].end if frames else None
        self._consumed += sum(f.nbytes for f in frames)
        mark = (self.seq, self._decoded, self.stream.held(), self._consumed)

        catching_up = self.spool.backlog >= CATCH_UP_BYTES

        def insert(store: Store) -> None:
            if self.guard is not None:
                self.guard()
            with self._commit_lock:
                self._pace_merges(catching_up)
            if batch is not None:
                store.insert_arrow("events", batch)

        def commit() -> None:
            self.written = mark[1]
            self._committed_seq = mark[0]
            if end is not None:
                self.spool.checkpoint(end, *mark)
            self.progress(mark[1])
            # not told while the writer is far behind (catching up after a flood): an indexer working
            # then would take turns with it (one interpreter) and only make the store complete later
            if self.on_insert is not None and taken_ns and self.spool.backlog < CATCH_UP_BYTES:
                try:
                    self.on_insert(taken_ns)
                except Exception:  # noqa: BLE001 - indexing is derived data: never stops the recording
                    self.on_insert = None

        if self._jobs is None:
            insert(self.store)
            commit()
            return
        if self._insert_error is not None:
            raise self._insert_error
        self._jobs.put((self._next_job, insert, commit))
        self._next_job += 1
