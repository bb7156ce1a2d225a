"""Against a real ClickHouse server: set OSREWIND_TEST_CLICKHOUSE_URL (e.g. http://localhost:8123/osrtest,
a database osrewind may create its tables in) to run these. None can run where osrewind is developed
(no modern server installs there), so without the variable they are skipped; docs/cluster.md."""

from __future__ import annotations

import json
import os
import sys

import pytest

from conftest import WORKLOADS, osrewind

URL = os.environ.get("OSREWIND_TEST_CLICKHOUSE_URL", "")
pytestmark = pytest.mark.skipif(not URL, reason="set OSREWIND_TEST_CLICKHOUSE_URL to test against a ClickHouse server")


@pytest.mark.kernel
def test_record_and_read_back_through_a_server(kernel, tmp_path):
    out = osrewind("store", "init", db=URL)
    assert out.returncode == 0, out.stderr
    rec = osrewind("record", "--quiet", "--json", "--", sys.executable, str(WORKLOADS / "fdsteps.py"), str(tmp_path),
                   db=URL, timeout=300)
    assert rec.returncode == 3, rec.stderr
    run = json.loads(rec.stdout.strip().splitlines()[-1])
    runs = json.loads(osrewind("runs", "--json", db=URL).stdout)
    assert any(r["run_id"] == run["run_id"] and r["status"] == "complete" for r in runs)
    state = osrewind("state", run["run_id"], "--at", "-1ms", "--json", db=URL)
    assert state.returncode == 0, state.stderr
    events = osrewind("events", run["run_id"], "--json", db=URL)
    assert events.returncode == 0 and events.stdout.strip(), events.stderr
    files = osrewind("sql", "--run", run["run_id"], "--at", "-1ms", "--json",
                     "SELECT pid, fd, path FROM process_open_files", db=URL)
    assert files.returncode == 0, files.stderr
    rewound = {(p["pid"], f["fd"], f["target"]) for p in json.loads(state.stdout)["processes"] for f in p["fds"]
               if not f.get("socket")}
    assert {(r["pid"], r["fd"], r["path"]) for r in json.loads(files.stdout)} == rewound
    assert osrewind("reindex", run["run_id"], db=URL).returncode == 0
