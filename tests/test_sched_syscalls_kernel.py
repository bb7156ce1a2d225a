"""The scheduler and the every-syscall stream, recorded for real."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import WORKLOADS, osrewind, record_json
from osrewind.ingest.store import Store
from osrewind.probes import syscall_table
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

pytestmark = pytest.mark.kernel


def jsonl(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_syscall_names_match_the_kernels_own_list(kernel):
    events = "/sys/kernel/tracing/events/syscalls"
    kernel_names = {d[len("sys_enter_"):] for d in os.listdir(events) if d.startswith("sys_enter_")}
    ours = set(syscall_table.table().values())
    missing = {n for n in kernel_names if syscall_table.TRACEFS_ALIASES.get(n, n) not in ours}
    assert missing == set()
    # fixed points of both tables (x86_64 and aarch64 numbering differ)
    assert syscall_table.name(257, "x86_64") == "openat" and syscall_table.name(56, "aarch64") == "openat"
    assert syscall_table.name(110, "x86_64") == "getppid" and syscall_table.name(173, "aarch64") == "getppid"
    assert syscall_table.name(231, "x86_64") == "exit_group" and syscall_table.name(94, "aarch64") == "exit_group"


def test_every_syscall_recorded_with_number_name_args_result_duration(kernel, tmp_path):
    db = tmp_path / "db"
    code = ("import os, ctypes; libc = ctypes.CDLL(None); "
            "[libc.syscall(110) for _ in range(123)]; "        # getppid, by number
            f"os.path.exists({str(tmp_path / 'nope')!r}); os.close(os.open('/etc/hostname', os.O_RDONLY))")
    summary = record_json(db, "--", sys.executable, "-c", code, check_exit=0)
    rows = jsonl(osrewind("events", summary["run_id"], "--syscall", "getppid", "--json", db=db))
    assert len(rows) == 123
    assert all(r["syscall"] == "getppid" and r["ret"] > 0 and r["dur"] > 0 for r in rows)
    stat = jsonl(osrewind("events", summary["run_id"], "--syscall", "newfstatat", "--failed", "--json", db=db))
    assert any(r["ret"] == -2 for r in stat)  # os.path.exists of a missing path: ENOENT
    opens = jsonl(osrewind("events", summary["run_id"], "--syscall", "openat", "--json", db=db))
    assert any(r["a1"] > 0 and r["ret"] >= 0 for r in opens)  # the path pointer, the fd
    exits = jsonl(osrewind("events", summary["run_id"], "--syscall", "exit_group", "--json", db=db))
    assert [r["a0"] for r in exits] == [0]
    line = osrewind("events", summary["run_id"], "--syscall", "getppid", "--limit", "1", db=db).stdout
    assert "getppid() = " in line and "us>" in line
    bad = osrewind("events", summary["run_id"], "--syscall", "nosuchcall", db=db)
    assert bad.returncode == 2 and "unknown syscall 'nosuchcall'" in bad.stderr


def test_no_sched_and_no_syscalls_leave_them_out(kernel, tmp_path):
    db = tmp_path / "db"
    summary = record_json(db, "--no-sched", "--no-syscalls", "--", "/bin/sh", "-c", "sleep 0.1; cat /etc/hostname",
                          check_exit=0)
    kinds = {r["kind"] for r in jsonl(osrewind("events", summary["run_id"], "--json", db=db))}
    assert "exec" in kinds and "open" in kinds
    assert not kinds & {"syscall", "sched_switch", "sched_wakeup", "sched_migrate"}


@pytest.fixture(scope="module")
def contend(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("contend")
    db = tmp_path_factory.mktemp("contend-store") / "db"
    summary = record_json(db, "--", sys.executable, str(WORKLOADS / "contend.py"), str(work), check_exit=0)
    forks = jsonl(osrewind("events", summary["run_id"], "--kind", "fork", "--json", db=db))
    hog, sleeper = (f["a1"] for f in forks[:2])  # the workload forks the hog first
    return db, summary, hog, sleeper


def test_who_runs_on_cpu0_while_the_sleeper_sleeps(contend):
    db, summary, hog, sleeper = contend
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        # each sleep as the kernel timed it (the sleeper's clock_nanosleep: entry, duration), not the
        # marks around it: after its timer fires, the sleeper may wait on a busy CPU 0 (runnable)
        sleeps = store.query("SELECT ts, dur FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' "
                             "AND tgid = {p:UInt32} AND nr = {nr:UInt16} ORDER BY ts",
                             {"r": run.run_id, "p": sleeper, "nr": syscall_table.number("clock_nanosleep")})
        assert len(sleeps) == 5 and all(dur >= 100_000_000 for _, dur in sleeps), sleeps
        hits = samples = 0
        for start, dur in sleeps:
            for k in range(1, 6):   # five instants spread over each sleep
                at = start + dur * k // 6
                st = state_at(store, run, at)
                procs = {p.pid: p for p in st.processes}
                assert procs[sleeper].run_state == "sleeping"
                assert procs[hog].run_state in ("running", "runnable")
                cpu0 = {c.cpu: c for c in st.cpus}[0]
                # both are pinned to CPU 0 and the sleeper sleeps: CPU 0 runs the hog or a task out of
                # scope (a loaded machine's, a kernel thread), and the hog runs nowhere else
                assert cpu0.tgid != sleeper and procs[hog].on_cpu in ({}, {hog: 0})
                assert (cpu0.tgid == hog) == (procs[hog].on_cpu == {hog: 0})
                hits += cpu0.tgid == hog
                samples += 1
    # the hog holds CPU 0 most of the time on a quiet machine, about half of it beside one busy task
    assert hits >= samples // 5, (hits, samples)


def test_run_queue_latency_when_they_contend(contend):
    db, summary, hog, sleeper = contend
    switches = jsonl(osrewind("events", summary["run_id"], "--kind", "sched_switch", "--json", db=db))
    waited_sleeper = [s["dur"] for s in switches if s["a1"] == sleeper and s["dur"] > 0]
    waited_hog = [s["dur"] for s in switches if s["a1"] == hog and s["dur"] > 0]
    assert waited_sleeper and waited_hog
    preempted = [s for s in switches if s["tid"] == hog and (s["a0"] & 0x100 or s["a0"] == 0)]
    voluntary = [s for s in switches if s["tid"] == sleeper and not (s["a0"] & 0x100 or s["a0"] == 0)]
    assert preempted and voluntary  # the hog is preempted, the sleeper goes to sleep by itself
    assert all(s["cpu"] == 0 for s in switches if s["tid"] in (hog, sleeper))


def test_top_shows_where_the_time_went(contend):
    db, summary, hog, sleeper = contend
    out = osrewind("top", summary["run_id"], "--json", db=db)
    assert out.returncode == 0, out.stderr
    t = json.loads(out.stdout)
    procs = {p["pid"]: p for p in t["processes"]}
    assert t["processes"][0]["pid"] == hog
    # the sleeper spins 5 x 80 ms sharing CPU 0 with the hog: about half of that on the CPU
    assert procs[hog]["cpu_ns"] > 1_000_000_000 > procs[sleeper]["cpu_ns"] > 100_000_000
    sleeping = {s["syscall"]: s for s in t["syscalls"]}["clock_nanosleep"]
    assert sleeping["calls"] >= 5 and sleeping["total_ns"] >= 5 * 100_000_000
    files = json.loads(osrewind("top", summary["run_id"], "--by", "files", "--limit", "500", "--json", db=db).stdout)
    marks = [f for f in files["files"] if "/marks/" in f["path"]]
    assert len(marks) == 10 and all(f["kinds"] == ["mkdir"] for f in marks)
    narrow = json.loads(osrewind("top", summary["run_id"], "--at", "+0.5s", "--window", "200ms", "--by",
                                 "processes", "--json", db=db).stdout)
    assert set(narrow) == {"run_id", "from_ns", "to_ns", "processes"}
    assert narrow["to_ns"] - narrow["from_ns"] == 200_000_000
    human = osrewind("top", summary["run_id"], "--by", "syscalls", db=db).stdout
    assert "clock_nanosleep" in human
