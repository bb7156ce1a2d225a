"""Kernel state in SQL at any instant: osquery's tables over a run's intervals.

The indexer writes two interval tables per run (``queries/engine/intervals.py`` says what a row is):
``process_intervals`` and ``fd_intervals``. Over them ``osrewind sql`` offers osquery's tables,
``processes``, ``process_open_files``, ``process_open_sockets`` and ``listening_ports``, with
osquery's column names where the concept is the same, plus osrewind's own (``run_id``, ``start_ns``,
``valid_from_ns``, ``valid_to_ns``). With an instant (``sql --at``) they hold the rows true then in
that run; without one, every row of every run's history.

One declaration (``TABLES``, ``VIEWS``) drives the tables' DDL, the views' SQL and ``sql --schema``.
The views are put in front of the user's query as common table expressions (``with_views``), so the
same text runs on the embedded engine and on a server, and a view's name hides a store table of the
same name in that query only (``processes``: the index's process history, still there as
``process_history``).
"""

from __future__ import annotations

from dataclasses import dataclass

# ------------------------------------------------------------------ the interval tables


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class Table:
    name: str
    doc: str
    columns: tuple[Column, ...]
    order_by: str

    def ddl(self) -> str:
        cols = ",\n    ".join(f"{c.name} {c.type}" for c in self.columns)
        return (f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {cols}\n) "
                f"ENGINE = MergeTree ORDER BY ({self.order_by})")


_RANGE = (
    Column("valid_from_ns", "Int64", "the row holds from this instant (CLOCK_MONOTONIC ns, included)"),
    Column("valid_to_ns", "Int64", "until this one (excluded); 9223372036854775807: it held when the run ended"),
)

TABLES = (
    Table("process_intervals", "one row per stretch of a process's life in which nothing shown changed", (
        Column("run_id", "UUID", "the run"),
        Column("pid", "UInt32", "process id"),
        Column("start_ns", "Int64", "when the process started (CLOCK_MONOTONIC ns): pid and start_ns name one process"),
        *_RANGE,
        Column("comm", "String", "its name (the kernel's comm)"),
        Column("exe", "String", "its executable"),
        Column("argv", "Array(String)", "its command line"),
        Column("cwd", "String", "its working directory"),
        Column("ppid", "UInt32", "its parent's pid"),
        Column("threads", "UInt32", "its threads"),
        Column("uid", "Int64", "its real user id (-1: not known)"),
        Column("gen", "UInt64 DEFAULT 0", "the index build that wrote the row"),
    ), "run_id, valid_from_ns, pid"),
    Table("fd_intervals", "one row per stretch of an open fd's life in which nothing shown changed", (
        Column("run_id", "UUID", "the run"),
        Column("pid", "UInt32", "the process holding it"),
        Column("start_ns", "Int64", "that process's start"),
        Column("fd", "Int32", "the descriptor"),
        *_RANGE,
        Column("kind", "LowCardinality(String)", "file, pipe, socket, anon or other"),
        Column("path", "String", "what it refers to: a path, pipe:[...], anon_inode:[...]; a unix socket's path"),
        Column("inode", "UInt64", "the kernel's inode of it (0: not known)"),
        Column("family", "UInt16", "a socket's address family: 1 unix, 2 IPv4, 10 IPv6"),
        Column("protocol", "UInt16", "a socket's protocol: 6 TCP, 17 UDP"),
        Column("local_address", "String", "a socket's local address (unix: unix:PATH, unix:@NAME, unix:)"),
        Column("local_port", "UInt32", "its local port"),
        Column("remote_address", "String", "its peer's address"),
        Column("remote_port", "UInt32", "its peer's port"),
        Column("state", "LowCardinality(String)", "its TCP state (ESTABLISHED, LISTEN, ...)"),
        Column("listening", "UInt8", "1: a listening socket"),
        Column("gen", "UInt64 DEFAULT 0", "the index build that wrote the row"),
    ), "run_id, valid_from_ns, pid, fd"),
)
TABLE_NAMES = tuple(t.name for t in TABLES)

# ------------------------------------------------------------------ osquery's tables


@dataclass(frozen=True)
class ViewColumn:
    name: str
    expr: str
    doc: str


