"""Where recordings live: one clickhouse-connect client for two kinds of store.

- Embedded (default): chDB in this process, on a directory. chDB lets one process at a time open a
  directory, so osrewind takes an exclusive lock file there first and, when another osrewind process
  holds it, says which one (pid, what it is doing) instead of failing deep inside the engine.
- Server: ``--db http://user:password@host:8123/database`` (or https) reaches a ClickHouse server or
  cluster through the same client and the same SQL; many processes may use it at once.

The store location is ``--db``, else ``$OSREWIND_DB``, else ``$XDG_DATA_HOME/osrewind/store``
(``~/.local/share/osrewind/store``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

from osrewind.errors import StoreError
from osrewind.ingest.schema import ADDED_COLUMNS, KIND_TYPE, SCHEMA_VERSION, TABLES

# the driver logs its own copy of every error it raises; osrewind reports them once, in one line
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
logging.getLogger("clickhouse_connect").propagate = False

LOCK_NAME = ".osrewind.lock"
MARKER_NAME = "osrewind-store.json"  # written with the tables: a store that has it must have them


def default_location() -> str:
    env = os.environ.get("OSREWIND_DB")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "osrewind", "store")


def is_server_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


class _Serialized:
    """The client, one call at a time: a recording's writer thread inserts while other threads (a
    keyframe indexer, the live TUI) read, and the embedded engine takes one call at a time."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        lock = self._lock

        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attr(*args, **kwargs)

        return call


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    errno_msg = re.search(r"\[Errno \d+\] [^'\")]+", line)
    if errno_msg:  # a network error buried in the HTTP driver's message
        return errno_msg.group(0)
    return line[:300]


class Store:
    """An open store. Use as a context manager; closing releases the embedded store's lock."""

    def __init__(self, location: str | None = None, *, purpose: str = "reading") -> None:
        self.location = location or default_location()
        self.purpose = purpose
        self._lock_fd: int | None = None
        self.embedded = not is_server_url(self.location)
        try:
            if self.embedded:
                self._open_embedded()
            else:
                self._open_server()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _open_embedded(self) -> None:
        path = Path(self.location)
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} exists and is not a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store directory {path}: {exc.strerror}") from exc
        self._lock(path / LOCK_NAME)
        try:
            import clickhouse_connect

            self.client = _Serialized(clickhouse_connect.get_client(interface="chdb", path=str(path)))
            self.client.command("SELECT 1")
        except Exception as exc:
            raise StoreError(f"cannot open store {path}: {_one_line(exc)}") from exc

    def _open_server(self) -> None:
        try:
            import clickhouse_connect

            self.client = _Serialized(clickhouse_connect.get_client(dsn=self.location))
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {self._redacted()}: {_one_line(exc)}") from exc

    def _redacted(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.location)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        if parts.username:
            host = f"{parts.username}@{host}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def _lock(self, lock_path: Path) -> None:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = lock_holder(lock_path)
            os.close(fd)
            what = f"osrewind pid {holder.get('pid', '?')} ({holder.get('purpose', 'in use')})" if holder else "another process"
            raise StoreError(
                f"store {lock_path.parent} is in use by {what}; wait for it to finish or use --db for another store"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "purpose": self.purpose, "since": time.time()}).encode())
        self._lock_fd = fd

    def set_purpose(self, purpose: str) -> None:
        """Update what the lock file tells other osrewind processes (e.g. the run being recorded)."""
        self.purpose = purpose
        if self._lock_fd is not None:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, json.dumps({"pid": os.getpid(), "purpose": purpose,
                                                 "since": time.time()}).encode(), 0)

    # ------------------------------------------------------------------ use

    def ensure_schema(self) -> None:
        self.has_schema()  # refuses a damaged store rather than creating empty tables over it
        try:
            for ddl in TABLES.values():
                self.client.command(ddl)
            self.client.command(
                "INSERT INTO meta (key, value) VALUES ('schema_version', {v:String})",
                parameters={"v": str(SCHEMA_VERSION)},
            )
            self._upgrade_kinds()
            for table, column, ctype in ADDED_COLUMNS:
                self.client.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {ctype}")
            if self.embedded:
                marker = Path(self.location) / MARKER_NAME
                if not marker.exists():
                    marker.write_text(json.dumps({"schema_version": SCHEMA_VERSION}) + "\n")
        except Exception as exc:
            raise StoreError(f"cannot create tables in store {self.location}: {_one_line(exc)}") from exc

    def _upgrade_kinds(self) -> None:
        """A store made by an older osrewind knows fewer event kinds: extending an Enum is a
        metadata-only change in ClickHouse, existing rows are untouched."""
        rows = self.client.query("SELECT type FROM system.columns WHERE database = currentDatabase() "
                                 "AND table = 'events' AND name = 'kind'").result_rows
        if rows and rows[0][0].replace(" ", "") != KIND_TYPE.replace(" ", ""):
            self.client.command(f"ALTER TABLE events MODIFY COLUMN kind {KIND_TYPE}")

    def has_schema(self) -> bool:
        try:
            rows = self.client.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                                     "AND name = 'runs'").result_rows
        except Exception as exc:
            raise StoreError(f"cannot read store {self.location}: {_one_line(exc)}") from exc
        present = bool(rows and rows[0][0])
        if not present and self.embedded and (Path(self.location) / MARKER_NAME).exists():
            raise StoreError(f"store {self.location} is damaged: its tables cannot be loaded "
                             "(files left untouched; move it aside or restore a backup)")
        return present

    def insert_arrow(self, table: str, data: Any) -> None:
        try:
            self.client.insert_arrow(table, data)
        except Exception as exc:
            raise StoreError(f"writing {table} to store {self.location} failed: {_one_line(exc)}") from exc

    def insert_rows(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        """A few rows, sent as Arrow too (the driver's row path would import pandas: ~0.8 s)."""
        import uuid

        import pyarrow as pa

        data = {}
        for i, col in enumerate(columns):
            values = [str(r[i]) if isinstance(r[i], uuid.UUID) else r[i] for r in rows]
            data[col] = pa.array(values)
        self.insert_arrow(table, pa.table(data))

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        try:
            return self.client.query(sql, parameters=params or {}).result_rows
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_bytes(self, sql: str, params: dict[str, Any], binary_columns: tuple[str, ...]) -> list[tuple]:
        """Rows, with the named String columns as bytes (blobs that are not UTF-8)."""
        try:
            return self.client.query(sql, parameters=params,
                                     column_formats={c: "bytes" for c in binary_columns}).result_rows
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_readonly(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """A user's query: refused if it would write (readonly=1). Parameter values arrive as text
        and are parsed by the engine into the {name:Type} each placeholder declares."""
        try:
            res = self.client.query(sql, parameters=params, settings={"readonly": 1})
            return list(res.column_names), list(res.result_rows)
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None, binary: bool = False):
        """An Arrow table; ``binary`` keeps String columns as bytes (for blobs that are not UTF-8)."""
        try:
            return self.client.query_arrow(sql, parameters=params or {}, use_strings=False if binary else None)
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
            self.client = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lock_holder(lock_path: Path) -> dict:
    try:
        return json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
