"""Keyframes: the whole rewound state every N changes of it (and at least every SPAN * N facts of
any kind), so a rewind reads one keyframe plus the facts since it, not the run from its start.

A keyframe is derived data: the ``Machine`` serialised after the fact at (ts, seq). Keyframes are
written while a recording runs (``LiveIndexer``: it reads the facts the recorder has stored, a little
behind, and advances a Machine), the tail and the run's history when it ends; ``build`` rebuilds them
all from the events (``osrewind reindex``). A run without keyframes still answers by replaying from
the baseline. Both paths give the same state (tests check this at many random instants).

A rebuild never leaves a run without an index: every derived row carries the *generation* (``gen``)
of the build that wrote it, and the readers (``queries/sql/keyframe_*.sql``, ``run_processes.sql``,
``file_history.sql``, ``process_reads.sql``) take only the run's current one, the largest ``gen``
in ``index_builds`` (0, what the live indexer writes, when the run has no row there). ``build``
writes a new generation beside the old, records it in ``index_builds`` (one insert: the swap) only
when all of it is written, and then deletes the older generations. A build that fails removes what
it wrote and the old index stays as it was; one that is killed leaves rows that no reader selects,
removed by the next build of that run. Stores made before generations existed are migrated by the
next write (``ensure_table``); until then their readers use the same SQL without the generation filter.

An open store keeps a few keyframes decoded and the facts between two keyframes once read: a scrub
asks for nearby instants again and again, and then touches the store no more.
"""

from __future__ import annotations

import bisect
import gc
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

from osrewind.errors import OsrewindError, StoreError
from osrewind.probes.records import KIND_CODES
from osrewind.queries import named, osquery
from osrewind.queries.cache import cache_for
from osrewind.queries.engine import Fd, HistoryLog, Machine, Proc, codec
from osrewind.queries.engine.intervals import IntervalLog, split_endpoint
from osrewind.queries.replay import apply_rows, baseline_machine, syscall_params
from osrewind.queries.runs import RunInfo

EVERY = 4_000           # state changes between keyframes: bounds a rewind's replay (~1 us a fact)
SPAN = 4                # and a keyframe at least every SPAN * EVERY facts of any kind (see Indexer)
PAGE = 200_000
LIVE_PAGE = 50_000      # while recording: short reads, the recorder's inserts share the client
_SYSCALL = KIND_CODES["syscall"]   # in state_events_after: a successful read or write, or a setuid-family call
SHORT_STRETCH = 16      # reads and writes in a row below which they are applied one by one
# A page where at least this share of the facts are reads and writes is read in two queries
# (``_page_sql``): the next page is read so too
TWO_STEP_SHARE = 0.5

HISTORY_DDL = ["""
CREATE TABLE IF NOT EXISTS processes (
    run_id UUID,
    pid UInt32,
    start_ns Int64,
    ppid UInt32,
    parent_start_ns Int64,
    end_ns Int64,
    exit_code Nullable(Int32),
    from_snapshot UInt8,
    exec_ts Array(Int64),
    exec_exe Array(String),
    exec_argv Array(Array(String)),
    gen UInt64 DEFAULT 0,
    cgroup String DEFAULT ''
) ENGINE = MergeTree ORDER BY (run_id, start_ns, pid)
""", """
CREATE TABLE IF NOT EXISTS file_access (
    run_id UUID,
    ts Int64,
    pid UInt32,
    start_ns Int64,
    op LowCardinality(String),
    path String CODEC(ZSTD(1)),
    path2 String CODEC(ZSTD(1)),
    gen UInt64 DEFAULT 0
) ENGINE = MergeTree ORDER BY (run_id, path, ts)
"""]

DERIVED_TABLES = ("keyframes", "processes", "file_access", *osquery.TABLE_NAMES)
INTERVAL_ROWS_KEPT = 50_000   # closed interval rows held before they are written
GEN_FILTER = "-- the current index build"   # marks the generation filter's line in queries/sql/

# The swap: one row per completed build; a run's current generation is its largest ``gen`` here.
BUILDS_DDL = """
CREATE TABLE IF NOT EXISTS index_builds (
    run_id UUID,
    gen UInt64,
    built_ns Int64
) ENGINE = MergeTree ORDER BY (run_id, gen)
"""

# One row per granule: reading one keyframe reads that blob alone (with the default granularity a
# granule held ~100 blobs, all decompressed to reach one). The blob is compressed already.
DDL = """
CREATE TABLE IF NOT EXISTS {table} (
    run_id UUID,
    ts Int64,
    seq UInt64,
    facts UInt64,
    format UInt8,
    state String CODEC(NONE),
    gen UInt64 DEFAULT 0
) ENGINE = MergeTree ORDER BY (run_id, ts, seq) SETTINGS index_granularity = 1
"""


