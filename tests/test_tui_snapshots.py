"""Snapshots of the TUI's main screens at fixed sizes (pytest-textual-snapshot), over the fixed
generated runs of tui_runs.py, with the default and the light theme. Update them, after looking at
the differences, with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

import os
import time

import pytest
import test_tui
from test_tui import settle

from osrewind.ingest.store import Store
from osrewind.tui.app import OsrewindApp

db = test_tui.db  # the fixed runs of tui_runs.py, as a fixture


@pytest.fixture(autouse=True)
def utc():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


@pytest.mark.parametrize("size,theme", [((80, 24), "textual-dark"), ((80, 24), "textual-light"),
                                        ((140, 40), "textual-dark")])
def test_run_screen(db, snap_compare, size, theme):
    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, run="job", at="+1.2s", theme=theme)
        assert snap_compare(app, terminal_size=size, run_before=settle)


def pressing(*keys: str):
    """A run_before: settle, press ``keys``, settle again."""
    async def run_before(pilot) -> None:
        await settle(pilot)
        await pilot.press(*keys)
        await settle(pilot)
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("name,app_args,keys,size", [
    ("stepped to an exit", {"run": "job", "at": "+1.2s"}, ["right_square_bracket"] * 3, (100, 30)),
    ("diff at its first divergence", {"run": "job", "diff": "job-b"}, ["v"], (100, 30)),
    ("help", {"run": "job", "at": "+1.2s"}, ["question_mark"], (100, 40)),
    ("run picker", {}, [], (100, 20)),
])
def test_screen(db, snap_compare, name, app_args, keys, size):
    with Store(db, purpose="test") as store:
        assert snap_compare(OsrewindApp(store, **app_args), terminal_size=size, run_before=pressing(*keys))
