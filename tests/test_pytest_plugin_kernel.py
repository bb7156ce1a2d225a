"""``pytest --osrewind`` for real: pytest sessions run as subprocesses under the plugin, recorded by
the real probe into a real store; what the tests table, ``tests``, ``state --test`` and JUnit XML
say is checked against what the test processes themselves saw (their pids, their children's pids)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conftest import AS_NOBODY, osrewind

pytestmark = pytest.mark.kernel

SUITE = '''
import json, os, subprocess

REPORT = {report!r}

def _note(**kw):
    with open(REPORT, "a") as f:
        f.write(json.dumps(kw) + "\\n")

def test_passes():
    subprocess.run(["true"], check=True)
    _note(test="test_passes", pid=os.getpid())

def test_fails():
    child = subprocess.Popen(["sleep", "3"])          # alive when the test fails
    _note(test="test_fails", pid=os.getpid(), child=child.pid)
    with open(os.path.join(os.path.dirname(REPORT), "settings.conf")) as f:   # not there: fails
        f.read()
'''

DIES = '''
import os

def test_first():
    pass

def test_dies():
    with open({marker!r}, "w") as f:
        f.write(str(os.getpid()))
    os._exit(3)
'''


def _pytest(tmp_path: Path, *args: str, user: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSREWIND_", "PYTEST_"))}
    return subprocess.run([*(user or []), sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)


def _notes(report: Path) -> dict[str, dict]:
    return {n["test"]: n for n in map(json.loads, report.read_text().splitlines())}


def test_a_failing_session_keeps_each_tests_window_and_says_how_to_open_it(kernel, tmp_path):
    db, report, junit = tmp_path / "db", tmp_path / "report.jsonl", tmp_path / "junit.xml"
    (tmp_path / "test_suite.py").write_text(SUITE.format(report=str(report)))
    exports = tmp_path / "exports"
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(db), f"--junitxml={junit}",
                  f"--osrewind-export={exports}", "test_suite.py")
    assert out.returncode == 1, out.stdout + out.stderr          # pytest's own exit code: a test failed
    notes = _notes(report)
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert len(runs) == 1 and runs[0]["name"].startswith("pytest-") and runs[0]["exit_code"] == 1
    rid = runs[0]["run_id"]
    # the terminal names the failing test and the command that opens it
    assert f"osrewind tui {rid[:8]} --test 'test_suite.py::test_fails'" in out.stdout, out.stdout
    tests = {t["nodeid"]: t for t in json.loads(osrewind("tests", rid, "--json", db=db, check=True).stdout)}
    assert set(tests) == {"test_suite.py::test_passes", "test_suite.py::test_fails"}
    ok, bad = tests["test_suite.py::test_passes"], tests["test_suite.py::test_fails"]
    assert (ok["outcome"], bad["outcome"]) == ("passed", "failed")
    assert bad["pid"] == notes["test_fails"]["pid"] and ok["pid"] == notes["test_passes"]["pid"]
    assert "settings.conf" in bad["message"]
    start, end = runs[0]["start_ns"], runs[0]["start_ns"] + int(runs[0]["duration_s"] * 1e9) + 1
    assert start <= ok["start_ns"] < ok["end_ns"] <= bad["start_ns"] < bad["end_ns"] <= end
    for t in (ok, bad):
        setup, call, teardown = (t["phases"][w] for w in ("setup", "call", "teardown"))
        assert t["start_ns"] == setup[0] <= setup[1] <= call[0] <= call[1] <= teardown[0] <= teardown[1] == t["end_ns"]
    # the failing open is inside the test's window: events --test finds it, and nothing of the other test
    fails = [json.loads(x) for x in osrewind("events", rid, "--test", "test_fails", "--kind", "open", "--failed",
                                             "--json", db=db, check=True).stdout.splitlines()]
    assert any(e["path"].endswith("settings.conf") and e["tgid"] == bad["pid"] for e in fails)
    assert all(bad["start_ns"] <= e["ts"] <= bad["end_ns"] for e in fails)
    # the state where the test failed: the test process, and the child it started (the kernel's pid)
    st = json.loads(osrewind("state", rid, "--test", "test_suite.py::test_fails", "--json", db=db, check=True).stdout)
    procs = {p["pid"]: p for p in st["processes"]}
    child = procs[notes["test_fails"]["child"]]
    assert child["ppid"] == bad["pid"] and child["argv"] == ["sleep", "3"]
    start_st = json.loads(osrewind("state", rid, "--at", "test:test_fails:start", "--json", db=db, check=True).stdout)
    assert bad["pid"] in {p["pid"] for p in start_st["processes"]}
    assert notes["test_fails"]["child"] not in {p["pid"] for p in start_st["processes"]}   # not started yet
    # JUnit XML: the failing test names its run
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_fails"].iter("property")}
    assert props["osrewind.run"] == runs[0]["name"]
    assert not list(cases["test_passes"].iter("property"))
    # one run file per failing test, named in JUnit XML (property and attachment line), that opens on its own
    (trace,) = exports.iterdir()
    assert props["osrewind.trace"] == str(trace)
    assert f"[[ATTACHMENT|{trace}]]" in cases["test_fails"].find("system-out").text
    away = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    st_file = json.loads(osrewind("state", str(trace), "--test", "test_suite.py::test_fails", "--json", env=away,
                                  check=True).stdout)
    assert st_file["processes"] == st["processes"]
    (only,) = json.loads(osrewind("tests", str(trace), "--json", env=away, check=True).stdout)
    assert only["nodeid"] == "test_suite.py::test_fails" and only["outcome"] == "failed"
    _check_perfetto(db, rid, tmp_path / "run.pftrace", tests)


def _check_perfetto(db: Path, rid: str, out: Path, tests: dict) -> None:
    """The run as a Perfetto trace, parsed back with Perfetto's own protos: CPU lanes, tracks, slices
    and flows as the store has them."""
    from perfetto.protos.perfetto.trace.perfetto_trace_pb2 import Trace, TrackEvent

    osrewind("export", rid, "--format", "perfetto", "-o", str(out), db=db, check=True)
    trace = Trace.FromString(out.read_bytes())
    facts = [json.loads(x) for x in osrewind("events", rid, "--json", db=db, check=True).stdout.splitlines()]
    switches = [e for e in facts if e["kind"] == "sched_switch"]
    lanes = [(p.ftrace_events.cpu, fe) for p in trace.packet if p.HasField("ftrace_events")
             for fe in p.ftrace_events.event if fe.HasField("sched_switch")]
    assert len(lanes) == len(switches) > 0 and {c for c, _ in lanes} == {e["cpu"] for e in switches}
    assert sorted(fe.sched_switch.next_pid for _c, fe in lanes) == sorted(e["a1"] for e in switches)
    tracks = {p.track_descriptor.uuid: p.track_descriptor for p in trace.packet if p.HasField("track_descriptor")}
    procs = {d.process.pid for d in tracks.values() if d.HasField("process")}
    assert {t["pid"] for t in tests.values()} <= procs
    events = [p.track_event for p in trace.packet if p.HasField("track_event")]
    begins = [e for e in events if e.type == TrackEvent.TYPE_SLICE_BEGIN and tracks[e.track_uuid].HasField("thread")]
    calls = [e for e in facts if e["kind"] == "syscall"]
    assert len(begins) == len(calls) and sorted(e.name for e in begins) == sorted(e["syscall"] for e in calls)
    assert sum(e.type == TrackEvent.TYPE_SLICE_END for e in events) == len(begins) + len(tests)
    flows = [f for e in events for f in e.flow_ids]
    ends = [f for e in events for f in e.terminating_flow_ids]
    forks = [e for e in facts if e["kind"] == "fork" and not e["a2"] & 0x10000]
    assert sorted(flows) == sorted(ends) and len(flows) == len(forks) > 0
    test_slices = {e.name for e in events if e.type == TrackEvent.TYPE_SLICE_BEGIN and tracks[e.track_uuid].name == "tests"}
    assert test_slices == set(tests)


def test_a_test_whose_process_dies_is_kept_as_died(kernel, tmp_path):
    db, marker = tmp_path / "db", tmp_path / "dying-pid"
    (tmp_path / "test_dies.py").write_text(DIES.format(marker=str(marker)))
    exports = tmp_path / "exports"
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(db), f"--osrewind-export={exports}", "test_dies.py")
    assert out.returncode == 3, out.stdout + out.stderr          # what os._exit said, passed through
    pid = int(marker.read_text())
    tests = {t["nodeid"]: t for t in json.loads(osrewind("tests", "last", "--json", db=db, check=True).stdout)}
    died = tests["test_dies.py::test_dies"]
    assert tests["test_dies.py::test_first"]["outcome"] == "passed"
    assert died["outcome"] == "died" and died["pid"] == pid and died["end_ns"] > died["start_ns"]
    assert "call" in died["phases"]
    assert "DIED" in out.stdout and "--test 'test_dies.py::test_dies'" in out.stdout
    # just before it died, the test process was there; at the end of the run it is not
    st = json.loads(osrewind("state", "last", "--test", "test_dies", "--json", db=db, check=True).stdout)
    assert pid in {p["pid"] for p in st["processes"]}
    end = json.loads(osrewind("state", "last", "--json", db=db, check=True).stdout)
    assert pid not in {p["pid"] for p in end["processes"]}
    # a test that died is a failure: its run file is exported, and opens where its process was alive
    (trace,) = exports.iterdir()
    away = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    st_file = json.loads(osrewind("state", str(trace), "--test", "test_dies", "--json", env=away, check=True).stdout)
    assert st_file["processes"] == st["processes"]


def test_a_passing_session_keeps_only_its_summary_unless_asked(kernel, tmp_path):
    db = tmp_path / "db"
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(db), "test_ok.py")
    assert out.returncode == 0 and "trace not kept" in out.stdout, out.stdout + out.stderr
    (run,) = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert "no test failed" in run["status_detail"]
    assert json.loads(osrewind("tests", "last", "--json", db=db, check=True).stdout)[0]["outcome"] == "passed"
    assert osrewind("events", "last", "--json", db=db, check=True).stdout == ""
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(db), "--osrewind-keep=all", "test_ok.py")
    assert out.returncode == 0 and "trace kept" in out.stdout
    assert osrewind("events", "last", "--kind", "exec", "--json", db=db, check=True).stdout.strip()


def test_without_root_the_session_runs_unrecorded(kernel, tmp_path):
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    assert True\n")
    tmp_path.chmod(0o777)
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(tmp_path / "db"), "test_ok.py", user=AS_NOBODY)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stderr.count("osrewind: warning: recording needs root") == 1
    assert "1 passed" in out.stdout and not (tmp_path / "db").exists()


def test_with_xdist_the_workers_are_recorded_with_the_session(kernel, tmp_path):
    db, report = tmp_path / "db", tmp_path / "report.jsonl"
    (tmp_path / "test_suite.py").write_text(SUITE.format(report=str(report)))
    out = _pytest(tmp_path, "-p", "xdist", "-n", "2", "--osrewind", "--osrewind-db", str(db), "test_suite.py")
    assert out.returncode == 1, out.stdout + out.stderr
    notes = _notes(report)
    tests = {t["nodeid"]: t for t in json.loads(osrewind("tests", "last", "--json", db=db, check=True).stdout)}
    assert {t["outcome"] for t in tests.values()} == {"passed", "failed"}
    assert {t["worker"] for t in tests.values()} <= {"gw0", "gw1"} and all(t["worker"] for t in tests.values())
    # each test ran in a worker process, which the recording saw being born under the session
    tree = json.loads(osrewind("tree", "last", "--json", db=db, check=True).stdout)

    def pids(nodes):
        for n in nodes:
            yield n["pid"]
            yield from pids(n.get("children", []))

    seen = set(pids(tree["processes"]))
    for name in ("test_passes", "test_fails"):
        t = tests[f"test_suite.py::{name}"]
        assert t["pid"] == notes[name]["pid"] and t["pid"] in seen
    assert notes["test_fails"]["child"] in seen


FLAKY = '''
import os, random

def test_flaky(tmp_path):
    ready = tmp_path / "ready"
    if random.random() < 0.5:
        ready.write_text("ok")
    assert ready.read_text() == "ok"
'''


def test_hunt_reruns_a_flaky_session_until_it_passed_and_failed(kernel, tmp_path):
    db = tmp_path / "db"
    (tmp_path / "test_flaky.py").write_text(FLAKY)
    out = _pytest(tmp_path, "--osrewind", "--osrewind-db", str(db), "--osrewind-hunt", "30", "test_flaky.py")
    assert out.returncode == 1, out.stdout + out.stderr          # it failed at least once
    assert "a passing and a failing session" in out.stdout and "first divergence:" in out.stdout
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert sorted(r["exit_code"] for r in runs) == [0, 1]      # one of each kept, the others deleted
    sessions = out.stderr.count("osrewind: hunt: session ")
    assert 2 <= sessions <= 30
    for r in runs:
        (t,) = json.loads(osrewind("tests", r["run_id"], "--json", db=db, check=True).stdout)
        assert t["outcome"] == ("passed" if r["exit_code"] == 0 else "failed")
