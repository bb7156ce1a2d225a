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


def test_run_screen_after_stepping_to_an_exit(db, snap_compare):
    async def steps(pilot):
        await settle(pilot)
        await pilot.press("right_square_bracket", "right_square_bracket", "right_square_bracket")
        await settle(pilot)

    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, run="job", at="+1.2s")
        assert snap_compare(app, terminal_size=(100, 30), run_before=steps)


def test_diff_screen(db, snap_compare):
    async def diverge(pilot):
        await settle(pilot)
        await pilot.press("v")
        await pilot.pause(0.1)

    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, run="job", diff="job-b")
        assert snap_compare(app, terminal_size=(100, 30), run_before=diverge)


def test_help_screen(db, snap_compare):
    async def helped(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, run="job", at="+1.2s")
        assert snap_compare(app, terminal_size=(100, 40), run_before=helped)


def test_run_picker(db, snap_compare):
    with Store(db, purpose="test") as store:
        app = OsrewindApp(store)
        assert snap_compare(app, terminal_size=(100, 20), run_before=settle)