# The keyframe encoding (a Machine as bytes and back) is the engine's: ``queries/engine/codec.py``.
dump, decode, machine, load = codec.dump, codec.decode, codec.machine, codec.load
FORMAT = codec.FORMAT


# ------------------------------------------------------------------ store


_WIDE_COLUMNS = "ts, seq, CAST(kind, 'Int8') AS kind_code, tgid, tid, ret, a0, a1, a2, a3, a4, a5, nr, cpu, comm, path, path2, argv"
_KEY_COLUMNS = "ts, seq, CAST(kind, 'Int8') AS kind_code, tgid, ret, a0, nr"
_ORDER = "ORDER BY ts, seq"


@cache
def _page_sql() -> tuple[str, str]:
    """The indexer's two queries for a page of an io-heavy run, both ``state_events_after`` itself:
    its facts with only the columns a read or write needs (what most of them are), then every
    column of its facts other than reads and writes (those up to the page's last instant ``at``
    are exactly the page's, unless a fact was stored in between). Measured on a dd run's 4M
    facts: the pages read in 0.99-1.0 s against 1.14-1.19 s with every column of every fact, and
    the run indexed in 2.23-2.31 s against 2.56-2.81 s."""
    text = named.sql("state_events_after")
    if text.count(_WIDE_COLUMNS) != 1 or text.count(_ORDER) != 1:
        raise RuntimeError("state_events_after.sql no longer has the column list or order the indexer expects")
    keys = text.replace(_WIDE_COLUMNS, _KEY_COLUMNS)
    others = text.replace(_ORDER, f"  AND NOT (kind = 'syscall' AND ret > 0)\n{_ORDER}")
    return keys, others


# One line of meaning for every column of the index's tables (osrewind sql --schema).
COLUMN_DOCS = {
    ("keyframes", "run_id"): "the run",
    ("keyframes", "ts"): "the instant of the state it holds (after the fact at ts, seq)",
    ("keyframes", "seq"): "that fact's seq",
    ("keyframes", "facts"): "facts applied up to it",
    ("keyframes", "format"): "how the state is encoded (queries/engine/codec.py)",
    ("keyframes", "state"): "the whole rewound state, compressed",
    ("keyframes", "gen"): "the index build that wrote the row",
    ("processes", "run_id"): "the run",
    ("processes", "pid"): "process id (the index's history: one row per process)",
    ("processes", "start_ns"): "when it started (CLOCK_MONOTONIC ns)",
    ("processes", "ppid"): "its parent",
    ("processes", "parent_start_ns"): "its parent's start (pid and start name one process)",
    ("processes", "end_ns"): "when it exited (0: still running at the end)",
    ("processes", "exit_code"): "its exit code",
    ("processes", "from_snapshot"): "1: it was running when recording started",
    ("processes", "exec_ts"): "when it executed each program",
    ("processes", "exec_exe"): "each program",
    ("processes", "exec_argv"): "each program's arguments",
    ("processes", "gen"): "the index build that wrote the row",
    ("processes", "cgroup"): "its cgroup v2 path (its last)",
    ("file_access", "run_id"): "the run",
    ("file_access", "ts"): "when",
    ("file_access", "pid"): "the process",
    ("file_access", "start_ns"): "its start",
    ("file_access", "op"): "read, write, wrote, renamed, unlinked, ... (the index's file history)",
    ("file_access", "path"): "the file, its path resolved",
    ("file_access", "path2"): "a rename's target",
    ("file_access", "gen"): "the index build that wrote the row",
    ("index_builds", "run_id"): "the run",
    ("index_builds", "gen"): "an index build of it (the largest is the current one)",
    ("index_builds", "built_ns"): "when it was built (ns since the epoch)",
}


def derived_ddl() -> dict[str, str]:
    """The index's tables, by name, as single-node DDL (``store init --cluster`` lays them out)."""
    return {"keyframes": DDL.format(table="keyframes"), "processes": HISTORY_DDL[0], "file_access": HISTORY_DDL[1],
            "index_builds": BUILDS_DDL, **{t.name: t.ddl() for t in osquery.TABLES}}


def _command(store, sql: str, params: dict | None = None) -> None:
    try:
        store.client.command(sql, parameters=params or {})
    except Exception as exc:  # noqa: BLE001 - the driver's errors, as one line
        text = str(exc).strip().splitlines()
        raise StoreError(f"writing the index failed: {text[0][:300] if text else type(exc).__name__}") from exc


