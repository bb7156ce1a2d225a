"""osrewind against a ClickHouse server (`--db http://...`): DDL, inserts, named queries, osquery's
tables, a real recording read back by every reading command.

With OSREWIND_TEST_CLICKHOUSE_URL set (e.g. http://localhost:8123/osrtest, a database osrewind may
create its tables in) these run against that server. Without it they run against
tests/chdb_http.py: the real engine (chDB) behind ClickHouse's HTTP interface, since no modern
server can be installed where osrewind is developed (docs/cluster.md)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic import random_run
from test_sql_views import agree_everywhere

from conftest import WORKLOADS, osrewind
from osrewind.ingest.store import Store
from osrewind.queries import keyframes
from osrewind.queries.runs import resolve_run

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    url = os.environ.get("OSREWIND_TEST_CLICKHOUSE_URL", "")
    if url:
        yield url
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(HERE / "chdb_http.py"), str(tmp_path_factory.mktemp("server")),
                             str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_generated_run_through_a_server_answers_as_a_rewind(server):
    run_id = random_run(server, 11, n=400, name="server-gen")
    with Store(server) as store:
        assert not store.embedded
        keyframes.build(store, resolve_run(store, run_id), every=97)
    assert agree_everywhere(server, run_id, samples=4, seed=11) > 3
    out = osrewind("sql", "runs_list", "-p", "limit=1000", "--json", db=server)
    assert out.returncode == 0, out.stderr
    assert run_id in {r["run_id"] for r in json.loads(out.stdout)}


@pytest.mark.kernel
def test_record_and_read_back_through_a_server(kernel, tmp_path, server):
    assert osrewind("store", "init", db=server).returncode == 0
    rec = osrewind("record", "--quiet", "--json", "--", sys.executable, str(WORKLOADS / "fdsteps.py"), str(tmp_path),
                   db=server, timeout=300)
    assert rec.returncode == 3, rec.stderr
    run = json.loads(rec.stdout.strip().splitlines()[-1])
    assert run["lost"] == 0 and run["events"] > 100
    runs = json.loads(osrewind("runs", "--json", db=server).stdout)
    assert [r["status"] for r in runs if r["run_id"] == run["run_id"]] == ["complete"]
    state = osrewind("state", run["run_id"], "--at", "-1ms", "--json", db=server)
    assert state.returncode == 0, state.stderr
    for args in (["events", run["run_id"], "--json"], ["tree", run["run_id"]], ["top", run["run_id"]]):
        out = osrewind(*args, db=server)
        assert out.returncode == 0 and out.stdout.strip(), (args, out.stderr)
    files = osrewind("sql", "--run", run["run_id"], "--at", "-1ms", "--json",
                     "SELECT pid, fd, path FROM process_open_files", db=server)
    assert files.returncode == 0, files.stderr
    rewound = {(p["pid"], f["fd"], f["target"]) for p in json.loads(state.stdout)["processes"] for f in p["fds"]
               if "socket" not in f}
    assert {(r["pid"], r["fd"], r["path"]) for r in json.loads(files.stdout)} == rewound
    assert osrewind("reindex", run["run_id"], db=server).returncode == 0
    assert osrewind("state", run["run_id"], "--at", "-1ms", "--json", db=server).stdout == state.stdout
