"""The syscall stream lane degrades instead of dropping: a real flood, recorded with a 1 MiB stream
ring that cannot keep up, still rewinds exactly.

tests/workloads/degrade_flood.c makes bursts of getppid() (far more than the ring holds between two
drains), changes its fd table between bursts (open, dup, dup2, close), and after every change reads
its own /proc/self/fd at a known CLOCK_MONOTONIC instant. The recording must show that the stream
degraded (`syscall_agg` facts: the kernel counted those syscalls per thread and syscall instead of
recording each), lose nothing of the state lane, rewind to exactly the fd table the kernel showed at
every sampled instant, and account for every getppid() the program made: recorded one by one plus
counted in aggregates, nothing silently gone."""

from __future__ import annotations

import subprocess

import pytest

from conftest import WORKLOADS, record_json
from osrewind.ingest.store import Store
from osrewind.probes import records, syscall_table
from osrewind.queries.api import Recording

pytestmark = pytest.mark.kernel

STEPS = 30          # fd changes, each sampled
CALLS = 120_000     # getppid() per burst: a burst alone is ~8x what the syscall ring (2 MiB at --ring-mb 1) holds
STREAM_DROPS = ("ring_sc_enter", "ring_sc_exit", "map_sc_agg", "spool_full")


def parse(line: str) -> tuple[int, dict[int, str]]:
    t, *fds = line.split(" ")
    return int(t), {int(fd): target for fd, _, target in (f.partition("=") for f in fds)}


@pytest.fixture(scope="module")
def flood(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("degrade")
    exe = work / "degrade_flood"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(exe), str(WORKLOADS / "degrade_flood.c")], check=True)
    out = work / "samples.txt"
    db = work / "db"
    summary = record_json(db, "--name", "degrade", "--ring-mb", "1", "--", str(exe), str(STEPS), str(CALLS),
                          str(out), check_exit=0)
    lines = out.read_text().splitlines()
    assert lines[-1].startswith("getppid ")
    made = int(lines[-1].split()[1])
    samples = [parse(line) for line in lines[:-1]]
    assert made == CALLS * (STEPS + 1) and len(samples) == STEPS + 1
    with Store(str(db)) as store:
        rid = summary["run_id"]
        (pid,), = store.query("SELECT tgid FROM events WHERE run_id = {r:UUID} AND kind = 'exec' "
                              "AND endsWith(path, 'degrade_flood')", {"r": rid})
        lost = dict(store.query("SELECT a1, sum(a0) FROM events WHERE run_id = {r:UUID} AND kind = 'lost' "
                                "GROUP BY a1", {"r": rid}))
        nr = syscall_table.number("getppid")
        (recorded,), = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' "
                                   "AND nr = {nr:UInt16} AND tgid = {p:UInt32}", {"r": rid, "nr": nr, "p": pid})
        (aggs, counted, window), = store.query(
            "SELECT count(), sum(a0), max(a2 - ts) FROM events WHERE run_id = {r:UUID} AND kind = 'syscall_agg' "
            "AND nr = {nr:UInt16} AND tgid = {p:UInt32}", {"r": rid, "nr": nr, "p": pid})
        rec = Recording.of(store, rid)
        states = {t: rec.state_at(t) for t, _ in samples}
        top = rec.top()
    return {"summary": summary, "pid": pid, "lost": lost, "made": made, "samples": samples, "states": states,
            "recorded": recorded, "aggs": aggs, "counted": counted, "window": window, "top": top}


def test_the_stream_degraded_to_aggregates(flood):
    assert flood["summary"]["status"] == "complete"
    assert flood["aggs"] > 0 and flood["counted"] > 0, "the flood never filled the stream ring"
    assert flood["window"] > 0  # every aggregate says the time it covers


def test_the_state_lane_lost_nothing(flood):
    assert not {records.DROP_CODES["ring_events"], records.DROP_CODES["ring_facts"]} & set(flood["lost"]), flood["lost"]


def test_every_syscall_is_recorded_or_counted(flood):
    stream_lost = {c: flood["lost"].get(records.DROP_CODES[c], 0) for c in STREAM_DROPS}
    assert stream_lost == dict.fromkeys(STREAM_DROPS, 0)
    assert flood["recorded"] + flood["counted"] == flood["made"], (flood["recorded"], flood["counted"])
    getppid = [s for s in flood["top"]["syscalls"] if s["syscall"] == "getppid"]
    assert getppid and getppid[0]["calls"] == flood["made"]  # top counts the aggregated ones too


def test_state_at_every_sampled_instant_is_what_the_kernel_showed(flood):
    pid = flood["pid"]
    for t, fds in flood["samples"]:
        procs = {p.pid: p for p in flood["states"][t].processes}
        assert pid in procs, t
        got = {n: f.target for n, f in procs[pid].fds.items()}
        assert got == fds, (t - flood["samples"][0][0], got, fds)
