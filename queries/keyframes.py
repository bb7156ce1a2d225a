"""Keyframes: the whole rewound state every N facts, so a rewind reads one keyframe plus the facts
since it, not the run from its start.

A keyframe is derived data: the ``Machine`` serialised (JSON, zlib) after the fact at (ts, seq). It
can always be rebuilt from the events (``osrewind reindex``), and a run without keyframes still
answers by replaying from the baseline. Both paths give the same state (tests check this at many
random instants).
"""

from __future__ import annotations

import bisect
import json
import zlib
from collections.abc import Callable

from osrewind.errors import StoreError
from osrewind.queries import named
from osrewind.queries.runs import RunInfo
from osrewind.queries.state import CpuSlot, Fd, HistoryLog, Machine, Proc, Sock, apply_rows, new_machine

FORMAT = 1
EVERY = 4_000           # facts between keyframes: bounds a rewind's replay (~4 us a fact)
PAGE = 200_000

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
    exec_argv Array(Array(String))
) ENGINE = MergeTree ORDER BY (run_id, start_ns, pid)
""", """
CREATE TABLE IF NOT EXISTS file_access (
    run_id UUID,
    ts Int64,
    pid UInt32,
    start_ns Int64,
    op LowCardinality(String),
    path String CODEC(ZSTD(1)),
    path2 String CODEC(ZSTD(1))
) ENGINE = MergeTree ORDER BY (run_id, path, ts)
"""]

DDL = """
CREATE TABLE IF NOT EXISTS keyframes (
    run_id UUID,
    ts Int64,
    seq UInt64,
    facts UInt64,
    format UInt8,
    state String CODEC(ZSTD(1))
) ENGINE = MergeTree ORDER BY (run_id, ts, seq)
"""


# ------------------------------------------------------------------ (de)serialising a Machine


def dump(m: Machine) -> bytes:
    socks: list[Sock] = []
    index: dict[int, int] = {}

    def sock_ref(s: Sock | None) -> int:
        if s is None:
            return -1
        if id(s) not in index:
            index[id(s)] = len(socks)
            socks.append(s)
        return index[id(s)]

    def proc(p: Proc) -> list:
        return [p.pid, p.start_ns, p.ppid, p.comm, p.exe, p.argv, p.cwd, p.threads, p.from_snapshot, p.exec_ns,
                p.orphaned, p.exit_code, p.exited_ns, list(p.run.items()), list(p.on_cpu.items()),
                [[f.fd, f.kind, f.target, f.cloexec, f.flags, f.since_ns, sock_ref(f.sock)] for f in p.fds.values()]]

    procs = [proc(p) for p in m.procs.values()]
    exited = [proc(p) for p in m.exited.values()]
    closed = [[pid, fd, sock_ref(s)] for (pid, fd), s in m._closed_socks.items()]
    doc = {
        "format": FORMAT, "procs": procs, "exited": exited,
        "socks": [[s.family, s.type, s.local, s.remote, s.sk, s.listening, s.shut, s.sent, s.received]
                  for s in socks],
        "argv": list(m._argv.items()), "pipe_seq": m._pipe_seq, "sched_seen": m.sched_seen,
        "cpus": [[c.cpu, c.tid, c.tgid, c.comm, c.since_ns] for c in m.cpus.values()],
        "tcp": [[sk, *v] for sk, v in m.tcp.items()], "tcp_by_tid": list(m._tcp_by_tid.items()),
        "closed": closed,
    }
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 1)


def load(blob: bytes, m: Machine) -> Machine:
    doc = json.loads(zlib.decompress(blob))
    if doc.get("format") != FORMAT:
        raise StoreError("keyframe format unknown to this osrewind: run 'osrewind reindex' on the run")
    socks = [Sock(fam, typ, local, remote, sk, listening, shut, sent, recv)
             for fam, typ, local, remote, sk, listening, shut, sent, recv in doc["socks"]]

    def proc(row: list) -> Proc:
        (pid, start_ns, ppid, comm, exe, argv, cwd, threads, from_snapshot, exec_ns, orphaned, exit_code,
         exited_ns, run, on_cpu, fds) = row
        p = Proc(pid, start_ns, ppid, comm, exe, argv, cwd, threads, from_snapshot, exec_ns, {}, orphaned,
                 exit_code, exited_ns, dict((int(t), s) for t, s in run), dict((int(t), c) for t, c in on_cpu))
        for fd, kind, target, cloexec, flags, since, sref in fds:
            p.fds[fd] = Fd(fd, kind, target, cloexec, flags, since, socks[sref] if sref >= 0 else None)
        return p

    m.procs = {p.pid: p for p in map(proc, doc["procs"])}
    m.exited = {p.pid: p for p in map(proc, doc["exited"])}
    m._argv = {int(t): a for t, a in doc["argv"]}
    m._pipe_seq = doc["pipe_seq"]
    m.sched_seen = doc["sched_seen"]
    m.cpus = {c[0]: CpuSlot(*c) for c in doc["cpus"]}
    m.tcp = {sk: (state, local, remote) for sk, state, local, remote in doc["tcp"]}
    m._tcp_by_tid = {int(t): sk for t, sk in doc["tcp_by_tid"]}
    m._closed_socks = {(pid, fd): socks[ref] for pid, fd, ref in doc["closed"]}
    return m


# ------------------------------------------------------------------ store


def ensure_table(store) -> None:
    try:
        for ddl in [DDL, *HISTORY_DDL]:
            store.client.command(ddl)
    except Exception as exc:  # noqa: BLE001
        raise StoreError(f"cannot create the keyframes table: {exc}") from exc


def has_table(store) -> bool:
    known = getattr(store, "_has_keyframes", None)
    if known:
        return True
    rows = store.query("SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'keyframes'")
    found = bool(rows and rows[0][0])
    if found:
        store._has_keyframes = True  # tables are never dropped: remember a yes for this open store
    return found


def positions(store, run: RunInfo) -> list[tuple[int, int]]:
    """Where the run's keyframes are, remembered per open store (a scrub asks again and again)."""
    cache = getattr(store, "_keyframe_positions", None)
    if cache is None:
        cache = store._keyframe_positions = {}
    if run.run_id not in cache:
        cache[run.run_id] = [(int(t), int(q)) for t, q in named.run(store, "keyframe_positions", run=run.run_id)]
    return cache[run.run_id]


