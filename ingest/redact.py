"""``record --redact PATTERN``: what matches is replaced by ``***`` before anything is stored.

Patterns are Python regular expressions, applied one after the other to each argument of every argv,
every path (socket addresses included: they are stored in the path columns), comm, exe and cwd, and
to the run row's command, cwd and default name. Everything the store holds about a run passes
through here: the recorder's run row, and every Arrow table the writer inserts (events and the /proc
baseline); derived tables (keyframes, history) are built from those, so they never see the original.

Recorded strings are bytes (kept as ``str`` with ``surrogateescape``, or Arrow binary): they are
matched as that same ``str``, so ``\\S`` or ``.`` match a byte that is not UTF-8 too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from osrewind.errors import UsageError

REPLACEMENT = "***"

# Per table, the columns that hold what programs and people typed (argv, paths, names).
COLUMNS = {
    "events": ("comm", "path", "path2", "argv"),
    "snapshot_procs": ("comm", "exe", "argv", "cwd"),
    "snapshot_fds": ("target",),
}


class Redactor:
    """Callable on one string; ``table()`` on an Arrow table about to be inserted."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = []
        for p in patterns:
            try:
                self.patterns.append(re.compile(p))
            except re.error as exc:
                raise UsageError(f"bad --redact pattern {p!r}: {exc}") from None
            if self.patterns[-1].search(""):
                raise UsageError(f"--redact pattern {p!r} matches the empty string (it would put *** everywhere)")

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __call__(self, text: str) -> str:
        for p in self.patterns:
            text = p.sub(REPLACEMENT, text)
        return text

    def _value(self, v: str | bytes | None) -> str | bytes | None:
        if v is None or not self.patterns:
            return v
        if isinstance(v, bytes):
            return self(v.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")
        return self(v)

    def array(self, arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        """The column with every value (every element, for lists) redacted; the same object when
        nothing matched. Each distinct value is matched once."""
        if isinstance(arr, pa.ChunkedArray):
            if arr.num_chunks == 0:
                return arr
            return pa.chunked_array([self.array(c) for c in arr.chunks], type=arr.type)
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            if arr.null_count:
                return pa.array([None if x is None else [self._value(v) for v in x] for x in arr.to_pylist()],
                                type=arr.type)
            flat = arr.flatten()
            values = self.array(flat)
            if values is flat:
                return arr
            offsets = pc.subtract(arr.offsets, arr.offsets[0])
            cls = pa.LargeListArray if pa.types.is_large_list(arr.type) else pa.ListArray
            return cls.from_arrays(offsets, values, type=arr.type)
        if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
                or pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
            return arr
        if len(arr) == 0:
            return arr
        encoded = arr.dictionary_encode()
        distinct = encoded.dictionary.to_pylist()
        changed = [self._value(v) for v in distinct]
        if changed == distinct:
            return arr
        return pa.array(changed, type=arr.type).take(encoded.indices)

    def table(self, name: str, table: pa.Table) -> pa.Table:
        """``table`` (to be inserted into store table ``name``) with its text columns redacted."""
        if not self.patterns:
            return table
        for col in COLUMNS.get(name, ()):
            i = table.schema.get_field_index(col)
            if i >= 0:
                new = self.array(table.column(i))
                if new is not table.column(i):
                    table = table.set_column(i, table.schema.field(i), new)
        return table
