"""Small formatting helpers of the TUI's widgets (times and durations: ``osrewind.queries.timespec``)."""

from __future__ import annotations

import zlib

# readable on dark and light backgrounds alike
PALETTE = ["#4e9a06", "#3465a4", "#c4a000", "#75507b", "#06989a", "#ce5c00", "#a40000", "#5c8a2e",
           "#204a87", "#8f5902", "#5c3566", "#2e8b8b"]


def colour(key: object) -> str:
    """A stable colour per process (or anything hashable)."""
    return PALETTE[zlib.crc32(repr(key).encode()) % len(PALETTE)]


def short_argv(argv: list[str], exe: str = "", comm: str = "", limit: int = 60) -> str:
    text = " ".join(argv) if argv else (exe or comm)
    return text if len(text) <= limit else text[: limit - 1] + "…"
