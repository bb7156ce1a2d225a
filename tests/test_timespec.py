from __future__ import annotations

import datetime as dt

import pytest

from osrewind.errors import UsageError
from osrewind.queries.timespec import format_offset, parse_at, parse_duration

START = 1_000_000_000_000
END = START + 5_000_000_000
# wall = monotonic + offset: the run started at 2026-11-22 16:30:00.000 UTC
WALL_START = int(dt.datetime(2026, 11, 22, 16, 30, tzinfo=dt.timezone.utc).timestamp()) * 10**9
OFFSET = WALL_START - START


@pytest.mark.parametrize("text,expected", [
    ("+1.25s", START + 1_250_000_000),
    ("+300ms", START + 300_000_000),
    ("1.5s", START + 1_500_000_000),
    ("+40us", START + 40_000),
    ("+7ns", START + 7),
    ("-100ms", END - 100_000_000),
    ("start", START),
    ("end", END),
    (str(START + 42), START + 42),
    ("2026-11-22T16:30:02.5Z", START + 2_500_000_000),
    ("2026-11-22 16:30:01+00:00", START + 1_000_000_000),
])
def test_parse_at(text, expected):
    assert parse_at(text, START, END, OFFSET) == expected


def test_time_of_day_uses_run_date_in_local_time():
    local = dt.datetime.fromtimestamp((WALL_START + 3 * 10**9) / 1e9).astimezone()
    assert parse_at(local.strftime("%H:%M:%S"), START, END, OFFSET) == START + 3_000_000_000


@pytest.mark.parametrize("text", ["", "soon", "+1.2.3s", "12:99:00", "+5 parsecs", "2026-13-40T00:00:00"])
def test_malformed(text):
    with pytest.raises(UsageError):
        parse_at(text, START, END, OFFSET)


@pytest.mark.parametrize("text", ["+6s", "-6s", str(START - 1), "2026-11-22T17:00:00Z"])
def test_outside_run(text):
    with pytest.raises(UsageError, match="outside the run"):
        parse_at(text, START, END, OFFSET)


def test_durations_and_format():
    assert parse_duration("500ms") == 500_000_000 and parse_duration("2m") == 120_000_000_000
    with pytest.raises(UsageError):
        parse_duration("-1s")
    assert format_offset(1_250_000_000) == "+1.250000s"
