"""Run metadata comes from the runs table: a run lookup reads the run rows, not the events (every
command pays it). A run whose recorder died never finished its row: it is counted from its own
events, and written back once where the store allows it. ``record --json`` and ``runs`` give the
same counts (lost markers are not events)."""

from __future__ import annotations

import json
import sys
import time
import uuid

import numpy as np
import pytest
from synthetic import record, write_run

from conftest import osrewind, record_json
from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.queries.runs import list_runs, resolve_run

RUN_COLUMNS = ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
               "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"]
START = 20_000_000_000
PID = 777


def aborted_run(db: str) -> tuple[str, int]:
    """A run whose recorder died: its row still says ``recording`` (no end, no counts); six facts and
    a ``lost`` marker (7 records) reached the store. Returns (run id, instant of the last fact)."""
    run_id = uuid.uuid4()
    evs = np.concatenate([record(START + i * 1_000_000, "open", PID, ret=3 + i, a0=-100, path=b"/tmp/x")
                          for i in range(6)])
    last = START + 9_000_000
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows("runs", [[run_id, "dead", "h", "", "6.18", ["sh"], "/tmp", "command", PID, START, 0, 0,
                                    0, 0, None, "recording", "test", time.time_ns()]], RUN_COLUMNS)
        store.insert_arrow("events", decode.to_arrow(evs, run_id, 0))
        store.insert_arrow("events", decode.lost_row(run_id, last, 6, 7))
    return str(run_id), last


def row(db: str, run_id: str) -> tuple:
    with Store(db, mode="read") as store:
        return store.query("SELECT status, events, lost, end_ns FROM runs FINAL WHERE run_id = {r:UUID}",
                           {"r": run_id})[0]


def test_a_finished_run_is_read_from_its_row(tmp_path):
    db = str(tmp_path / "db")
    run_id = write_run(db, start_ns=START, pid=PID)         # its row: 5 events, 0 lost, ends at +2 s
    with Store(db, purpose="test") as store:
        # facts the row does not count: a lookup that read the events would see them
        store.insert_arrow("events", decode.lost_row(run_id, START + 1_600_000_000, 5, 3))
        store.insert_arrow("events", decode.to_arrow(record(START + 1_700_000_000, "open", PID, ret=4), run_id, 6))
    with Store(db, mode="read") as store:
        info = resolve_run(store, run_id)
    assert (info.status, info.events, info.lost, info.end_ns) == ("complete", 5, 0, START + 2_000_000_000)


def test_an_aborted_run_is_counted_from_its_events_and_written_back_once(tmp_path):
    db = str(tmp_path / "db")
    run_id, last = aborted_run(db)
    expected = ("aborted", 6, 7, last)
    # a reading command never writes: it counts the run's own facts (lost markers apart) each time
    with Store(db, mode="read") as store:
        info = resolve_run(store, run_id)
    assert (info.status, info.events, info.lost, info.end_ns) == expected
    assert row(db, run_id)[0] == "recording"
    # nor does a process that is recording (its own run's row says 'recording' until it ends)
    with Store(db, purpose="recording") as store:
        assert (resolve_run(store, run_id).status, resolve_run(store, run_id).events) == ("aborted", 6)
    assert row(db, run_id)[0] == "recording"
    # a store opened for writing, with no recording in this process: the row is completed once
    with Store(db, purpose="test") as store:
        info = resolve_run(store, run_id)
    assert (info.status, info.events, info.lost, info.end_ns) == expected
    assert row(db, run_id) == ("aborted", 6, 7, last)
    with Store(db, mode="read") as store:
        again = list_runs(store)
    assert [(r.run_id, r.status, r.events, r.lost, r.end_ns) for r in again] == [(run_id, *expected)]
    # every other column of the row is kept as it was
    with Store(db, mode="read") as store:
        kept = store.query("SELECT name, host, command, cwd, scope, root_pid, start_ns, version FROM runs FINAL")
    assert kept == [("dead", "h", ["sh"], "/tmp", "command", PID, START, "test")]


def test_runs_cli_agrees_with_the_row(tmp_path):
    db = str(tmp_path / "db")
    run_id, last = aborted_run(db)
    listed = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [(r["run_id"], r["status"], r["events"], r["lost"], r["end_ns"]) for r in listed] == \
        [(run_id, "aborted", 6, 7, last)]


@pytest.mark.kernel
def test_record_json_and_runs_agree(kernel, tmp_path):
    db = tmp_path / "db"
    # a burst of syscalls through a small ring: some records may be lost, and counted the same way
    burst = "import os\nfor _ in range(200000): os.getppid()\nfor _ in range(200): os.close(os.open('/dev/null', 0))"
    summary = record_json(db, "--ring-mb", "1", "--", sys.executable, "-c", burst, check_exit=0)
    listed = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    mine = [r for r in listed if r["run_id"] == summary["run_id"]]
    assert mine and (mine[0]["events"], mine[0]["lost"], mine[0]["status"]) == \
        (summary["events"], summary["lost"], summary["status"])
    with Store(str(db), mode="read") as store:
        stored = store.query("SELECT countIf(kind != 'lost'), sumIf(a0, kind = 'lost') FROM events "
                             "WHERE run_id = {r:UUID}", {"r": summary["run_id"]})[0]
    assert (stored[0], stored[1]) == (summary["events"], summary["lost"])
