"""Keyframes count the facts that change the rewound state: a successful read or write changes it
only on a socket (its byte counts), so a run that only moves bytes through files gets few
keyframes, while the indexer applies those reads and writes in bulk and ends exactly where the
one-fact-at-a-time state machine does (same keyframes, same history, same answers)."""

from __future__ import annotations

import random
import time
import uuid

import numpy as np
import pytest
from synthetic import record

from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.probes import syscall_table
from osrewind.probes.records import AT_FDCWD
from osrewind.queries import keyframes, named
from osrewind.queries.engine import HistoryLog, codec
from osrewind.queries.replay import apply_rows, baseline_machine
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import load_machine, state_at

READ, WRITE, SENDTO, RECVFROM = (syscall_table.number(s) for s in ("read", "write", "sendto", "recvfrom"))
OTHER = syscall_table.number("getppid")
START = 70_000_000_000
RUN_COLUMNS = ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
               "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"]


def io(ts: int, pid: int, nr: int, fd: int, ret: int) -> np.ndarray:
    ev = record(ts, "syscall", pid, ret=ret, a0=fd, a2=ret)
    ev["nr"] = nr
    return ev


def store_run(db: str, evs: list[np.ndarray], end: int) -> str:
    run_id = uuid.uuid4()
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows("runs", [[run_id, "io", "h", "", "6.18", ["sh"], "/work", "command", 100, START, end, 0,
                                    len(evs), 0, 0, "complete", "test", time.time_ns()]], RUN_COLUMNS)
        store.insert_rows("snapshot_procs", [[run_id, START, 100, 1, START - 5, 0, "sh", "/bin/sh", ["sh"], "/work", 1]],
                          ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
        store.insert_rows("snapshot_fds", [[run_id, START, 100, fd, "/dev/pts/0", "file", 0, 0] for fd in (0, 1, 2)],
                          ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
        batch = np.concatenate(evs)
        for off in range(0, len(batch), 100_000):
            store.insert_arrow("events", decode.to_arrow(batch[off:off + 100_000], run_id, off))
    return str(run_id)


def mixed_run(db: str, seed: int, n: int) -> str:
    """Processes that open files, sockets and pipes, dup, fork, close and exit, and between those
    read and write a lot: through files, sockets, pipes, bad fds, with errors and zero bytes, and
    through other syscalls that are not I/O. Every fact at its own instant."""
    rng = random.Random(seed)
    t = START
    live: dict[int, set[int]] = {100: {0, 1, 2}}
    next_pid = 101
    out: list[np.ndarray] = []
    while len(out) < n:
        t += rng.randint(1, 50_000)
        pid = rng.choice(sorted(live))
        fds = live[pid]
        low = min(set(range(len(fds) + 1)) - fds)
        roll = rng.random()
        if roll < 0.04:
            out.append(record(t, "open", pid, ret=low, a0=AT_FDCWD, path=f"/data/f{rng.randint(0, 5)}".encode()))
            fds.add(low)
        elif roll < 0.07:
            out.append(record(t, "socket", pid, ret=low, a0=2, a1=1))
            fds.add(low)
        elif roll < 0.08:
            w = min(set(range(len(fds) + 2)) - fds - {low})
            out.append(record(t, "pipe", pid, a0=low, a1=w))
            fds.update((low, w))
        elif roll < 0.10 and len(fds) > 3:
            src = rng.choice(sorted(fds))
            out.append(record(t, "dup", pid, ret=low, a0=src, a1=low))
            fds.add(low)
        elif roll < 0.13 and len(fds) > 3:
            fd = rng.choice(sorted(fds - {0, 1, 2}))
            out.append(record(t, "close", pid, a0=fd))
            fds.discard(fd)
        elif roll < 0.14 and len(live) < 6:
            out.append(record(t, "fork", pid, a0=pid, a1=next_pid, a2=0x1200011))
            live[next_pid] = set(fds)
            next_pid += 1
        elif roll < 0.145 and pid != 100:
            out.append(record(t, "exit_call", pid, a0=0, a1=1))
            t += 1
            out.append(record(t, "task_exit", pid, a0=1))
            del live[pid]
        else:  # a stretch of reads and writes
            for _ in range(rng.choice([1, 2, 5, 40, 300])):
                t += rng.randint(1, 2000)
                fd = rng.choice([*sorted(fds), 99]) if rng.random() < 0.95 else 3
                ret = rng.choice([rng.randint(1, 70_000), rng.randint(1, 9), 0, -9, -11])
                nr = rng.choice([READ, WRITE, WRITE, SENDTO, RECVFROM, OTHER])
                out.append(io(t, pid, nr, fd, ret))
    return store_run(db, out[:n], t + 1)


def reference(store, run) -> tuple[HistoryLog, list]:
    """The whole run through ``apply_rows``, one fact at a time: the final machine and history."""
    m = baseline_machine(store, run.run_id)
    log = m.log = HistoryLog()
    for p in m.procs.values():
        log.adopt(p)
    table = named.run_arrow(store, "state_events_after", run=run.run_id, at=2**63 - 1, c_ts=-1, c_seq=0,
                            lim=10**9, io_nrs=sorted(m.sends | m.recvs), uid_nrs=sorted(m.uid_calls))
    apply_rows(m, named.columns(table), 0, table.num_rows)
    return log, codec.document(m)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_reads_and_writes_index_exactly(tmp_path, seed, monkeypatch):
    db = str(tmp_path / "db")
    run_id = mixed_run(db, seed, 12_000)
    narrow = []
    page_sql = keyframes._page_sql
    monkeypatch.setattr(keyframes, "_page_sql", lambda: narrow.append(1) or page_sql())
    with Store(db, purpose="test") as store:
        run = resolve_run(store, run_id)
        keyframes.ensure_table(store)
        ix = keyframes.Indexer(store, run_id, every=60, page=700)   # pages end inside stretches too
        frames = ix.finish()
        assert frames >= 10
        assert len(narrow) >= 4, "the pages were not read in two queries (keys, then the other facts)"
        # every keyframe is the state the one-fact-at-a-time machine has at its instant
        rows = store.query("SELECT ts, seq FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts", {"r": run_id})
        for ts, seq in rows:
            doc = keyframes.decode(keyframes._fetch(store, run_id, ts, seq))
            assert doc == codec.document(load_machine(store, run, ts, use_keyframes=False)), ts
        log, final = reference(store, run)
        assert codec.document(ix.m) == final
        assert ix.log.files == log.files
        assert [(p.pid, p.start_ns) for p in ix.log.procs] == [(p.pid, p.start_ns) for p in log.procs]
        assert any(s[7] or s[8] for s in final[3]), "no socket moved a byte: the run tests nothing"
        # and rewinds through them answer as a replay from the start does
        rng = random.Random(seed)
        for at in [rng.randint(run.start_ns, run.end_ns) for _ in range(25)] + [ts for ts, _ in rows[:3]]:
            assert state_at(store, run, at).to_json() == state_at(store, run, at, use_keyframes=False).to_json()


def test_a_live_index_and_a_rebuild_write_the_same_keyframes(tmp_path):
    db = str(tmp_path / "db")
    run_id = mixed_run(db, 9, 8_000)
    with Store(db, purpose="test") as store:
        run = resolve_run(store, run_id)
        keyframes.ensure_table(store)
        live = keyframes.Indexer(store, run_id, every=45, page=333)
        for upto in range(run.start_ns, run.end_ns, (run.end_ns - run.start_ns) // 7):
            live.advance(upto)                                        # as the live indexer goes
        live.finish()
        written = store.query("SELECT ts, seq, facts FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts",
                              {"r": run_id})
        assert keyframes.build(store, run, every=45) == len(written)
        assert store.query("SELECT ts, seq, facts FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts",
                           {"r": run_id}) == written


def test_a_fact_landing_between_a_pages_two_queries_is_indexed(tmp_path, monkeypatch):
    # a page read in two queries (keys, then the facts other than reads and writes): a fact stored
    # between them, inside the page, makes the page read again whole, so nothing is skipped
    db = str(tmp_path / "db")
    run_id = mixed_run(db, 4, 6_000)
    late = []
    with Store(db, purpose="test") as store:
        run = resolve_run(store, run_id)
        keyframes.ensure_table(store)
        keys_sql, others_sql = keyframes._page_sql()
        query_arrow = store.query_arrow

        def landing(sql, params=None, **kw):
            if sql == others_sql and not late:   # the run's last process opens a file, mid-page
                late.append(record(params["at"] - 1, "open", 100, ret=77, a0=AT_FDCWD, path=b"/late"))
                store.insert_arrow("events", decode.to_arrow(np.concatenate(late), run_id, 10**9))
            return query_arrow(sql, params, **kw)

        monkeypatch.setattr(store, "query_arrow", landing)
        ix = keyframes.Indexer(store, run_id, every=60, page=900)
        ix.finish()
        monkeypatch.undo()
        assert late, "no page was read in two queries"
        log, final = reference(store, run)
        assert codec.document(ix.m) == final
        assert any(f.target == "/late" for f in ix.m.procs[100].fds.values())


def only_io_run(db: str, n: int, fd_kind: str, chdir_every: int = 0) -> str:
    """A process that opens one file or socket and then only reads and writes through it (with
    ``chdir_every``: a chdir after every that many of them, in short stretches)."""
    first = (record(START + 1, "open", 100, ret=3, a0=AT_FDCWD, path=b"/data/big") if fd_kind == "file"
             else record(START + 1, "socket", 100, ret=3, a0=2, a1=1))
    out = [first]
    for i in range(n):
        if chdir_every and i % chdir_every == chdir_every - 1:
            out.append(record(START + 10 + 2 * i, "chdir", 100, path=b"/tmp"))
        else:
            out.append(io(START + 10 + 2 * i, 100, (READ, WRITE)[i % 2], (3, 1)[i % 2] if fd_kind == "file" else 3, 512))
    return store_run(db, out, START + 10 + 2 * n)


def test_a_run_that_only_reads_and_writes_files_gets_few_keyframes(tmp_path):
    n = 3 * keyframes.SPAN * keyframes.EVERY + 100          # 48,100 facts: 12 keyframes when every fact counted
    files = only_io_run(str(tmp_path / "files"), n, "file")
    with Store(str(tmp_path / "files"), purpose="test") as store:
        run = resolve_run(store, files)
        assert keyframes.build(store, run) == 3           # only the bound on a rewind's replay
        st = state_at(store, run, run.end_ns)
        assert [f.target for f in st.processes[0].fds.values()] == ["/dev/pts/0"] * 3 + ["/data/big"]
        ops = store.query("SELECT op, path FROM file_access WHERE run_id = {r:UUID} ORDER BY ts", {"r": files})
        assert ("read", "/data/big") in ops and ("wrote", "/dev/pts/0") in ops
    sockets = only_io_run(str(tmp_path / "socks"), n, "socket")
    with Store(str(tmp_path / "socks"), purpose="test") as store:
        run = resolve_run(store, sockets)
        assert keyframes.build(store, run) == (n + 1) // keyframes.EVERY   # every byte count is a change
        facts = [f for (f,) in store.query("SELECT facts FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts",
                                           {"r": sockets})]
        assert facts == [keyframes.EVERY * (i + 1) for i in range(len(facts))]
        sock = state_at(store, run, run.end_ns).processes[0].fds[3].sock
        assert (sock.sent, sock.received) == (512 * (n // 2), 512 * (n - n // 2))


def test_short_stretches_between_other_facts_count_the_same(tmp_path):
    # every fact changes the state (socket bytes, chdirs): a keyframe every EVERY facts exactly
    db = str(tmp_path / "db")
    run_id = only_io_run(db, 9_000, "socket", chdir_every=7)
    with Store(db, purpose="test") as store:
        run = resolve_run(store, run_id)
        assert keyframes.build(store, run, every=500) == 18
        facts = [f for (f,) in store.query("SELECT facts FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts",
                                           {"r": run_id})]
        assert facts == [500 * (i + 1) for i in range(18)]
        sock = state_at(store, run, run.end_ns).processes[0].fds[3].sock
        io_rows = 9_000 - 9_000 // 7
        assert sock.sent + sock.received == 512 * io_rows