def forget(store, run: RunInfo) -> None:
    getattr(store, "_keyframe_positions", {}).pop(run.run_id, None)


def latest(store, run: RunInfo, at_ns: int) -> tuple[int, int, bytes] | None:
    """The last keyframe at or before ``at_ns``: (ts, seq, state)."""
    if not has_table(store):
        return None
    pos = positions(store, run)
    i = bisect.bisect_right(pos, (at_ns, 2**64)) - 1
    if i < 0:
        return None
    ts, seq = pos[i]
    # the row path: a one-row answer costs ~2 ms there against ~10 ms through Arrow
    rows = store.query_bytes(named.sql("keyframe_state"), {"run": run.run_id, "ts": ts, "seq": seq}, ("state",))
    if not rows:
        return None
    return ts, seq, rows[0][0]


def build(store, run: RunInfo, every: int = EVERY, progress: Callable[[int], None] | None = None) -> int:
    """(Re)build a run's derived data from its events: keyframes, and the history of its processes
    and files (for lineage and the process tree). Returns how many keyframes were written."""
    import pyarrow as pa

    ensure_table(store)
    store._has_keyframes = True
    forget(store, run)
    for table in ("keyframes", "processes", "file_access"):
        store.client.command(f"DELETE FROM {table} WHERE run_id = {{r:UUID}}", parameters={"r": run.run_id})
    m = new_machine(store, run)
    m.log = log = HistoryLog()
    for p in m.procs.values():
        log.adopt(p)
    c_ts, c_seq = -1, 0
    since_last = 0
    facts = 0
    frames: list[tuple[int, int, int, bytes]] = []
    while True:
        table = named.run_arrow(store, "state_events_after", run=run.run_id, at=2**63 - 1, c_ts=c_ts, c_seq=c_seq,
                                lim=PAGE, io_nrs=sorted(m.sends | m.recvs))
        n = table.num_rows
        if n == 0:
            break
        cols = {name: table.column(name).to_pylist() for name in table.column_names}
        start = 0
        while start < n:
            take = min(n - start, every - since_last)
            apply_rows(m, cols, start, start + take)
            start += take
            since_last += take
            facts += take
            if since_last >= every:
                frames.append((cols["ts"][start - 1], cols["seq"][start - 1], facts, dump(m)))
                since_last = 0
        c_ts, c_seq = cols["ts"][-1], cols["seq"][-1]
        if progress:
            progress(facts)
        if n < PAGE:
            break
    m.log = None
    _write_history(store, run, log)
    forget(store, run)
    if frames:
        store.insert_arrow("keyframes", pa.table({
            "run_id": pa.array([run.run_id] * len(frames)),
            "ts": pa.array([f[0] for f in frames], type=pa.int64()),
            "seq": pa.array([f[1] for f in frames], type=pa.uint64()),
            "facts": pa.array([f[2] for f in frames], type=pa.uint64()),
            "format": pa.array([FORMAT] * len(frames), type=pa.uint8()),
            "state": pa.array([f[3] for f in frames], type=pa.binary()),
        }))
    return len(frames)


def _write_history(store, run: RunInfo, log: HistoryLog) -> None:
    import pyarrow as pa

    rid = run.run_id
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
            "exec_exe": pa.array([[e[1] for e in log.execs[id(p)]] for p in procs], type=pa.list_(pa.string())),
            "exec_argv": pa.array([[e[2] for e in log.execs[id(p)]] for p in procs],
                                  type=pa.list_(pa.list_(pa.string()))),
        }))
    files = log.files
    if files:
        store.insert_arrow("file_access", pa.table({
            "run_id": pa.array([rid] * len(files)),
            "ts": pa.array([f[0] for f in files], type=pa.int64()),
            "pid": pa.array([f[1] for f in files], type=pa.uint32()),
            "start_ns": pa.array([f[2] for f in files], type=pa.int64()),
            "op": pa.array([f[3] for f in files]),
            "path": pa.array([f[4] for f in files]),
            "path2": pa.array([f[5] for f in files]),
        }))
