"""Small formatting helpers shared by the TUI's widgets (times, durations, colours per process)."""

from __future__ import annotations

import datetime as dt
import zlib

# readable on dark and light backgrounds alike
PALETTE = ["#4e9a06", "#3465a4", "#c4a000", "#75507b", "#06989a", "#ce5c00", "#a40000", "#5c8a2e",
           "#204a87", "#8f5902", "#5c3566", "#2e8b8b"]


def offset(ns: int) -> str:
    """A signed offset from the run start, to the microsecond: +1.234567s."""
    sign = "-" if ns < 0 else "+"
    ns = abs(ns)
    return f"{sign}{ns // 1_000_000_000}.{(ns % 1_000_000_000) // 1000:06d}s"


def duration(ns: int) -> str:
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f}us"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms" if ns < 10_000_000 else f"{ns / 1e6:.0f}ms"
    if ns < 120_000_000_000:
        return f"{ns / 1e9:.2f}s"
    return f"{ns // 60_000_000_000}m{(ns // 1_000_000_000) % 60:02d}s"


def wall(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%H:%M:%S.%f")[:-3]


def colour(key: object) -> str:
    """A stable colour per process (or anything hashable)."""
    return PALETTE[zlib.crc32(repr(key).encode()) % len(PALETTE)]


def short_argv(argv: list[str], exe: str = "", comm: str = "", limit: int = 60) -> str:
    text = " ".join(argv) if argv else (exe or comm)
    return text if len(text) <= limit else text[: limit - 1] + "…"
