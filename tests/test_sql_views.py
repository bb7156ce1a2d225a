"""osquery's tables in SQL at any instant: one truth reached two ways. At random instants of generated
runs and real recordings, what ``sql --at`` answers from the interval tables equals what ``state
--at`` rewinds (read here straight from the rewound processes, not through the views' projection);
without --at, the same tables hold every run's history."""

from __future__ import annotations

import csv
import io
import json
import random
import sys

import pytest
from synthetic import random_run, record, rename, store_generated

from conftest import WORKLOADS, osrewind, record_json
from osrewind.ingest.store import Store
from osrewind.probes.records import AT_FDCWD
from osrewind.queries import keyframes, osquery
from osrewind.queries.api import Recording
from osrewind.queries.engine.intervals import IntervalLog
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

PROCESS_COLUMNS = ["pid", "name", "path", "cmdline", "cwd", "parent", "start_time", "threads"]
FILE_COLUMNS = ["pid", "fd", "path"]
SOCKET_COLUMNS = ["pid", "fd", "family", "protocol", "local_address", "local_port", "remote_address",
                  "remote_port", "state"]
PORT_COLUMNS = ["pid", "port", "protocol", "family", "address"]
OWN = ["run_id", "start_ns", "valid_from_ns", "valid_to_ns"]
START_NS = 60_000_000_000


def _joined(family: int, address: str, port: int, path: str) -> str:
    """An endpoint as the rewind engine writes it."""
    if family == 1:   # unix: the address is the engine's text (unix:PATH, unix:@NAME, unix:)
        return address
    if not address and not port:
        return ""
    return f"[{address}]:{port}" if family == 10 else f"{address}:{port}"


def from_views(rec: Recording, at: int) -> dict:
    _, procs = rec.sql("SELECT pid, start_ns, name, path, argv, cwd, parent, threads FROM processes", at=at)
    _, files = rec.sql("SELECT pid, start_ns, fd, path FROM process_open_files", at=at)
    _, socks = rec.sql("SELECT pid, start_ns, fd, family, local_address, local_port, remote_address, remote_port, "
                       "path, state FROM process_open_sockets", at=at)
    _, ports = rec.sql("SELECT pid, fd FROM listening_ports", at=at)
    return {"procs": sorted((p[0], p[1], p[2], p[3], tuple(p[4]), p[5], p[6], p[7]) for p in procs),
            "files": sorted(files),
            "socks": sorted((s[0], s[1], s[2], _joined(s[3], s[4], s[5], s[8]), _joined(s[3], s[6], s[7], ""), s[9])
                            for s in socks),
            "ports": sorted(ports)}


def from_rewind(store, run, at: int) -> dict:
    st = state_at(store, run, at)
    procs = st.processes
    socks = [(p, f) for p in procs for f in p.fds.values() if f.sock is not None]
    return {"procs": sorted((p.pid, p.start_ns, p.comm, p.exe, tuple(p.argv), p.cwd, p.ppid, p.threads) for p in procs),
            "files": sorted((p.pid, p.start_ns, f.fd, f.target) for p in procs for f in p.fds.values()
                            if f.sock is None),
            "socks": sorted((p.pid, p.start_ns, f.fd, f.sock.local, f.sock.remote, f.tcp_state) for p, f in socks),
            "ports": sorted((p.pid, f.fd) for p, f in socks
                            if f.sock.listening or (f.sock.proto == "UDP" and f.sock.local.rsplit(":", 1)[-1] not in
                                                    ("", "0"))),
            }


def agree_everywhere(db, run_spec: str, samples: int, seed: int) -> int:
    """Compare at random instants, at instants of facts and just before them; returns how many
    instants had processes with open fds (so the comparison was not of empty sets)."""
    busy = 0
    with Store(str(db)) as store:
        rec = Recording(store, resolve_run(store, run_spec))
        run = rec.run
        rng = random.Random(seed)
        stamps = [ts for (ts,) in store.query(
            "SELECT ts FROM events WHERE run_id = {r:UUID} AND kind NOT IN ('syscall', 'sched_switch', "
            "'sched_wakeup') ORDER BY ts", {"r": run.run_id})]
        instants = [rng.randint(run.start_ns, run.end_ns) for _ in range(samples)]
        for ts in rng.sample(stamps, min(samples, len(stamps))):
            instants += [ts, ts - 1]
        instants += [run.start_ns, run.end_ns]
        for at in sorted(set(instants)):
            if not run.start_ns <= at <= run.end_ns:
                continue
            views, rewound = from_views(rec, at), from_rewind(store, run, at)
            for part in views:
                assert views[part] == rewound[part], f"{part} differ at +{(at - run.start_ns) / 1e9:.6f}s"
            busy += bool(rewound["files"])
    return busy


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_views_equal_the_rewind_at_random_instants_of_generated_runs(tmp_path, seed):
    db = tmp_path / "db"
    run_id = random_run(str(db), seed, n=2000)
    with Store(str(db)) as store:
        keyframes.build(store, resolve_run(store, run_id), every=97)
    assert agree_everywhere(db, run_id, samples=20, seed=seed) > 20


