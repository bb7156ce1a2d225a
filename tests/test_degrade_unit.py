"""The degraded syscall lane without a kernel: the aggregate records as the kernel lays them out
(``struct sc_agg``, generated from probes/records.py), the ``syscall_agg`` facts made from them, how
they read, how ``top`` counts them, and that rewinding ignores them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from synthetic import record, write_run

from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.probes import records, syscall_table
from osrewind.queries import named
from osrewind.queries.events import describe
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

GETPPID = syscall_table.number("getppid") or 110
OPENAT = syscall_table.number("openat") or 257
GETPID = syscall_table.number("getpid") or 39
STRANGER = 9999  # a process the run knows nothing else of: rewinding must not make it up


def sc_agg_bytes(count, errors, dur, first, last, tgid, tid, nr, comm: bytes) -> bytes:
    """One `struct sc_agg` value exactly as the kernel map holds it (little-endian, no padding)."""
    return struct.pack("<5Q4I16s", count, errors, dur, first, last, tgid, tid, nr, 0, comm)


def test_the_generated_declarations_know_the_degraded_lane():
    assert records.DTYPES["sc_agg"].itemsize == struct.calcsize("<5Q4I16s") == 72
    assert records.DTYPES["sc_agg_key"].itemsize == 16
    header = records.c_header()
    assert "struct sc_agg {" in header and "struct sc_agg_key {" in header
    assert f"#define K_SYSCALL_AGG {records.KIND_CODES['syscall_agg']}" in header
    assert f"#define DROP_MAP_SC_AGG {records.DROP_CODES['map_sc_agg']}" in header
    assert "aggregate map full" in records.drop_text(records.DROP_CODES["map_sc_agg"])
    assert -128 <= records.KIND_CODES["syscall_agg"] <= 127  # the store's Enum8


def test_aggregate_bytes_become_syscall_agg_facts():
    raw = (sc_agg_bytes(1000, 3, 250_000, 5_000, 9_000, 77, 78, GETPPID, b"flood")
           + sc_agg_bytes(2, 0, 10, 6_000, 6_500, 77, 77, OPENAT, b"sixteen-chars-xx"))
    agg = np.frombuffer(raw, dtype=records.DTYPES["sc_agg"])
    ev = decode.agg_records(agg)
    assert ev.dtype == records.EVENT_DTYPE and len(ev) == 2
    assert list(ev["kind"]) == [records.KIND_CODES["syscall_agg"]] * 2
    assert list(ev["ts"]) == [5_000, 6_000] and list(ev["a2"]) == [9_000, 6_500]   # the window
    assert list(ev["a0"]) == [1000, 2] and list(ev["a1"]) == [3, 0] and list(ev["dur"]) == [250_000, 10]
    assert list(ev["tgid"]) == [77, 77] and list(ev["tid"]) == [78, 77] and list(ev["nr"]) == [GETPPID, OPENAT]
    cols = decode.to_arrow(ev, "3f2a0000-0000-0000-0000-000000000001", 0).to_pydict()
    assert cols["comm"] == [b"flood", b"sixteen-chars-xx"] and cols["kind"] == [records.KIND_CODES["syscall_agg"]] * 2
    assert cols["ret"] == [0, 0] and cols["path"] == [b"", b""]
    assert len(decode.agg_records(np.zeros(0, dtype=records.DTYPES["sc_agg"]))) == 0


def test_an_aggregate_reads_as_one_line():
    line = describe({"kind": "syscall_agg", "ts": 1_000_000, "nr": GETPPID, "ret": 0, "a0": 1000, "a1": 3,
                     "a2": 3_500_000, "a3": 0, "dur": 250_000, "path": ""})
    assert line.startswith("getppid x1000, 3 failed") and "250.0us total" in line and "2.500 ms" in line


START = 10_000_000_000
PID = 4242


@pytest.fixture(scope="module")
def run_with_aggregates(tmp_path_factory):
    """The synthetic run (a shell opens /tmp/a, forks, exits) plus syscalls recorded one by one and
    counted in aggregates, through the real ingest path."""
    db = tmp_path_factory.mktemp("degrade") / "db"
    run_id = write_run(str(db), start_ns=START, pid=PID)
    one = record(START + 600_000_000, "syscall", PID, ret=-2)
    one["nr"], one["dur"] = OPENAT, 40
    raw = (sc_agg_bytes(1000, 3, 250_000, START + 700_000_000, START + 800_000_000, PID, PID, GETPPID, b"sh")
           + sc_agg_bytes(5, 1, 100, START + 700_000_000, START + 800_000_000, PID, PID, OPENAT, b"sh")
           + sc_agg_bytes(7, 0, 70, START + 700_000_000, START + 800_000_000, STRANGER, STRANGER, GETPID, b"x"))
    agg = decode.agg_records(np.frombuffer(raw, dtype=records.DTYPES["sc_agg"]))
    with Store(str(db)) as store:
        store.insert_arrow("events", decode.to_arrow(np.concatenate([one, agg]), run_id, 100))
    return db, run_id


def test_top_counts_aggregated_syscalls(run_with_aggregates):
    db, run_id = run_with_aggregates
    params = {"run": run_id, "t_from": START, "t_to": START + 2_000_000_000, "lim": 5}
    with Store(str(db)) as store:
        syscalls = {row[0]: row[1:] for row in named.run(store, "top_syscalls", **params)}
        procs = {row[0]: row[1:] for row in named.run(store, "top_processes", **params)}
    # nr -> calls, total_ns, max_ns (recorded calls only), failed, processes
    assert syscalls[GETPPID] == (1000, 250_000, 0, 3, 1)
    assert syscalls[OPENAT] == (6, 140, 40, 2, 1)
    # pid -> comm, cpu_ns, syscalls, syscall_ns, failed, facts
    assert procs[PID][2:5] == (1006, 250_140, 5) and procs[STRANGER][2:5] == (7, 70, 0)


def test_events_filters_and_rewinding_ignores_aggregates(run_with_aggregates):
    from osrewind.queries.api import Recording

    db, run_id = run_with_aggregates
    with Store(str(db)) as store:
        rec = Recording.of(store, run_id)
        got = list(rec.events(syscalls=["getppid"]))
        assert [(e["kind"], e["syscall"], e["a0"]) for e in got] == [("syscall_agg", "getppid", 1000)]
        failed = {(e["kind"], e["nr"]) for e in rec.events(failed=True)}
        assert failed == {("syscall", OPENAT), ("syscall_agg", GETPPID), ("syscall_agg", OPENAT)}
        run = resolve_run(store, run_id)
        st = state_at(store, run, START + 900_000_000)
        end = state_at(store, run, START + 2_000_000_000)
    assert {p.pid: sorted(p.fds) for p in st.processes} == {PID: [0, 3]}  # no stranger, no fd made up
    assert end.processes == [] and STRANGER not in {p.pid for p in end.exited}
