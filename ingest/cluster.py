"""The store's tables laid out over a ClickHouse cluster (``osrewind store init --cluster NAME``).

Each table becomes two: ``NAME_local`` on every node, where the rows are (a ``Replicated*`` engine
keeping a shard's replicas in step through ClickHouse Keeper, or the plain engine for a cluster
without replicas), and ``NAME``, a ``Distributed`` table over them that recording hosts insert into
and readers query. Rows are sharded by run id: every fact of a run lands on one shard, so a rewind,
an index build and a run's history are answered by one node. docs/cluster.md gives the reasoning.

The DDL is made from the single-node statements (``ingest/schema.py`` and the index's tables), so the
two layouts never drift apart.
"""

from __future__ import annotations

import re

from osrewind.ingest.schema import on_server

_CREATE = re.compile(r"^\s*CREATE TABLE IF NOT EXISTS\s+(\w+)\s*\(", re.S)
_ENGINE = re.compile(r"\)\s*ENGINE\s*=\s*(\w+)(?:\(([^)]*)\))?(.*)$", re.S)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ClusterError(ValueError):
    pass


def _ident(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ClusterError(f"bad {kind} name {name!r}: letters, digits and _ only")
    return name


def table_ddl(ddl: str, cluster: str, database: str, replicated: bool = True) -> list[str]:
    """The two statements of one single-node ``CREATE TABLE IF NOT EXISTS name (...) ENGINE = ...``."""
    cluster, database = _ident("cluster", cluster), _ident("database", database)
    m = _CREATE.match(ddl)
    if not m:
        raise ClusterError(f"not a CREATE TABLE statement: {ddl.strip()[:60]}")
    name = m.group(1)
    body_start = m.end()
    e = _ENGINE.search(ddl, body_start)
    if not e:
        raise ClusterError(f"no ENGINE in the statement of {name}")
    columns = ddl[body_start:e.start()]
    engine, args, rest = e.group(1), (e.group(2) or "").strip(), e.group(3).strip()
    if replicated:
        path = f"'/clickhouse/tables/{{shard}}/{database}/{name}_local'"
        engine_sql = f"Replicated{engine}({path}, '{{replica}}'{', ' + args if args else ''})"
    else:
        engine_sql = f"{engine}({args})" if args else engine
    key = "cityHash64(run_id)" if re.search(r"^\s*run_id\s+UUID", columns, re.M) else "cityHash64(key)" \
        if re.search(r"^\s*key\s+String", columns, re.M) else "rand()"
    local = (f"CREATE TABLE IF NOT EXISTS {database}.{name}_local ON CLUSTER {cluster} ({columns.rstrip()}\n) "
             f"ENGINE = {engine_sql} {rest}").rstrip()
    dist = (f"CREATE TABLE IF NOT EXISTS {database}.{name} ON CLUSTER {cluster} AS {database}.{name}_local "
            f"ENGINE = Distributed({cluster}, {database}, {name}_local, {key})")
    return [local, dist]


def cluster_ddl(tables: dict[str, str], cluster: str, database: str, replicated: bool = True,
                added: list[tuple[str, str, str]] = ()) -> list[str]:
    """Every table's statements, in order: the local tables, the columns added since their first
    release (``added``: (table, column, type), as ``ingest/schema.ADDED_COLUMNS``), then the
    Distributed tables (made after, so they have every column). A cluster's nodes are servers: the
    statements are as a server takes them (``schema.on_server``)."""
    pairs = [table_ddl(on_server(ddl), cluster, database, replicated) for ddl in tables.values()]
    alters = [f"ALTER TABLE {database}.{table}_local ON CLUSTER {cluster} ADD COLUMN IF NOT EXISTS {column} "
              f"{on_server(ctype)}" for table, column, ctype in added if table in tables]
    return [p[0] for p in pairs] + alters + [p[1] for p in pairs]


def without_cluster(statement: str, cluster: str) -> str:
    """A local table's statement for one node alone (no ON CLUSTER): what a single engine can apply."""
    return statement.replace(f" ON CLUSTER {cluster} ", " ", 1)