@dataclass(frozen=True)
class View:
    name: str
    doc: str
    source: str           # the interval table
    where: str            # which of its rows
    columns: tuple[ViewColumn, ...]


_OWN = (
    ViewColumn("run_id", "i.run_id", "the run (osrewind)"),
    ViewColumn("start_ns", "start_ns", "the process's start, CLOCK_MONOTONIC ns (osrewind)"),
    ViewColumn("valid_from_ns", "valid_from_ns", "the row holds from this instant (osrewind)"),
    ViewColumn("valid_to_ns", "valid_to_ns", "until this one, excluded (osrewind)"),
)

# columns several of osquery's tables share
_HOLDER = ViewColumn("pid", "pid", "the process holding it")
_FD = ViewColumn("fd", "fd", "the descriptor")
_SOCKET = ViewColumn("socket", "inode", "the socket's inode (0: not known)")
_UNIX_PATH = ViewColumn("path", "path", "a unix socket's path")

VIEWS = (
    View("processes", "running processes (osquery: processes)", "process_intervals", "1", (
        ViewColumn("pid", "pid", "process id"),
        ViewColumn("name", "comm", "the process's name"),
        ViewColumn("path", "exe", "its executable"),
        ViewColumn("cmdline", "arrayStringConcat(argv, ' ')", "its command line, arguments joined by spaces"),
        ViewColumn("cwd", "cwd", "its working directory"),
        ViewColumn("parent", "ppid", "its parent's pid"),
        ViewColumn("uid", "uid", "its real user id (-1: not known)"),
        ViewColumn("start_time", "intDiv(start_ns + wall_offset_ns, 1000000000)", "when it started, seconds since the epoch"),
        ViewColumn("threads", "threads", "its threads"),
        ViewColumn("argv", "argv", "its command line as a list (osrewind)"),
        *_OWN,
    )),
    View("process_open_files", "open file descriptors that are not sockets (osquery: process_open_files)",
         "fd_intervals", "kind != 'socket'", (
             _HOLDER, _FD,
             ViewColumn("path", "path", "what it refers to: a path, pipe:[...], anon_inode:[...]"),
             ViewColumn("kind", "kind", "file, pipe, anon or other (osrewind)"),
             ViewColumn("inode", "inode", "the kernel's inode (0: not known) (osrewind)"),
             *_OWN,
         )),
    View("process_open_sockets", "open sockets (osquery: process_open_sockets)", "fd_intervals", "kind = 'socket'", (
        _HOLDER, _FD, _SOCKET,
        ViewColumn("family", "family", "address family: 1 unix, 2 IPv4, 10 IPv6"),
        ViewColumn("protocol", "protocol", "6 TCP, 17 UDP (0: other)"),
        ViewColumn("local_address", "local_address", "local address"),
        ViewColumn("local_port", "local_port", "local port"),
        ViewColumn("remote_address", "remote_address", "peer's address"),
        ViewColumn("remote_port", "remote_port", "peer's port"),
        ViewColumn("state", "state", "TCP state"),
        _UNIX_PATH,
        *_OWN,
    )),
    View("listening_ports", "sockets that listen (TCP) or are bound to a port (UDP) (osquery: listening_ports)",
         "fd_intervals", "kind = 'socket' AND (listening = 1 OR (protocol = 17 AND local_port > 0))", (
             _HOLDER,
             ViewColumn("port", "local_port", "the port"),
             ViewColumn("protocol", "protocol", "6 TCP, 17 UDP"),
             ViewColumn("family", "family", "2 IPv4, 10 IPv6"),
             ViewColumn("address", "local_address", "the address it listens on"),
             _FD, _SOCKET, _UNIX_PATH,
             *_OWN,
         )),
)
VIEW_NAMES = tuple(v.name for v in VIEWS)


