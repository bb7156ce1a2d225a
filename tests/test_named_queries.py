"""Every named query in queries/sql/ has a header and a fixture with its expected answer, here."""

from __future__ import annotations

import json

import pytest
from synthetic import write_run

from conftest import osrewind
from osrewind.ingest import marks
from osrewind.ingest.store import Store
from osrewind.queries import keyframes, named
from osrewind.queries.engine import Machine
from osrewind.queries.runs import resolve_run

START = 10_000_000_000
PID = 4242


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = tmp_path_factory.mktemp("named") / "db"
    run_id = write_run(str(db), name="synth", start_ns=START, pid=PID)
    with Store(str(db)) as s:
        run = resolve_run(s, run_id)
        assert keyframes.build(s, run, every=2) == 2
        s.ensure_schema()   # a test of the run, as pytest --osrewind files it
        found = marks.tests([
            {"t": START + 10, "pid": PID, "nodeid": "t.py::test_a", "when": "call", "ev": "start"},
            {"t": START + 20, "pid": PID, "nodeid": "t.py::test_a", "when": "call", "ev": "end", "outcome": "failed",
             "message": "boom"}])
        s.insert_arrow("tests", marks.table(run_id, found, lambda pid: 0))
    return run, db


def fixtures(run_id: str) -> dict[str, tuple[dict, object]]:
    """name -> (parameters, expected answer as rows)."""
    end = START + 2_000_000_000
    return {
        "runs_list": ({"limit": 5}, lambda rows: [(r[0], r[1], r[11]) for r in rows] == [(run_id, "synth", 5)]),
        "run_totals": ({"runs": [run_id]}, [(run_id, 5, 0, START + 1_500_000_001)]),
        "run_tests": ({"run": run_id}, [("t.py::test_a", "failed", PID, "", START + 10, START + 20, 0, 0, START + 10,
                                        START + 20, 0, 0, "boom")]),
        "snapshot_procs": ({"run": run_id}, [(PID, 1, START - 1000, 0, "sh", "/bin/sh", ["sh", "job.sh"], "/tmp", 1,
                                              START, "")]),   # the cgroup: none in this fixture
        "snapshot_fds": ({"run": run_id}, [(PID, 0, "/dev/null", "file", 0)]),
        "state_events_after": ({"run": run_id, "at": end, "c_ts": START + 1_000_000_000, "c_seq": 1, "lim": 10,
                                "io_nrs": [], "uid_nrs": []},
                               lambda rows: [r[2] for r in rows] == [6, 5, 6] and rows[0][3] == PID + 1),
        "events_filtered": ({"run": run_id, "t_from": START, "t_to": end, "pids": [], "kinds": ["open"],
                             "path_re": "", "failed": 0, "nrs": [], "backwards": 0, "c_ts": 0, "c_seq": 0,
                             "lim": 10}, lambda rows: [(r[2], r[5], r[-3]) for r in rows] == [("open", 3, b"/tmp/a")]),
        "process_births": ({"run": run_id}, lambda rows: sorted(rows) == [(1, PID), (PID, PID + 1)]),
        "keyframe_positions": ({"run": run_id}, [(START + 1_000_000_000, 1), (START + 1_500_000_000, 3)]),
        "keyframe_state": ({"run": run_id, "ts": START + 1_500_000_000, "seq": 3, "gen": None},  # the current one
                           lambda rows: len(rows) == 1 and keyframes.load(rows[0][0], Machine()).procs.keys() == {PID}),
        "run_processes": ({"run": run_id},
                          lambda rows: [(r[0], r[2], r[5], r[6]) for r in rows] == [(PID, 1, 0, 1), (PID + 1, PID, None, 0)]),
        "file_history": ({"run": run_id, "path": "/tmp/a"},
                         [(START + 500_000_000, PID, START - 1000, "read", "/tmp/a", "")]),
        "process_reads": ({"run": run_id, "pid": PID, "start": START - 1000, "until": end}, [("/tmp/a",)]),
        "top_processes": ({"run": run_id, "t_from": START, "t_to": end, "lim": 5},
                          [(PID, "sh", 0, 0, 0, 0, 4), (PID + 1, "sh", 0, 0, 0, 0, 1)]),
        "top_syscalls": ({"run": run_id, "t_from": START, "t_to": end, "lim": 5}, []),
        "event_density": ({"run": run_id, "t_from": START, "t_to": end, "width": 1_000_000_000},
                          [(0, 1), (1, 4)]),
        "run_gaps": ({"run": run_id}, []),
        "cpu_switches": ({"run": run_id, "t_from": START, "t_to": end}, []),
        "neighbour_event": ({"run": run_id, "at": START + 1_000_000_000, "t_from": START, "t_to": end,
                             "backwards": 1}, [(START + 500_000_000,)]),
        "top_files": ({"run": run_id, "t_from": START, "t_to": end, "lim": 5}, [("/tmp/a", 1, 1, 0, 1, ["open"])]),
        "diff_facts": ({"run": run_id}, [(START + 500_000_000, PID, "open", 0, "open\x1fread\x1f/tmp/a\x1fok"),
                                         (START + 1_000_000_000, PID, "fork", PID + 1, "fork"),
                                         (START + 1_500_000_000, PID, "exit_call", 0, "exit\x1f0")]),
        "top_endpoints": ({"run": run_id, "t_from": START, "t_to": end, "lim": 5}, []),
    }


def test_every_query_has_a_header_and_a_fixture(store):
    run, _db = store
    have = fixtures(run.run_id)
    for name in named.names():
        assert named.header(name).startswith(f"{name}: "), name
        assert "Parameters:" in named.header(name), name
        assert name in have, f"queries/sql/{name}.sql has no fixture in tests/test_named_queries.py"


@pytest.mark.parametrize("name", sorted(fixtures("x")))
def test_named_query_answers(store, name):
    run, db = store
    params, expected = fixtures(run.run_id)[name]
    text = named.sql(name)
    with Store(str(db)) as s:
        if params.get("gen", 0) is None:
            params = {**params, "gen": keyframes.current_gen(s, run.run_id)}
        rows = s.query_bytes(text, params, ("state", "path", "path2", "comm")) if name in (
            "keyframe_state", "events_filtered") else s.query(text, params)
    rows = [tuple(str(v) if hasattr(v, "hex") and not isinstance(v, bytes) else v for v in r) for r in rows]
    if callable(expected):
        assert expected(rows), rows
    else:
        assert rows == expected


def test_sql_command(store):
    run, db = store
    listing = osrewind("sql", "--list", db=db)
    assert listing.returncode == 0 and "runs_list: every recorded run" in listing.stdout
    out = osrewind("sql", "top_files", "-p", f"run={run.run_id}", "-p", f"t_from={START}", "-p", f"t_to={START * 2}",
                   "-p", "lim=3", "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)[0]["path"] == "/tmp/a"
    own = osrewind("sql", "SELECT count() AS n FROM events WHERE run_id = {r:UUID}", "-p", f"r={run.run_id}",
                   "--json", db=db)
    assert json.loads(own.stdout) == [{"n": 5}]
    refused = osrewind("sql", "DROP TABLE events", db=db)
    assert refused.returncode == 2 and "only reading queries" in refused.stderr
    assert json.loads(osrewind("sql", "SELECT count() AS n FROM events", "--json", db=db).stdout) == [{"n": 5}]
    assert osrewind("sql", "top_files", "-p", "oops", db=db).returncode == 2
