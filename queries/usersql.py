"""A user's own SQL (``osrewind sql``): read-only, checked before the engine sees it.

The engine's ``readonly=1`` refuses INSERT, DDL, table functions and settings changes, but not
``SELECT ... INTO OUTFILE`` (written by the embedded engine in this process, as whoever runs
osrewind) nor everything a future engine may add. So a query must be one statement that starts with
a reading keyword, and no ``INTO`` may appear outside literals and comments; the engine then runs it
with ``readonly=1`` as a second wall.
"""

from __future__ import annotations

import re

from osrewind.errors import UsageError

READING = {"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"}
# a reading statement writes only through INTO OUTFILE (EXPLAIN INSERT INTO ... is refused too)
FORBIDDEN = {"INTO", "OUTFILE"}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_HEREDOC = re.compile(r"\$([A-Za-z0-9_]*)\$")  # $$...$$ and $tag$...$tag$ string literals
# bounds on what one query may take: a user's SELECT must not take the machine down
LIMITS = {"max_result_rows": 1_000_000, "result_overflow_mode": "throw", "max_memory_usage": 4 * 2**30,
          "max_execution_time": 600}


def _tokens(sql: str) -> tuple[list[str], bool]:
    """The words of ``sql`` outside string literals, quoted identifiers and comments, upper-cased,
    and whether a ``;`` separates it from more text (a second statement)."""
    words: list[str] = []
    i, n = 0, len(sql)
    ended = False
    while i < n:
        c = sql[i]
        heredoc = _HEREDOC.match(sql, i) if c == "$" else None
        if heredoc:
            j = sql.find(heredoc.group(0), heredoc.end())
            if j < 0:
                raise UsageError(f"unterminated {heredoc.group(0)} string in the query")
            i = j + len(heredoc.group(0))
            continue
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # '' inside a literal
                        j += 2
                        continue
                    break
                j += 1
            if j >= n:
                raise UsageError(f"unterminated {c} in the query")
            i = j + 1
            continue
        if sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if sql.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise UsageError("unterminated /* comment in the query")
            i = j
            continue
        if c == ";":
            ended = True
            i += 1
            continue
        m = _WORD.match(sql, i)
        if m:
            if ended:
                raise UsageError("one statement at a time: remove what follows ';'")
            words.append(m.group(0).upper())
            i = m.end()
            continue
        if ended and not c.isspace():
            raise UsageError("one statement at a time: remove what follows ';'")
        i += 1
    return words, ended


def check_read_only(sql: str) -> None:
    """Refuse, with one line, anything but a single reading statement."""
    words, _ = _tokens(sql)
    if not words:
        raise UsageError("empty query: give a SELECT or a named query (see 'osrewind sql --list')")
    first = words[0]
    if first not in READING:
        raise UsageError(f"only reading queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN), not {first}")
    bad = [w for w in words if w in FORBIDDEN]
    if bad:
        raise UsageError("INTO OUTFILE is refused: 'osrewind sql' only reads (write results with --json or a "
                         "shell redirect)")


def engine_message(text: str) -> str:
    """The useful part of an engine error about a user's query, on one line."""
    line = " ".join(text.split())
    m = re.search(r"DB::Exception: (.*)", line)
    if m:
        line = m.group(1)
    line = re.sub(r"\s*\(version [^)]*\)\.?", "", line)
    line = re.sub(r"\s*In scope .*", "", line)
    line = re.sub(r"\s*Expected one of: .*?(?=\([A-Z_]+\)|$)", " ", line)
    line = re.sub(r"\s*\(([A-Z_]+)\)\.?\s*$", "", line).strip()
    line = re.sub(r"^Code: \d+\. ", "", line)
    return line[:240]


def run(store, sql: str, params: dict[str, str], views: tuple[int | None, str | None] | None = None
        ) -> tuple[list[str], list[tuple]]:
    """Check ``sql``, then run it with ``readonly=1``. The engine's complaints about the query itself
    (syntax, unknown column or parameter, bad value) are the user's input: one short line, exit 2;
    only a store that cannot answer is a store error.

    ``views`` (instant or None, run id or None): osquery's tables (``queries/osquery.py``) are put in
    front of the query, at that instant of that run, or over every run's whole history."""
    from osrewind.errors import StoreError

    if any(0xD800 <= ord(c) <= 0xDFFF for c in sql):
        raise UsageError("the query text is not UTF-8: pass such bytes as a parameter (-p NAME=VALUE)")
    check_read_only(sql)
    # the engine's own parser has the last word: the query is checked again as the engine reads
    # it (literals in one standard quoting), and that text is what runs
    sql = _engine_text(store, sql)
    check_read_only(sql)
    if views is not None:
        from osrewind.queries import osquery

        sql = osquery.with_views(sql, _database(store), *views)
    settings = dict(LIMITS)
    if not getattr(store, "read_only_view", False):  # a read-only view is readonly already
        settings["readonly"] = 1
    try:
        return store.query_rows(sql, params, settings=settings)
    except UnicodeDecodeError:  # a result column named by bytes that are not UTF-8
        raise UsageError("a result column's name is not UTF-8: name it with AS") from None
    except Exception as exc:  # noqa: BLE001 - sorted into the user's fault or the store's below
        text = str(exc)
        if "TOO_MANY_ROWS_OR_BYTES" in text or "MEMORY_LIMIT_EXCEEDED" in text or "TIMEOUT_EXCEEDED" in text:
            raise UsageError(f"the query asks too much ({engine_message(text)}): add a LIMIT or narrow it") from None
        if "DB::Exception" in text or type(exc).__name__ in ("ProgrammingError", "DataError", "KeyError"):
            raise UsageError(f"in the query: {engine_message(text) or type(exc).__name__}") from None
        raise StoreError(f"query failed: {' '.join(text.split())[:240]}") from None


def _engine_text(store, sql: str) -> str:
    """``sql`` as the engine parses it, printed back on one line (formatQuerySingleLine)."""
    from osrewind.errors import StoreError

    try:
        rows = store.query_rows("SELECT formatQuerySingleLine({q:String})", {"q": sql})[1]
    except Exception as exc:  # noqa: BLE001 - a query the parser refuses is the user's
        text = str(exc)
        if "DB::Exception" in text:
            raise UsageError(f"in the query: {engine_message(text)}") from None
        raise StoreError(f"query failed: {' '.join(text.split())[:240]}") from None
    return rows[0][0]


def _database(store) -> str:
    """The store's database, as SQL names it (the views read the interval tables there)."""
    name = store.query("SELECT currentDatabase()")[0][0]
    return "`" + name.replace("`", "``") + "`"