def _view_sql(v: View, db: str, at_ns: int | None, run_id: str | None) -> str:
    """One view as a subquery: the current index build's rows of its interval table, of one run at
    an instant or of every run."""
    cols = ", ".join(f"{c.expr} AS {c.name}" for c in v.columns)
    where = [f"({v.where})", "i.gen = b.cur"]
    if run_id is not None:
        where.append(f"i.run_id = toUUID('{run_id}')")
    if at_ns is not None:
        where.append(f"i.valid_from_ns <= {int(at_ns)} AND {int(at_ns)} < i.valid_to_ns")
    return (f"SELECT {cols} FROM {db}.{v.source} AS i "
            f"LEFT JOIN (SELECT run_id, max(gen) AS cur FROM {db}.index_builds GROUP BY run_id) AS b "
            f"ON i.run_id = b.run_id "
            f"LEFT JOIN (SELECT run_id, argMax(wall_offset_ns, updated_ns) AS wall_offset_ns FROM {db}.runs "
            f"GROUP BY run_id) AS w ON i.run_id = w.run_id "
            f"WHERE {' AND '.join(where)}")


def with_views(sql: str, db: str, at_ns: int | None = None, run_id: str | None = None) -> str:
    """``sql`` (a reading statement as the engine printed it: ``formatQuerySingleLine``) with the
    views in front of it as common table expressions; ``process_history`` names the store's own
    ``processes`` table there. Statements that are not a SELECT or WITH are returned as they are."""
    import uuid

    if run_id is not None:
        run_id = str(uuid.UUID(str(run_id)))   # it goes into the text
    head = sql.lstrip()
    word = head.split(None, 1)[0].upper() if head else ""
    if word not in ("SELECT", "WITH"):
        return sql
    ctes = [f"process_history AS (SELECT * FROM {db}.processes)"]
    ctes += [f"{v.name} AS ({_view_sql(v, db, at_ns, run_id)})" for v in VIEWS]
    prefix = "WITH " + ", ".join(ctes)
    if word == "WITH":
        return prefix + ", " + head[4:].lstrip()
    return prefix + " " + head


def schema_lines(store_columns: dict[str, list[tuple[str, str]]], docs: dict[tuple[str, str], str]
                 ) -> list[tuple[str, str, str, str]]:
    """(table, column, type, meaning) for ``sql --schema``: osquery's views first, then the interval
    tables, then the store's other tables as the store has them (``store_columns``), each column's
    meaning from ``docs`` (``ingest/schema.COLUMN_DOCS`` and the index's ``keyframes.COLUMN_DOCS``)."""
    out: list[tuple[str, str, str, str]] = []
    for v in VIEWS:
        types = {c.name: c.type.split(" DEFAULT")[0] for t in TABLES if t.name == v.source for c in t.columns}
        for c in v.columns:
            out.append((v.name, c.name, types.get(c.expr.removeprefix("i."), _EXPR_TYPES.get(c.name, "")), c.doc))
    for t in TABLES:
        for c in t.columns:
            out.append((t.name, c.name, c.type.split(" DEFAULT")[0], c.doc))
    for table in sorted(store_columns):
        if table in TABLE_NAMES:
            continue
        name = "process_history" if table == "processes" else table
        for col, typ in store_columns[table]:
            out.append((name, col, typ, docs.get((table, col), "")))
    return out


_EXPR_TYPES = {"cmdline": "String", "start_time": "Int64"}


def check_indexed(store, run_id: str) -> None:
    """Refuse, in one line, a run whose index has no intervals (indexed before osrewind kept them)."""
    from osrewind.errors import UsageError

    rows = []
    if {"process_intervals", "index_builds"} <= set(store.table_names()):
        rows = store.query("SELECT count() FROM process_intervals WHERE run_id = {r:UUID} AND gen = "
                           "(SELECT max(gen) FROM index_builds WHERE run_id = {r:UUID})", {"r": run_id})
    if not rows or not rows[0][0]:
        raise UsageError(f"run {run_id[:8]} has no intervals to answer at an instant (indexed by an older "
                         f"osrewind, or not indexed): run 'osrewind reindex {run_id[:8]}' first")


def store_columns(store) -> dict[str, list[tuple[str, str]]]:
    """The store's tables and their columns (name, type), as the engine has them."""
    out: dict[str, list[tuple[str, str]]] = {}
    for table, name, typ in store.query("SELECT table, name, type FROM system.columns "
                                        "WHERE database = currentDatabase() ORDER BY table, position"):
        out.setdefault(table, []).append((name, typ))
    return out
