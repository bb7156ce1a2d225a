"""The store laid out over a ClickHouse cluster (``store init --cluster``), and runs of several hosts.

No cluster (or ClickHouse Keeper) can run here, so: the replicated variant's DDL text is checked, and
the non-replicated variant's local tables are applied to the embedded engine, where they must come
out exactly as the single-node tables (the two layouts are one declaration)."""

from __future__ import annotations

import json
import re

import pytest
from synthetic import random_run

from conftest import osrewind
from osrewind.ingest import cluster
from osrewind.ingest.schema import ADDED_COLUMNS, TABLES
from osrewind.ingest.store import Store
from osrewind.queries import keyframes


def all_tables() -> dict[str, str]:
    return {**TABLES, **keyframes.derived_ddl()}


def test_replicated_ddl_shards_every_run_to_one_node():
    statements = cluster.cluster_ddl(all_tables(), "osr", "osrewind", replicated=True, added=ADDED_COLUMNS)
    local = {re.search(r"osrewind\.(\w+)_local ON CLUSTER osr \(", s).group(1): s
             for s in statements if s.startswith("CREATE") and "_local ON CLUSTER" in s}
    dist = {re.search(r"osrewind\.(\w+) ON CLUSTER osr AS", s).group(1): s for s in statements if "Distributed(" in s}
    assert set(local) == set(dist) == set(all_tables())
    for name, s in local.items():
        assert f"'/clickhouse/tables/{{shard}}/osrewind/{name}_local', '{{replica}}'" in s
        assert re.search(r"ENGINE = Replicated(Replacing)?MergeTree\(", s), s
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/osrewind/runs_local', '{replica}', updated_ns)" \
        in local["runs"]
    for name, s in dist.items():
        key = "cityHash64(key)" if name == "meta" else "cityHash64(run_id)"
        assert s.endswith(f"ENGINE = Distributed(osr, osrewind, {name}_local, {key})"), s
    # the Distributed tables come after every local table and column they copy
    first_dist = min(i for i, s in enumerate(statements) if "Distributed(" in s)
    assert all("Distributed(" in s for s in statements[first_dist:])
    assert sum(s.startswith("ALTER") for s in statements) == len(ADDED_COLUMNS)


def test_non_replicated_local_tables_apply_and_match_the_single_node_tables(tmp_path):
    statements = cluster.cluster_ddl(all_tables(), "osr", "osrewind", replicated=False, added=ADDED_COLUMNS)
    with Store(str(tmp_path / "single")) as store:
        store.ensure_schema()
        keyframes.ensure_table(store)
        store.client.command("CREATE DATABASE osrewind")
        for s in statements:
            if "Distributed(" not in s:   # one engine, no cluster: the local tables only
                store.client.command(cluster.without_cluster(s, "osr"))
        rows = store.query("SELECT database, table, name, type, position FROM system.columns "
                           "WHERE database IN ('default', 'osrewind') ORDER BY table, position")
        engines = dict(store.query("SELECT name, engine FROM system.tables WHERE database = 'osrewind'"))
    single = {(t, n, ty, p) for d, t, n, ty, p in rows if d == "default" and t in all_tables()}
    laid_out = {(t.removesuffix("_local"), n, ty, p) for d, t, n, ty, p in rows if d == "osrewind"}
    assert laid_out == single
    assert engines["runs_local"] == "ReplacingMergeTree" and engines["events_local"] == "MergeTree"


def test_store_init_on_the_command_line(tmp_path):
    out = osrewind("store", "init", "--cluster", "osr", "--print")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("ENGINE = Distributed(osr, osrewind,") == len(all_tables())
    for bad in (["--cluster", "a b", "--print"], ["--cluster", "osr", "--database", "x;y", "--print"]):
        out = osrewind("store", "init", *bad)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    out = osrewind("store", "init", "--cluster", "osr", db=tmp_path / "embedded")
    assert out.returncode == 2 and "http" in out.stderr, out.stderr
    out = osrewind("store", "init", db=tmp_path / "new")
    assert out.returncode == 0, out.stderr
    with Store(str(tmp_path / "new")) as store:
        assert set(all_tables()) <= store.table_names()


@pytest.mark.parametrize("host, expect", [("", {"gen1", "gen2"}), ("laptop", {"gen2"}), ("nohost", set())])
def test_runs_of_one_host(tmp_path, host, expect):
    db = tmp_path / "db"
    for seed in (1, 2):
        random_run(str(db), seed, n=100, name=f"gen{seed}")
    with Store(str(db)) as store:   # gen2 was recorded on another host
        store.client.command("INSERT INTO runs SELECT * REPLACE ('laptop' AS host, updated_ns + 1 AS updated_ns) "
                             "FROM runs FINAL WHERE name = 'gen2'")
    out = osrewind("runs", "--json", *(["--host", host] if host else []), db=db)
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)
    assert {r["name"] for r in runs} == expect
    assert all(r["host"] == host for r in runs if host)


def test_deletes_go_to_the_local_tables_of_a_cluster(tmp_path):
    """A Distributed table takes no DELETE: on a cluster a run's rows are deleted on every node."""
    with Store(str(tmp_path / "db")) as store:
        assert store.delete_from("events") == "DELETE FROM events"
        store.cluster = "osr"   # what opening a server whose events table is Distributed(osr, ...) finds
        assert store.delete_from("keyframes") == "DELETE FROM keyframes_local ON CLUSTER osr"
        store.cluster = None
