"""Named SQL: one query per ``queries/sql/<name>.sql`` file, with ``{name:Type}`` parameters.

Values are always passed as parameters to the server/engine, never formatted into the text. The same
SQL runs on the embedded store and on a ClickHouse server.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

SQL_DIR = Path(__file__).with_name("sql")


@cache
def sql(name: str) -> str:
    path = SQL_DIR / f"{name}.sql"
    return path.read_text()


def names() -> list[str]:
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))


def header(name: str) -> str:
    """The leading comment of a query: what it answers and its parameters."""
    lines = []
    for line in sql(name).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:].strip())
    return " ".join(lines)


def run(store: Any, name: str, **params: Any) -> list[tuple]:
    return store.query(sql(name), params)


def run_arrow(store: Any, name: str, binary: bool = False, **params: Any):
    return store.query_arrow(sql(name), params, binary=binary)