def ensure_table(store) -> None:
    """The derived tables, with generations (a store made before them gains the ``gen`` columns,
    metadata only: existing rows are generation 0)."""
    try:
        rows = store.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                           "AND name = 'keyframes'")
        if rows and not re.search(r"index_granularity = 1\b", rows[0][0]):
            # made by an older osrewind: same rows, laid out for single-blob reads
            store.client.command("DROP TABLE IF EXISTS keyframes_old")
            store.client.command("RENAME TABLE keyframes TO keyframes_old")
            store.client.command(DDL.format(table="keyframes"))
            store.client.command("INSERT INTO keyframes (run_id, ts, seq, facts, format, state) "
                                 "SELECT run_id, ts, seq, facts, format, state FROM keyframes_old")
            store.client.command("DROP TABLE keyframes_old")
        if layout(store) != "gen":
            for ddl in [DDL.format(table="keyframes"), *HISTORY_DDL]:
                store.client.command(ddl)
            for table in ("keyframes", "processes", "file_access"):
                store.client.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS gen UInt64 DEFAULT 0")
            store.client.command(BUILDS_DDL)  # last: its presence says the others have generations
        for t in osquery.TABLES:   # the interval tables (a store indexed before them gains them empty)
            store.client.command(t.ddl())
        # each process's cgroup (its last): not in stores made before it
        store.client.command("ALTER TABLE processes ADD COLUMN IF NOT EXISTS cgroup String DEFAULT ''")
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot create the keyframes table: {exc}") from exc
    cache_for(store).index_layout = "gen"


def layout(store) -> str | None:
    """How this store keeps derived data: ``"gen"`` (generations), ``"legacy"`` (made by an older
    osrewind, not yet migrated) or None (never indexed). A yes is remembered per open store."""
    cache = cache_for(store)
    if cache.index_layout == "gen":
        return "gen"
    rows = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                       "AND name IN ('keyframes', 'index_builds')")
    names = {r[0] for r in rows}
    found = "gen" if "index_builds" in names else "legacy" if "keyframes" in names else None
    if found == "gen":
        cache.index_layout = found  # tables are never dropped
    return found


def has_table(store) -> bool:
    return layout(store) is not None


def derived_sql(store, name: str) -> str:
    """A named query over the derived tables, for this store: on a store not migrated yet (no
    generations), without its generation filter (the line marked ``-- the current index build``)."""
    text = named.sql(name)
    if layout(store) == "gen":
        return text
    return "\n".join(line for line in text.splitlines() if GEN_FILTER not in line)


def positions(store, run: RunInfo) -> list[tuple[int, int]]:
    """Where the run's keyframes are, remembered per open store (a scrub asks again and again)."""
    cache = cache_for(store)

    def read() -> list[tuple[int, int]]:
        cache.remember(cache.generations, run.run_id, lambda: current_gen(store, run.run_id))
        rows = store.query(derived_sql(store, "keyframe_positions"), {"run": run.run_id})
        return [(int(t), int(q)) for t, q in rows]

    return cache.remember(cache.positions, run.run_id, read)


def current_gen(store, run_id: str) -> int:
    """The run's current index build (0: the first, or a store without generations)."""
    if layout(store) != "gen":
        return 0
    rows = store.query("SELECT max(gen) FROM index_builds WHERE run_id = {r:UUID}", {"r": run_id})
    return int(rows[0][0]) if rows and rows[0][0] is not None else 0


def forget(store, run: RunInfo | str) -> None:
    """Drop what this open store remembers of a run's keyframes (they were just (re)written)."""
    cache_for(store).forget(getattr(run, "run_id", run))


def _fetch(store, run_id: str, ts: int, seq: int) -> bytes | None:
    # the row path: a one-row answer costs ~2 ms there against ~8 ms through Arrow
    cache = cache_for(store)
    gen = cache.remember(cache.generations, run_id, lambda: current_gen(store, run_id))
    rows = store.query_bytes(derived_sql(store, "keyframe_state"), {"run": run_id, "ts": ts, "seq": seq, "gen": gen},
                             ("state",))
    return rows[0][0] if rows else None


def frame(store, run: RunInfo, at_ns: int) -> tuple[int, int, tuple, tuple[int, int] | None] | None:
    """The last keyframe at or before ``at_ns``, decoded: (ts, seq, document, position of the next
    keyframe or None). Recent documents are kept per open store."""
    if not has_table(store):
        return None
    pos = positions(store, run)
    i = bisect.bisect_right(pos, (at_ns, 2**64)) - 1
    if i < 0:
        return None
    ts, seq = pos[i]
    nxt = pos[i + 1] if i + 1 < len(pos) else None
    cache = cache_for(store)
    key = (run.run_id, ts, seq)
    doc = cache.bounded_get(cache.docs, key)
    if doc is None:
        blob = _fetch(store, run.run_id, ts, seq)
        if blob is None:
            return None
        doc = decode(blob)
        cache.bounded_put(cache.docs, key, doc)
    return ts, seq, doc, nxt


