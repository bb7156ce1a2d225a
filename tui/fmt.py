"""Small formatting helpers of the TUI's widgets (times and durations: ``osrewind.queries.timespec``).

Recorded text (argv, comm, exe, cwd, paths, fd targets, run names) reaches the screen only through
:func:`text` (a rich ``Text``: never read as markup, so ``[bold]`` in an argv shows as typed) or
:func:`safe` (``osrewind.text.safe``: control characters, bidi overrides and non-UTF-8 bytes as
visible escapes), so a recorded program cannot act on the terminal of whoever reads its recording."""

from __future__ import annotations

import zlib

from rich.text import Text

from osrewind.text import safe

# readable on dark and light backgrounds alike
PALETTE = ["#4e9a06", "#3465a4", "#c4a000", "#75507b", "#06989a", "#ce5c00", "#a40000", "#5c8a2e",
           "#204a87", "#8f5902", "#5c3566", "#2e8b8b"]


def colour(key: object) -> str:
    """A stable colour per process (or anything hashable)."""
    return PALETTE[zlib.crc32(repr(key).encode()) % len(PALETTE)]


def short_argv(argv: list[str], exe: str = "", comm: str = "", limit: int = 60) -> str:
    """A command line, made safe, cut to ``limit`` characters (between escapes) with an ellipsis."""
    raw = " ".join(argv) if argv else (exe or comm)
    shown = safe(raw)
    return shown if len(shown) <= limit else safe(raw, limit - 1) + "…"


def text(value: object, style: str = "", limit: int | None = None) -> Text:
    """Recorded text as a ``Text`` to put in a widget: escaped, and never parsed as markup."""
    return Text(safe(value, limit), style=style)


__all__ = ["PALETTE", "colour", "safe", "short_argv", "text"]