@pytest.mark.kernel
def test_views_equal_the_rewind_at_random_instants_of_a_real_recording(kernel, tmp_path):
    """net.py: a server and clients over TCP, UDP and unix sockets; its intervals come from the
    live indexer (while recording), then again from a rebuild (reindex)."""
    db = tmp_path / "db"
    summary = record_json(db, "--", sys.executable, str(WORKLOADS / "net.py"), str(tmp_path), check_exit=0)
    assert agree_everywhere(db, summary["run_id"], samples=20, seed=5) > 15
    with Store(str(db)) as store:
        rec = Recording(store, resolve_run(store, summary["run_id"]))
        _, listening = rec.sql("SELECT count() FROM listening_ports WHERE protocol = 6")
        assert listening[0][0] > 0   # the workload's server listened
        rec.reindex()
    assert agree_everywhere(db, summary["run_id"], samples=10, seed=6) > 5


def test_facts_compare_only_what_they_changed(tmp_path, monkeypatch):
    """Two processes hold many files and their cwds in directories that are renamed (the directory,
    a file onto an open one, an exchange) and unlinked (files held open, a directory that is a cwd),
    and make pipes, threads and chdirs: the intervals equal the rewind at every fact, and the index
    compared only what each fact changed (the holders a rename or unlink moved, a pipe's two fds, a
    process's own row), never every fd of a process (the per-fact cost that made a process with
    thousands of fds quadratic to index)."""
    db = tmp_path / "db"
    t, out = START_NS, []

    def at(step: int = 1000) -> int:
        nonlocal t
        t += step
        return t

    for i in range(40):
        out.append(record(at(), "open", 100, ret=3 + i, a0=AT_FDCWD, path=f"/data/d1/f{i}".encode()))
    out.append(record(at(), "chdir", 100, path=b"/data/d1"))
    out.append(record(at(), "pipe", 100, a0=43, a1=44))
    out.append(record(at(), "fork", 100, a0=100, a1=7001, a2=0x10000))     # a thread
    ev = record(at(), "task_exit", 100)
    ev["tid"] = 7001
    out.append(ev)
    out.append(record(at(), "fork", 100, a0=100, a1=101, a2=0x1200011))
    out.append(record(at(), "chdir", 101, path=b"/data/d2/sub"))
    out.append(rename(at(), 100, b"/data/d1", b"/data/d3"))                 # fds and a cwd move
    out.append(rename(at(), 101, b"/data/d3/f1", b"/data/d3/f2", flags=2))   # RENAME_EXCHANGE
    out.append(record(at(), "unlink", 100, a0=AT_FDCWD, path=b"/data/d3/f5"))  # held open by both
    out.append(rename(at(), 101, b"/data/d3/f6", b"/data/d3/f7"))           # onto an open file
    out.append(record(at(), "unlink", 101, a0=AT_FDCWD, a2=0x200, path=b"/data/d2/sub"))  # a cwd's directory
    out.append(record(at(), "close", 101, a0=9))
    out.append(record(at(), "open", 101, ret=9, a0=AT_FDCWD, path=b"f8"))   # relative to the new cwd
    out.append(rename(at(), 100, b"/data/d3", b"/data/d4"))
    for i in range(30):
        out.append(record(at(), "unlink", 100 + i % 2, a0=AT_FDCWD, path=f"/data/d4/f{10 + i}".encode()))
    run_id = store_generated(str(db), out, START_NS - 1, at(), "tree")
    compared, whole = [], []
    everything, process = IntervalLog.everything, IntervalLog.process
    monkeypatch.setattr(IntervalLog, "everything", lambda self, m, ts: compared.append(ts) or everything(self, m, ts))
    monkeypatch.setattr(IntervalLog, "process", lambda self, m, pid, ts: whole.append(pid) or process(self, m, pid, ts))
    with Store(str(db)) as store:
        keyframes.build(store, resolve_run(store, run_id), every=3)
    assert len(compared) == 1, "a rename or unlink compared every process (only the run's start should)"
    assert whole.count(100) == 1 and whole.count(101) == 1, "a process was compared whole after it began"
    with Store(str(db)) as store:
        st = state_at(store, resolve_run(store, run_id), t)
        assert st.processes[0].fds[8].target == "/data/d4/f5 (deleted)"
        assert st.processes[0].fds[3 + 15].target == "/data/d4/f15 (deleted)"
        assert [p.cwd for p in st.processes] == ["/data/d4", "/data/d2/sub (deleted)"]
        assert st.processes[0].fds[44].kind == "pipe" and st.processes[0].threads == 1
    assert agree_everywhere(db, run_id, samples=30, seed=3) > 20