# ------------------------------------------------------------------ indexing


def _io_mask(table):
    """Which facts of a ``state_events_after`` page are successful reads and writes (a setuid-family
    call is a syscall fact too, with ret 0: applied as a fact)."""
    return (table.column("kind_code").to_numpy() == _SYSCALL) & (table.column("ret").to_numpy() > 0)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while one page of facts is applied and its rows
    written (and while a run's history is written). A page makes
    hundreds of thousands of small objects that live on (fds, interval rows, history rows), and
    each collection the allocations set off walks all of them again: about 15% of an fd-heavy run's
    indexing CPU. What a page makes holds no cycles to speak of; the collector runs again between
    pages (one page bounds what waits for it)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Indexer:
    """A run's derived data, advanced as far as the stored facts allow: a Machine fed the run's
    facts in order, a keyframe every ``every`` of them, and the history of processes and files
    (written by ``finish``). ``build`` runs one over a whole run; ``LiveIndexer`` one while the run
    is recorded. Its rows are generation ``gen`` (see the module's header).

    Only facts that change the rewound state count towards a keyframe. A successful read or write
    (the syscall facts ``state_events_after`` returns) changes it only on a socket, whose byte
    counts it adds to; on a file, pipe or anything else it changes nothing (it only names, once per
    process, path and direction, who read or wrote a file: the history). So a run that moves bytes
    through files and never changes its fds gets keyframes by the other bound alone: one at least
    every ``SPAN * every`` facts of any kind, which keeps a rewind's replay bounded (a rewind replays
    every fact since its keyframe, changing or not). Those reads and writes are applied here in bulk,
    between two facts of another kind (an fd table cannot change among them): a socket's bytes are
    summed per fd, a file's first use per process and direction is logged, the rest is skipped, and
    no Python runs per record. The Machine ends exactly as ``apply_rows`` would leave it (a test
    checks this), and keyframe positions depend on the facts alone, so a live index and a rebuild
    write the same keyframes."""

    def __init__(self, store, run_id: str, every: int = EVERY, page: int = PAGE, gen: int = 0) -> None:
        self.store = store
        self.run_id = str(run_id)
        self.gen = gen
        self.every = every
        self.max_rows = SPAN * every
        self.page = page
        self.m: Machine | None = None
        self.log = HistoryLog()
        self.intervals = IntervalLog()
        self.c_ts, self.c_seq = -1, 0   # the last fact applied
        self.since_last = 0             # facts that changed the state since the last keyframe
        self.rows_since = 0             # facts of any kind since the last keyframe
        self.facts = 0
        self.frames = 0                 # keyframes inserted
        self.two_step = False           # the last page was mostly reads and writes: see _page

    def _machine(self) -> Machine:
        if self.m is None:  # the baseline is in the store before the first fact is
            self.m = baseline_machine(self.store, self.run_id)
            self.m.log = self.log
            for p in self.m.procs.values():
                self.log.adopt(p)
            rows = self.store.query("SELECT argMax(start_ns, updated_ns) FROM runs WHERE run_id = {r:UUID}",
                                    {"r": self.run_id})
            self.m.intervals = self.intervals
            self.intervals.begin(self.m, int(rows[0][0]) if rows else 0)   # the baseline holds from the start
        return self.m

    def advance(self, upto_ns: int = 2**63 - 1, progress: Callable[[int], None] | None = None,
                stop: threading.Event | None = None) -> int:
        """Apply every stored fact after the last one applied, up to and including ``upto_ns``;
        insert the keyframes that fall due. Returns how many facts were applied. ``stop`` ends it
        early, between two pages."""
        m = self._machine()
        done = 0
        while True:
            table, io, others = self._page(m, upto_ns)
            n = table.num_rows
            if n == 0:
                break
            with _collector_paused():
                frames = self._apply(m, table, io, others)
                self.c_ts, self.c_seq = int(table.column("ts")[n - 1].as_py()), int(table.column("seq")[n - 1].as_py())
                done += n
                self._insert(frames)
                if len(self.intervals.procs) + len(self.intervals.fds) >= INTERVAL_ROWS_KEPT:
                    _write_intervals(self.store, self.run_id, *self.intervals.take(), self.gen)
            if progress:
                progress(self.facts)
            if n < self.page or (stop is not None and stop.is_set()):
                break
        return done

    def _page(self, m: Machine, upto_ns: int):
        """The next page of facts after the cursor and which of them are reads and writes: (its
        facts, that mask, None) in one query, or, while pages are mostly reads and writes, (its facts
        with the columns a read or write needs, that mask, every column of its other facts) in two
        (``_page_sql``)."""
        import numpy as np

        params = {"run": self.run_id, "at": upto_ns, "c_ts": self.c_ts, "c_seq": self.c_seq, "lim": self.page,
                  **syscall_params(m)}
        narrow = self.two_step
        if narrow:
            keys_sql, others_sql = _page_sql()
            table = self.store.query_arrow(keys_sql, params, binary=True)
        else:
            table = named.run_arrow(self.store, "state_events_after", **params)
        n, others, io = table.num_rows, None, _io_mask(table)
        if n:
            moved = int(np.count_nonzero(io))
            if narrow and moved < n:
                last = int(table.column("ts")[n - 1].as_py())
                # one more than expected: a fact stored between the two queries, inside the page, shows
                others = self.store.query_arrow(others_sql, {**params, "at": last, "lim": n - moved + 1}, binary=True)
                if others.num_rows != n - moved:   # it did: the page is read again, whole
                    table, others = named.run_arrow(self.store, "state_events_after", **params), None
                    io = _io_mask(table)
            self.two_step = moved >= TWO_STEP_SHARE * n
        return table, io, others

    def _apply(self, m: Machine, table, io, others=None) -> list[tuple[int, int, int, bytes]]:
        """One page of facts, in order: the keyframes that fell due in it. ``io``: which are
        successful reads and writes; ``others``: every column of the other facts, when ``table``
        has only the keys (``_page``)."""
        import numpy as np

        n = table.num_rows
        ts = table.column("ts").to_numpy()
        seq = table.column("seq").to_numpy()
        bounds = np.flatnonzero(io[1:] != io[:-1]) + 1           # where a stretch of one sort ends
        other = np.flatnonzero(~io)
        cols = {} if not len(other) else named.columns(others if others is not None else table.take(other))
        rw = _ReadsWrites(table, m) if len(other) < n else None
        frames: list[tuple[int, int, int, bytes]] = []
        j = 0                                                    # next row of ``cols``
        for s, e in zip([0, *bounds.tolist()], [*bounds.tolist(), n], strict=True):
            if io[s]:
                self._reads_writes(m, rw, s, e, ts, seq, frames)
                continue
            while s < e:  # facts of other kinds: each one a change
                take = min(e - s, self.every - self.since_last, self.max_rows - self.rows_since)
                apply_rows(m, cols, j, j + take)
                s, j = s + take, j + take
                self._advanced(m, take, take, ts[s - 1], seq[s - 1], frames)
        return frames

    def _reads_writes(self, m: Machine, rw: _ReadsWrites, s: int, e: int, ts, seq, frames: list) -> None:
        """Rows [s, e), all successful reads and writes, with no other fact among them: the fd
        tables are as they were before row s throughout."""
        import numpy as np

        if e - s <= SHORT_STRETCH:  # between context switches, say: array work would cost more
            for i in range(s, e):
                q = m.procs.get(int(rw.tgid[i]))
                f = q.fds.get(int(rw.fd[i])) if q is not None else None
                change = 0
                if f is not None and f.sock is not None:
                    change = 1
                    if rw.sends[i]:
                        f.sock.sent += int(rw.ret[i])
                    else:
                        f.sock.received += int(rw.ret[i])
                elif f is not None and f.kind == "file" and m.log is not None:
                    m.log.io(int(rw.ts[i]), q, "wrote" if rw.sends[i] else "read", f.target)
                self._advanced(m, change, 1, ts[i], seq[i], frames)
            return
        # the fd tables do not change in the stretch: which (process, fd) each row goes through is
        # worked out once for all of it, then applied a keyframe's worth at a time
        target, inverse = rw.targets(m, s, e)
        on_sock = np.array([f is not None and f.sock is not None for _q, f in target], dtype=bool)[inverse]
        base = s
        while s < e:
            take = min(e - s, self.max_rows - self.rows_since)
            here = on_sock[s - base : s - base + take]
            if here.any():  # a keyframe falls due at the every-th change
                due = int(np.searchsorted(np.cumsum(here), self.every - self.since_last))
                take = min(take, due + 1)
                here = here[:take]
            rw.apply(m, s, s + take, target, inverse[s - base : s - base + take], here)
            s += take
            self._advanced(m, int(np.count_nonzero(here)), take, ts[s - 1], seq[s - 1], frames)

    def _advanced(self, m: Machine, changes: int, rows: int, ts, seq, frames: list) -> None:
        self.since_last += changes
        self.rows_since += rows
        self.facts += rows
        if self.since_last >= self.every or self.rows_since >= self.max_rows:
            frames.append((int(ts), int(seq), self.facts, dump(m)))
            self.since_last = self.rows_since = 0

    def _insert(self, frames: list[tuple[int, int, int, bytes]]) -> None:
        import pyarrow as pa

        if not frames:
            return
        self.store.insert_arrow("keyframes", pa.table({
            "run_id": pa.array([self.run_id] * len(frames)),
            "ts": pa.array([f[0] for f in frames], type=pa.int64()),
            "seq": pa.array([f[1] for f in frames], type=pa.uint64()),
            "facts": pa.array([f[2] for f in frames], type=pa.uint64()),
            "format": pa.array([FORMAT] * len(frames), type=pa.uint8()),
            "state": pa.array([f[3] for f in frames], type=pa.binary()),
            "gen": pa.array([self.gen] * len(frames), type=pa.uint64()),
        }))
        self.frames += len(frames)
        forget(self.store, self.run_id)

    def finish(self, progress: Callable[[int], None] | None = None) -> int:
        """The rest of the run, then its history. Returns how many keyframes the run has."""
        self.advance(progress=progress)
        m = self._machine()
        m.intervals = None        # a rewind never applies renames still held back: nor do the intervals
        with _collector_paused():
            _write_intervals(self.store, self.run_id, *self.intervals.take(), self.gen)
            _write_intervals(self.store, self.run_id, *self.intervals.open_rows(), self.gen)
            m.settle()  # renames still held back at the end apply: the history has them
            m.log = None
            _write_history(self.store, self.run_id, self.log, self.gen)
        forget(self.store, self.run_id)
        return self.frames


class _ReadsWrites:
    """The read and write facts of one page (``state_events_after`` returns only successful ones
    with ret > 0) as arrays, and what ``Machine.apply`` does with them, for a stretch at a time."""

    def __init__(self, table, m: Machine) -> None:
        import numpy as np

        self.tgid = table.column("tgid").to_numpy()
        self.fd = table.column("a0").to_numpy()
        self.ret = table.column("ret").to_numpy()
        self.sends = np.isin(table.column("nr").to_numpy(), np.array(sorted(m.sends), dtype=np.int64))
        self.ts = table.column("ts").to_numpy()

    def targets(self, m: Machine, s: int, e: int) -> tuple[list[tuple[Proc | None, Fd | None]], object]:
        """The (process, fd) each row of [s, e) goes through, once per distinct (tgid, fd), and each
        row's index into that list."""
        import numpy as np

        key = (self.tgid[s:e].astype(np.uint64) << np.uint64(32)) | (self.fd[s:e].astype(np.uint64) & np.uint64(0xFFFFFFFF))
        _keys, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        target = []
        for i in (first + s).tolist():
            q = m.procs.get(int(self.tgid[i]))
            target.append((q, q.fds.get(int(self.fd[i])) if q is not None else None))
        return target, inverse.reshape(-1)

    def apply(self, m: Machine, s: int, e: int, target: list, inverse, on_sock) -> None:
        """Rows [s, e) (``inverse``, ``on_sock``: theirs, from ``targets``): each socket gets its bytes,
        each file's first read and first write by a process goes to the history."""
        import numpy as np

        sends = self.sends[s:e]
        if on_sock.any():
            rows = np.flatnonzero(on_sock)
            out = np.zeros(len(target), dtype=np.int64)
            into = np.zeros(len(target), dtype=np.int64)
            np.add.at(out, inverse[rows], np.where(sends[rows], self.ret[s:e][rows], 0))
            np.add.at(into, inverse[rows], np.where(sends[rows], 0, self.ret[s:e][rows]))
            for t in np.unique(inverse[rows]).tolist():
                sock = target[t][1].sock
                sock.sent += int(out[t])
                sock.received += int(into[t])
        if m.log is None:
            return
        files = [t for t, (q, f) in enumerate(target) if f is not None and f.sock is None and f.kind == "file"]
        if not files:
            return
        on_file = np.isin(inverse, files)
        # the first row of each (target, direction): the history keeps the first use only
        pair = inverse.astype(np.int64) * 2 + sends
        _pairs, first = np.unique(np.where(on_file, pair, -1), return_index=True)
        for i in sorted(first.tolist()):
            if not on_file[i]:
                continue
            q, f = target[inverse[i]]
            m.log.io(int(self.ts[s + i]), q, "wrote" if sends[i] else "read", f.target)


def build(store, run: RunInfo, every: int = EVERY, progress: Callable[[int], None] | None = None) -> int:
    """(Re)build a run's derived data from its events: keyframes, and the history of its processes
    and files (for lineage and the process tree). Returns how many keyframes were written.

    The new index is written beside the old one and replaces it only once complete: if this fails
    (or is interrupted), the run answers exactly as before and the error says so."""
    ensure_table(store)
    rid = run.run_id
    gen = _next_gen(store, rid)
    try:
        frames = Indexer(store, rid, every, gen=gen).finish(progress)
        store.insert_rows("index_builds", [[rid, gen, time.time_ns()]], ["run_id", "gen", "built_ns"])  # the swap
    except BaseException as exc:
        _discard(store, rid, gen)
        forget(store, rid)
        if not isinstance(exc, Exception):
            raise
        why = str(exc) if isinstance(exc, OsrewindError) else f"{type(exc).__name__}: {exc}"
        raise StoreError(f"rebuilding the index of run {rid[:8]} failed, its previous index is kept: "
                         f"{why.strip().splitlines()[0] if why.strip() else type(exc).__name__}") from exc
    forget(store, rid)
    for table in (*DERIVED_TABLES, "index_builds"):  # the older generations, no longer read
        _command(store, f"{store.delete_from(table)} WHERE run_id = {{r:UUID}} AND gen != {{g:UInt64}}",
                 {"r": rid, "g": gen})
    return frames


def _next_gen(store, run_id: str) -> int:
    return max(time.time_ns(), current_gen(store, run_id) + 1)


def _discard(store, run_id: str, gen: int) -> None:
    """Best effort: what a failed build wrote (a store that failed may fail this too; the rows are
    not read, and the next build of the run deletes them)."""
    for table in DERIVED_TABLES:
        try:
            _command(store, f"{store.delete_from(table)} WHERE run_id = {{r:UUID}} AND gen = {{g:UInt64}}",
                     {"r": run_id, "g": gen})
        except Exception:  # noqa: BLE001, S112
            continue


class LiveIndexer:
    """Keyframes written while a recording runs: the recorder's ``indexer`` (see
    ``osrewind.ingest.recorder``). A thread wakes every ``interval`` seconds and indexes the facts
    the recorder has stored, up to ``margin_ns`` before the newest instant the writer vouches for
    (records reach the ring a little out of time order). It runs behind and may lag; it never holds
    up the recorder. ``finish`` (after the recording) indexes the tail and writes the history; if
    live indexing failed, it rebuilds the run from its events instead."""

    def __init__(self, store, every: int = EVERY, interval: float = 1.0, margin_ns: int = 200_000_000,
                 progress: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.every = every
        self.interval = interval
        self.margin_ns = margin_ns
        self.progress = progress
        self.error: BaseException | None = None
        self.live_frames = 0            # keyframes inserted while the recording ran
        self.passes = 0
        self._ix: Indexer | None = None
        self._upto = -1
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # the recorder's side
    def start(self, run_id) -> None:
        ensure_table(self.store)
        self._ix = Indexer(self.store, str(run_id), self.every, page=LIVE_PAGE)
        self._thread = threading.Thread(target=self._loop, name="osrewind-indexer", daemon=True)
        self._thread.start()

    def inserted(self, upto_ns: int) -> None:
        """Every fact before ``upto_ns`` is in the store (called by the writer thread: no work here)."""
        self._upto = max(self._upto, upto_ns - self.margin_ns)

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    # the thread
    def _loop(self) -> None:
        done = -1
        while not self._stopped.is_set():
            self._wake.wait(self.interval)
            upto = self._upto
            if self._stopped.is_set() or upto <= done:
                continue
            try:
                assert self._ix is not None
                self._ix.advance(upto, stop=self._stopped)
                self.passes += 1
                self.live_frames = self._ix.frames
                done = upto
            except BaseException as exc:  # noqa: BLE001 - finish() rebuilds from the events
                self.error = exc
                return

    # after the recording
    def finish(self, run: RunInfo) -> int:
        """Index the tail and write the history; returns how many keyframes the run has. If live
        indexing never started or failed, the run is indexed from its events instead."""
        self.stop()
        if self._ix is None or self.error is not None:
            return build(self.store, run, self.every, self.progress)
        self._ix.page = PAGE   # the recording has ended: no insert shares the client now
        return self._ix.finish(self.progress)


_NO_ENDPOINT = ("", 0)


def _write_intervals(store, run_id: str, procs: list[tuple], fds: list[tuple], gen: int) -> None:
    """Rows of ``IntervalLog`` into ``process_intervals`` and ``fd_intervals``."""
    import pyarrow as pa

    from osrewind.ingest.decode import text_array  # recorded text back to its bytes, losslessly

    if procs:   # (pid, start_ns, (comm, exe, argv, cwd, ppid, threads, uid), valid_from, valid_to)
        store.insert_arrow("process_intervals", pa.table({
            "run_id": pa.array([run_id] * len(procs)),
            "pid": pa.array([r[0] for r in procs], type=pa.uint32()),
            "start_ns": pa.array([r[1] for r in procs], type=pa.int64()),
            "valid_from_ns": pa.array([r[3] for r in procs], type=pa.int64()),
            "valid_to_ns": pa.array([r[4] for r in procs], type=pa.int64()),
            "comm": text_array([r[2][0] for r in procs]),
            "exe": text_array([r[2][1] for r in procs]),
            "argv": text_array([list(r[2][2]) for r in procs], depth=1),
            "cwd": text_array([r[2][3] for r in procs]),
            "ppid": pa.array([r[2][4] for r in procs], type=pa.uint32()),
            "threads": pa.array([r[2][5] for r in procs], type=pa.uint32()),
            "uid": pa.array([r[2][6] for r in procs], type=pa.int64()),
            "gen": pa.array([gen] * len(procs), type=pa.uint64()),
        }))
    if fds:   # (pid, start_ns, fd, (since, kind, path, inode, family, protocol, local, remote, state,
        #        listening), valid_from, valid_to)
        local = [split_endpoint(r[3][6]) if r[3][6] else _NO_ENDPOINT for r in fds]   # none: not a socket
        remote = [split_endpoint(r[3][7]) if r[3][7] else _NO_ENDPOINT for r in fds]
        # a unix socket's path: its own (the addresses say unix:PATH, unix:@NAME or unix: as ever)
        path = [lo[0].removeprefix("unix:") if r[3][4] == 1 else r[3][2] for r, lo in zip(fds, local, strict=True)]
        store.insert_arrow("fd_intervals", pa.table({
            "run_id": pa.array([run_id] * len(fds)),
            "pid": pa.array([r[0] for r in fds], type=pa.uint32()),
            "start_ns": pa.array([r[1] for r in fds], type=pa.int64()),
            "fd": pa.array([r[2] for r in fds], type=pa.int32()),
            "valid_from_ns": pa.array([r[4] for r in fds], type=pa.int64()),
            "valid_to_ns": pa.array([r[5] for r in fds], type=pa.int64()),
            "kind": pa.array([r[3][1] for r in fds], type=pa.string()),
            "path": text_array(path),
            "inode": pa.array([max(0, r[3][3]) for r in fds], type=pa.uint64()),
            "family": pa.array([r[3][4] for r in fds], type=pa.uint16()),
            "protocol": pa.array([r[3][5] for r in fds], type=pa.uint16()),
            "local_address": text_array([lo[0] for lo in local]),
            "local_port": pa.array([lo[1] for lo in local], type=pa.uint32()),
            "remote_address": text_array([re_[0] for re_ in remote]),
            "remote_port": pa.array([re_[1] for re_ in remote], type=pa.uint32()),
            "state": pa.array([r[3][8] for r in fds], type=pa.string()),
            "listening": pa.array([int(r[3][9]) for r in fds], type=pa.uint8()),
            "gen": pa.array([gen] * len(fds), type=pa.uint64()),
        }))


def _write_history(store, run_id: str, log: HistoryLog, gen: int = 0) -> None:
    import pyarrow as pa

    from osrewind.ingest.decode import text_array  # recorded text back to its bytes, losslessly

    rid = run_id
    procs = log.procs
    if procs:
        store.insert_arrow("processes", pa.table({
            "run_id": pa.array([rid] * len(procs)),
            "pid": pa.array([p.pid for p in procs], type=pa.uint32()),
            "start_ns": pa.array([p.start_ns for p in procs], type=pa.int64()),
            "ppid": pa.array([log.parents[id(p)][0] for p in procs], type=pa.uint32()),
            "parent_start_ns": pa.array([log.parents[id(p)][1] for p in procs], type=pa.int64()),
            "end_ns": pa.array([p.exited_ns or 0 for p in procs], type=pa.int64()),
            "exit_code": pa.array([p.exit_code for p in procs], type=pa.int32()),
            "from_snapshot": pa.array([int(p.from_snapshot) for p in procs], type=pa.uint8()),
            "exec_ts": pa.array([[e[0] for e in log.execs[id(p)]] for p in procs], type=pa.list_(pa.int64())),
            "exec_exe": text_array([[e[1] for e in log.execs[id(p)]] for p in procs], depth=1),
            "exec_argv": text_array([[e[2] for e in log.execs[id(p)]] for p in procs], depth=2),
            "gen": pa.array([gen] * len(procs), type=pa.uint64()),
            "cgroup": text_array([p.cgroup for p in procs]),
        }))
    files = log.files
    if files:
        store.insert_arrow("file_access", pa.table({
            "run_id": pa.array([rid] * len(files)),
            "ts": pa.array([f[0] for f in files], type=pa.int64()),
            "pid": pa.array([f[1] for f in files], type=pa.uint32()),
            "start_ns": pa.array([f[2] for f in files], type=pa.int64()),
            "op": pa.array([f[3] for f in files]),
            "path": text_array([f[4] for f in files]),
            "path2": text_array([f[5] for f in files]),
            "gen": pa.array([gen] * len(files), type=pa.uint64()),
        }))
