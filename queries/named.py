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
    """Rows; String columns as lossless text (``Store.query``)."""
    return store.query(sql(name), params)


def run_arrow(store: Any, name: str, **params: Any):
    """An Arrow table whose String columns are ``binary``: recorded text is bytes and need not be
    UTF-8. Read its columns with :func:`columns` or :func:`rows`."""
    return store.query_arrow(sql(name), params, binary=True)


def column(col: Any) -> list:
    """One Arrow column as a Python list; binary (String) values as lossless text: ``str``, with a
    byte that is not UTF-8 as a lone surrogate (surrogateescape, ``osrewind.text``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t):  # a LowCardinality column: each distinct value converted once
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        values = column(col.dictionary)
        return [values[i] if i is not None else None for i in col.indices.to_pylist()]
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and len(col) and \
            col.null_count == 0 and pc.sum(pc.list_value_length(col)).as_py() == 0:
        return [[] for _ in range(len(col))]   # argv of facts other than exec: all empty
    depth = 0
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t, depth = t.value_type, depth + 1
    if not (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        return col.to_pylist()
    target = pa.string()
    for _ in range(depth):
        target = pa.list_(target)
    try:  # the common case, all UTF-8: checked and converted by Arrow, no Python per value
        return col.cast(target).to_pylist()
    except pa.ArrowInvalid:
        return [_text(v) for v in col.to_pylist()]


def _text(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode("utf-8", "surrogateescape")
    if isinstance(v, list):
        return [_text(x) for x in v]
    return v


def columns(table: Any) -> dict[str, list]:
    """Every column of an Arrow answer as a list (see :func:`column`)."""
    return {name: column(table.column(name)) for name in table.column_names}


def rows(table: Any) -> list[dict]:
    """An Arrow answer as one dict per row (see :func:`column`)."""
    cols = columns(table)
    names = list(cols)
    return [dict(zip(names, values, strict=True)) for values in zip(*cols.values(), strict=True)]
