"""The one place that makes recorded text safe to show on a terminal.

Recorded strings (argv, paths, comm, run names, cwd, socket paths) are whatever a program passed the
kernel: bytes, not text. osrewind keeps them losslessly as ``str`` with Python's ``surrogateescape``
convention (PEP 383: a byte that is not part of valid UTF-8, say 0xff, is the lone surrogate U+DCFF;
``os.fsencode`` gives the bytes back). Shown to a person they pass through :func:`safe`, which

- writes every such byte as a visible ``\\xff``;
- writes control characters (C0, DEL, C1) as escapes (``\\n``, ``\\t``, ``\\x1b``, ``\\x07``,
  ``\\u009b``), so a recorded argv like ``$'\\e]0;PWNED\\a\\e[2J'`` cannot retitle or clear the
  reader's terminal, and a newline in a name cannot break a table;
- escapes the Unicode bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069), which can
  make a line read differently from what it holds.

:func:`safe` with ``limit`` cuts the *escaped* text at a whole escape, so a truncated field can never
end in half an escape sequence. JSON output does not go through here: ``json.dumps`` keeps every
character exactly (lone surrogates as ``\\udcff``; see README "Bytes, not text").
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _escape(ch: str) -> str | None:
    """The escape for one character, or None when it is safe as it is."""
    o = ord(ch)
    if 0x20 <= o < 0x7F:
        return None
    if ch in _NAMED:
        return _NAMED[ch]
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if 0x80 <= o <= 0x9F or ch in _BIDI:
        return f"\\u{o:04x}"
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if 0xD800 <= o <= 0xDFFF:  # any other lone surrogate
        return f"\\u{o:04x}"
    return None


def safe(text: object, limit: int | None = None) -> str:
    """``text`` with every byte and character that could act on a terminal written as a visible
    escape; with ``limit``, at most that many characters, cut between escapes."""
    s = "" if text is None else (os.fsdecode(text) if isinstance(text, bytes) else str(text))
    if limit is None and s.isprintable() and s.isascii():
        return s
    out: list[str] = []
    used = 0
    for ch in s:
        piece = _escape(ch) or ch
        if limit is not None and used + len(piece) > limit:
            break
        out.append(piece)
        used += len(piece)
    return "".join(out)


def safe_argv(argv: Iterable[str], limit: int | None = None) -> str:
    """A command line as a shell would read it (``shlex.join``), made safe to show."""
    return safe(shlex.join(list(argv)), limit)


def from_bytes(raw: bytes) -> str:
    """Recorded bytes as osrewind keeps them in Python: lossless ``str`` (surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    """The original bytes of a string kept by :func:`from_bytes` (or typed by a user)."""
    return text.encode("utf-8", "surrogateescape")