def test_history_across_runs_in_one_store(tmp_path):
    """Without --at the tables hold every run's history: which runs ever had a file open, and how many
    processes each had, as the runs' own facts say."""
    db = tmp_path / "db"
    runs = [random_run(str(db), seed, n=1200, name=f"gen{seed}") for seed in (4, 5, 6)]
    paths = ("/data/a1", "/data/c3", "/data/f9")
    with Store(str(db)) as store:
        for r in runs:
            keyframes.build(store, resolve_run(store, r), every=97)
        opened = {path: {str(r) for (r,) in store.query(
            "SELECT DISTINCT toString(run_id) FROM events WHERE kind = 'open' AND ret >= 0 AND path = {p:String}",
            {"p": path})} for path in paths}
        forks = dict(store.query("SELECT toString(run_id), countIf(kind = 'fork' AND bitAnd(a2, 0x10000) = 0) + 1 "
                                 "FROM events GROUP BY run_id"))
    assert any(opened.values())
    for path in paths:
        out = osrewind("sql", "SELECT DISTINCT toString(run_id) AS r FROM process_open_files WHERE path = {p:String}",
                       "-p", f"p={path}", "--json", db=db)
        assert out.returncode == 0, out.stderr
        assert {row["r"] for row in json.loads(out.stdout)} == opened[path]
    out = osrewind("sql", "SELECT toString(run_id) AS r, uniqExact(pid, start_ns) AS n FROM processes GROUP BY r",
                   "--format", "csv", db=db)
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["r", "n"]
    assert {r: int(n) for r, n in rows[1:]} == {r: int(n) for r, n in forks.items()}
    # the index's own process history is still there, by another name
    out = osrewind("sql", "SELECT count() FROM process_history", db=db)
    assert out.returncode == 0 and int(out.stdout.split()[-1]) == sum(forks.values())


def test_sql_at_on_the_command_line(tmp_path):
    db = tmp_path / "db"
    run_id = random_run(str(db), 8, n=800)
    with Store(str(db)) as store:
        run = resolve_run(store, run_id)
        keyframes.build(store, run)
        mid = (run.start_ns + run.end_ns) // 2
        rewound = from_rewind(store, run, mid)
    out = osrewind("sql", "--at", f"+{(mid - run.start_ns) / 1e9:.9f}s", "--json",
                   "SELECT pid, fd, path FROM process_open_files ORDER BY pid, fd", db=db)
    assert out.returncode == 0, out.stderr
    assert [(r["pid"], r["fd"], r["path"]) for r in json.loads(out.stdout)] == \
        sorted((f[0], f[2], f[3]) for f in rewound["files"])
    # osquery's column names, and osrewind's own, are all there
    out = osrewind("sql", "--schema", "--json", db=db)
    assert out.returncode == 0, out.stderr
    schema = json.loads(out.stdout)
    for table, cols in (("processes", PROCESS_COLUMNS), ("process_open_files", FILE_COLUMNS),
                        ("process_open_sockets", SOCKET_COLUMNS), ("listening_ports", PORT_COLUMNS)):
        have = [c["column"] for c in schema if c["table"] == table]
        assert set(cols + OWN) <= set(have), (table, have)
        assert all(c["meaning"] for c in schema if c["table"] == table)
        out = osrewind("sql", "--at", "end", f"SELECT {', '.join(cols + OWN)} FROM {table} LIMIT 1", db=db)
        assert out.returncode == 0, out.stderr
    assert {t.name for t in osquery.TABLES} <= {c["table"] for c in schema}
    assert [(c["table"], c["column"]) for c in schema if not c["meaning"]] == []   # one line of meaning each
    assert {"events", "runs", "process_history", "keyframes"} <= {c["table"] for c in schema}
    # before anything is recorded, the tables as declared
    out = osrewind("sql", "--schema", db=tmp_path / "nothing-yet")
    assert out.returncode == 0 and "process_open_files\tpath" in out.stdout, out.stderr


@pytest.mark.parametrize("args, needle", [
    (["--at", "+1h", "SELECT 1"], "outside the run"),
    (["--at", "soon", "SELECT 1"], "--at"),
    (["--run", "nosuchrun", "SELECT 1"], "nosuchrun"),
    (["--at", "+1ms", "runs_list"], "named query"),
    (["--at", "+1ms", "INSERT INTO runs SELECT * FROM runs"], "only reading"),
])
def test_sql_at_refuses_bad_input_in_one_line(tmp_path, args, needle):
    db = tmp_path / "db"
    run_id = random_run(str(db), 9, n=300)
    with Store(str(db)) as store:
        keyframes.build(store, resolve_run(store, run_id))
    out = osrewind("sql", *args, db=db)
    assert out.returncode == 2, out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


def test_a_run_indexed_without_intervals_says_to_reindex(tmp_path):
    db = tmp_path / "db"
    run_id = random_run(str(db), 10, n=300)
    with Store(str(db)) as store:
        keyframes.build(store, resolve_run(store, run_id))
        store.client.command("DELETE FROM process_intervals WHERE 1")
    out = osrewind("sql", "--at", "+1ms", "SELECT count() FROM processes", db=db)
    assert out.returncode == 2 and "osrewind reindex" in out.stderr, out.stderr
    assert osrewind("reindex", run_id, db=db).returncode == 0
    out = osrewind("sql", "--at", "+1ms", "SELECT count() FROM processes", db=db)
    assert out.returncode == 0 and int(out.stdout.split()[-1]) >= 1, out.stderr
