"""Instants as users write them, turned into CLOCK_MONOTONIC nanoseconds of one run.

Accepted forms:
- an offset from the run start: ``+1.25s``, ``+300ms``, ``+40us``, ``+7ns``, ``+2m``, ``1.5s``;
- an offset back from the run end: ``-100ms``;
- ``start`` or ``end``;
- an absolute monotonic value in ns: ``123456789012`` (digits only), as the kernel and
  ``time.monotonic_ns()`` report it;
- a wall-clock time: ``2026-11-22T16:31:02.5``, ``2026-11-22 16:31:02Z``, or ``16:31:02.25`` (that time
  of day on the run's start date); without a zone, local time.
"""

from __future__ import annotations

import datetime as dt
import re

from osrewind.errors import UsageError

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
          "min": 60_000_000_000, "h": 3_600_000_000_000}
_OFFSET = re.compile(r"^([+-]?)(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|min|m|h)$")
_TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?$")


def format_offset(ns: int) -> str:
    """``+1.250000s`` style, microsecond precision."""
    return f"{'-' if ns < 0 else '+'}{abs(ns) / 1e9:.6f}s"


def format_duration(ns: int) -> str:
    """``12.5ms``, ``3.20s``, ``4m05s``: a length of time for people."""
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f}ms"
    if ns < 120_000_000_000:
        return f"{ns / 1e9:.2f}s"
    return f"{ns // 60_000_000_000}m{(ns // 1_000_000_000) % 60:02d}s"


def format_wall(ns: int, date: bool = True) -> str:
    """A wall-clock instant (ns since the epoch) in local time, to the millisecond."""
    import datetime as dt

    text = dt.datetime.fromtimestamp(ns / 1e9).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return text if date else text[11:]


MAX_NS = 2**62  # about 146 years: anything longer is a typo, and would not fit the store's Int64


def _amount(m: re.Match, text: str, label: str) -> int:
    """The nanoseconds an offset names, exactly (no float overflow on 400 nines)."""
    from decimal import Decimal

    value = Decimal(m.group(2)) * _UNITS[m.group(3)]
    if value > MAX_NS:
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise UsageError(f"{label} {shown!r} is too large (at most about 146 years)")
    return int(value.to_integral_value())


def parse_duration(text: str, label: str = "duration") -> int:
    m = _OFFSET.match(text.strip())
    if not m or m.group(1) == "-":
        raise UsageError(f"bad {label} {text!r}: use e.g. 500ms, 2s, 1.5m")
    return _amount(m, text, label)


def parse_at(text: str, start_ns: int, end_ns: int, wall_offset_ns: int, *, check_range: bool = True,
             label: str = "--at") -> int:
    """The monotonic instant that ``text`` names within a run spanning [start_ns, end_ns]."""
    raw = text
    text = text.strip()
    if not text:
        raise UsageError(f"empty {label}: use e.g. +1.25s, +300ms, end, or a wall-clock time")
    if text == "start":
        return start_ns
    if text == "end":
        return end_ns
    m = _OFFSET.match(text)
    if m:
        amount = _amount(m, raw, label)
        at = end_ns - amount if m.group(1) == "-" else start_ns + amount
    elif text.isdigit():
        if len(text) > 19 or int(text) > 2**63 - 1:
            raise UsageError(f"{label} {raw[:20]!r}... is too large for a CLOCK_MONOTONIC instant in ns")
        at = int(text)
    else:
        at = _parse_wall(text, start_ns, wall_offset_ns, label)
    if check_range and not (start_ns <= at <= end_ns):
        span = (end_ns - start_ns) / 1e9
        raise UsageError(f"{label} {raw!r} is outside the run (it spans +0s .. +{span:.3f}s)")
    return at


def _parse_wall(text: str, start_ns: int, wall_offset_ns: int, label: str) -> int:
    start_wall = dt.datetime.fromtimestamp((start_ns + wall_offset_ns) / 1e9).astimezone()
    try:
        if _TIME_OF_DAY.match(text):
            parts = text.split(":")
            h, mi = int(parts[0]), int(parts[1])
            sec = float(parts[2]) if len(parts) > 2 else 0.0
            when = start_wall.replace(hour=h, minute=mi, second=int(sec), microsecond=0)
            wall_ns = int(when.timestamp()) * 1_000_000_000 + int(round((sec - int(sec)) * 1e9))
        else:
            iso = text.replace(" ", "T", 1)
            if iso.endswith("Z"):
                iso = iso[:-1] + "+00:00"
            frac_ns = 0
            fm = re.search(r"\.(\d+)", iso)
            if fm:
                digits = fm.group(1)
                frac_ns = int((digits + "000000000")[:9])
                iso = iso[: fm.start()] + iso[fm.end():]
            when = dt.datetime.fromisoformat(iso)
            if when.tzinfo is None:
                when = when.astimezone()
            wall_ns = int(when.timestamp()) * 1_000_000_000 + frac_ns
    except ValueError:
        raise UsageError(
            f"bad {label} {text!r}: use +1.25s, +300ms, -100ms, start, end, monotonic ns, or a wall time "
            "like 2026-11-22T16:31:02.5 / 16:31:02"
        ) from None
    return wall_ns - wall_offset_ns
