"""The terminal UI driven by Textual's Pilot over real runs in a real chDB store: what each widget
shows after key presses, the help and command palette, the picker, the diff view, and one-line
errors from `osrewind tui`. Kernel recordings (live view, a real diff) are in test_tui_kernel.py."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import tui_runs
from textual.widgets import DataTable
from textual.worker import WorkerCancelled
from tui_runs import MS, START

from conftest import osrewind
from osrewind.ingest.store import Store
from osrewind.tui.app import OsrewindApp
from osrewind.tui.detail import DetailPane
from osrewind.tui.diff_screen import DiffScreen
from osrewind.tui.eventlog import EventLog
from osrewind.tui.help_screen import HelpScreen
from osrewind.tui.picker import PickerScreen
from osrewind.tui.proctree import ProcessTree
from osrewind.tui.run_screen import RunScreen

SIZE = (100, 32)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("tui") / "db"
    tui_runs.write(str(path), "a", name="job")
    tui_runs.write(str(path), "b", name="job-b")
    return str(path)


async def settle(pilot, screen=None, timeout: float = 20) -> None:
    """Until every worker is done, the screen shows the instant it was asked for, and every run
    screen's scrubber shows the event density of its current width (a screen under a modal one, such
    as help, counts too: it is drawn behind it)."""
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        await pilot.pause(0.05)
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:   # a newer one took its place (a resize, a stale count): wait for that
            continue
        await pilot.pause(0.05)
        s = screen or app.screen
        runs = [r for r in app.screen_stack if isinstance(r, RunScreen)]
        if (not app.workers._workers
                and all(len(r.scrubber.density) == r.scrubber.columns for r in runs if r.scrubber.size.width)
                and (not isinstance(s, RunScreen) or (s.shown.at == s.at and not s._loading))
                and not any(_sizing(t) for t in s.query(DataTable))):
            return
    raise AssertionError("the TUI did not settle")


def _sizing(table: DataTable) -> bool:
    """Rows added to ``table`` whose column widths it has not worked out yet (it does when idle: a
    screenshot before that draws the new rows in the old widths, a loaded machine's flaky snapshot)."""
    return bool(getattr(table, "_new_rows", None)) or bool(getattr(table, "_require_update_dimensions", False))


@contextlib.asynccontextmanager
async def running(db: str, size: tuple[int, int] = SIZE, **kw):
    """The app over the store at ``db``, started and settled; the store closes after it."""
    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, **kw)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            yield app, pilot


def shown_pids(screen: RunScreen) -> list[int]:
    return [pid for pid, _start in screen.query_one(ProcessTree).shown]


def detail_text(screen: RunScreen) -> str:
    d = screen.query_one(DetailPane)
    info = str(d.info.render())
    fds = " | ".join(" ".join(str(c) for c in d.table.get_row_at(i)) for i in range(d.table.row_count))
    return info + "\n" + fds


def test_scrub_shows_processes_fds_and_events_at_each_instant(db):
    async def go():
        async with running(db, run="job", at="+0.4s") as (app, pilot):
            s = app.screen
            assert isinstance(s, RunScreen) and s.at == START + 400 * MS
            assert shown_pids(s) == [4242]
            text = detail_text(s)
            assert "sh job.sh" in text and "uid 1000" in text and "/dev/null" in text and "/tmp/a" not in text
            # step size 100 ms, two steps: +0.6s, the file and the socket are open
            await pilot.press("3", "right", "right")
            await settle(pilot)
            assert s.at == START + 600 * MS
            text = detail_text(s)
            assert "3 file /tmp/a" in text and "4 socket socket:[TCP" in text
            # type an instant: the child is there, new since the previous instant
            await pilot.press("g")
            await pilot.press(*"+1.2s", "enter")
            await settle(pilot)
            assert s.at == START + 1200 * MS
            tree = s.query_one(ProcessTree)
            assert shown_pids(s) == [4242, 4243] and tree.born == {(4243, START + 1000 * MS)}
            # next event (any process): the lost-record gap at +1.3s, then the child's exit
            await pilot.press("right_square_bracket")
            await settle(pilot)
            assert s.at == START + 1300 * MS
            await pilot.press("right_square_bracket")
            await settle(pilot)
            assert s.at == START + 1400 * MS
            await pilot.press("right_square_bracket")
            await settle(pilot)
            assert s.at == START + 1400 * MS + 1
            assert tree.gone == {(4243, START + 1000 * MS)}   # just exited: still shown, struck
            assert "exited 3" in str(tree.label_for(s.state.exited[0], gone=True))
            # the scrubber shows the gap and the span
            scrub = s.scrubber
            assert scrub.gaps == [(START + 1300 * MS, 88)]
            assert "88 lost in 1 gap" in str(scrub.render())
            await pilot.press("end")
            await settle(pilot)
            assert s.at == START + 2000 * MS and s.state.processes == []
            assert tree.gone == {(4242, START - 1000)}
            await pilot.press("home")
            await settle(pilot)
            assert s.at == START

    asyncio.run(go())


def test_a_density_counted_for_an_old_width_is_counted_again(db):
    """The scrubber's density worker read the width, the scrubber was resized meanwhile, and the
    worker for the new width finished first: the stale count is not shown, it is counted again for
    the width the scrubber has (before, the scrubber kept the stale one and never filled its row)."""
    async def go():
        async with running(db, run="job", at="+0.4s") as (app, pilot):
            s = app.screen
            right = list(s.scrubber.density)
            s._show_marks([], right[:-7] or [1], None)     # a count for a narrower scrubber arrives late
            assert s.scrubber.density == right               # not shown
            await settle(pilot, timeout=10)
            assert s.scrubber.density == right and len(right) == s.scrubber.columns

    asyncio.run(go())


def test_event_log_follows_the_selection_and_enter_jumps(db):
    async def go():
        async with running(db, run="job", at="+1.2s") as (app, pilot):
            s = app.screen
            tree = s.query_one(ProcessTree)
            tree.select_ident((4243, START + 1000 * MS))
            await settle(pilot)
            log = s.query_one(EventLog)
            assert log.facts and all(e["tgid"] == 4243 or (e["kind"] == "sched_switch" and e["a2"] == 4243)
                                     for e in log.facts)
            cursor = log.facts[log.cursor_row]
            assert cursor["ts"] <= s.at and all(e["ts"] > s.at for e in log.facts[log.cursor_row + 1:])
            failed = next(i for i, e in enumerate(log.facts) if e["kind"] == "open")
            assert log.facts[failed]["ret"] == -2
            log.focus()
            log.move_cursor(row=failed)
            await pilot.press("enter")
            await settle(pilot)
            assert s.at == START + 1100 * MS
            assert "pid 4243" in str(log.border_title)

    asyncio.run(go())


def test_reverse_stepping_by_process_fd_and_path(db):
    async def go():
        async with running(db, run="job", at="+1.2s") as (app, pilot):
            s = app.screen
            assert s.query_one(ProcessTree).selected == (4242, START - 1000)
            await pilot.press("p")            # the root's previous event: the fork at +1.0s
            await settle(pilot)
            assert s.at == START + 1000 * MS and "fork" in s.scrubber.note
            await pilot.press("n")            # its next one: the context switch onto cpu0 at +1.44s
            await settle(pilot)
            assert s.at == START + 1440 * MS
            # fd 3 (/tmp/a) selected in the detail pane: previous event on it is its open
            detail = s.query_one(DetailPane)
            row = next(i for i, r in enumerate(detail.fd_rows) if r[0] == 3)
            detail.table.move_cursor(row=row)
            await pilot.press("P")
            await settle(pilot)
            assert s.at == START + 500 * MS
            await pilot.press("N")            # next on fd 3 after the open: the close at +1.5s
            await settle(pilot)
            assert s.at == START + 1500 * MS
            await pilot.press("home")
            await settle(pilot)
            detail.table.move_cursor(row=0)   # /dev/null has no event: a note, the instant stays
            await pilot.press("right_curly_bracket")
            await settle(pilot)
            assert s.at == START

    asyncio.run(go())


def test_filter_bookmarks_follow_and_zoom(db):
    async def go():
        async with running(db, run="job", at="+1.2s") as (app, pilot):
            s = app.screen
            await pilot.press("slash", *"4243")
            await settle(pilot)
            assert shown_pids(s) == [4242, 4243]   # the match and its ancestors
            await pilot.press("escape")
            await pilot.press("slash", *"nomatch")
            await settle(pilot)
            assert shown_pids(s) == []
            await pilot.press("escape")
            await settle(pilot)
            assert shown_pids(s) == [4242, 4243]
            await pilot.press("m")                # bookmark +1.2s, go elsewhere, come back
            await pilot.press("home")
            await settle(pilot)
            await pilot.press("b")
            await settle(pilot)
            assert s.at == START + 1200 * MS and s.scrubber.bookmarks == [START + 1200 * MS]
            s.query_one(ProcessTree).select_ident((4243, START + 1000 * MS))
            await settle(pilot)
            await pilot.press("f", "right")       # follow: event steps stay on pid 4243
            await settle(pilot)
            assert s.follow and s.at == START + 1400 * MS
            before = s.lanes.window_ns
            await pilot.press("Z")
            await settle(pilot)
            assert s.lanes.window_ns > before and s.lanes.lanes

    asyncio.run(go())


def test_cpu_lanes_show_who_ran_where(db):
    async def go():
        async with running(db, run="job", at="+1.2s") as (app, pilot):
            s = app.screen
            lanes = s.lanes.lanes
            assert sorted(lanes) == [0, 1]
            on1 = [sl for sl in lanes[1] if sl.start <= s.at < sl.end]
            assert [(sl.tid, sl.pid) for sl in on1] == [(4243, 4243)]
            on0 = [sl for sl in lanes[0] if sl.start <= s.at < sl.end]
            assert [(sl.tid, sl.comm) for sl in on0] == [(0, "idle")]
            text = str(s.lanes.render())
            assert "cpu0" in text and "cpu1" in text and "4243 sh" in text

    asyncio.run(go())


def test_help_lists_every_binding_and_the_palette_has_each_action(db):
    async def go():
        async with running(db, run="job") as (app, pilot):
            run_screen = app.screen
            commands = {c.title for c in app.get_system_commands(run_screen)}
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            assert isinstance(app.screen, HelpScreen)
            rows = dict((what, keys) for keys, what in app.screen.rows)
            for b in [*RunScreen.BINDINGS, *OsrewindApp.BINDINGS]:
                if b.description:
                    assert b.description in rows, b.description
                    if b.action != "command_palette":
                        assert b.description in commands, b.description
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert app.screen is run_screen

    asyncio.run(go())


def test_picker_lists_runs_and_opens_one(db):
    async def go():
        async with running(db) as (app, pilot):
            assert isinstance(app.screen, PickerScreen)
            assert sorted(r.name for r in app.screen.runs) == ["job", "job-b"]
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, RunScreen) and app.screen.rec.run.name == app.screen.rec.run.name
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert isinstance(app.screen, PickerScreen)
            await pilot.press("m", "down", "d")
            await settle(pilot)
            assert isinstance(app.screen, DiffScreen)

    asyncio.run(go())


def test_diff_view_aligns_and_jumps_to_the_first_divergence(db):
    async def go():
        async with running(db, run="job", diff="job-b") as (app, pilot):
            s = app.screen
            assert isinstance(s, DiffScreen) and s.result is not None
            assert [(d, a.pid if a else None, b.pid if b else None) for d, a, b in s.rows] == [
                (0, 4242, 4242), (1, 4243, 4243)]
            kinds = {d["kind"] for d in s.result["differences"]}
            assert "exit code" in kinds and "file operation only in b" in kinds
            await pilot.press("v")
            assert s.query_one("#diff-table").cursor_row == s.divergence_row == 1
            summary = str(s.query_one("#diff-summary").render())
            assert "first divergence" in summary and "/tmp/b" in summary
            await pilot.press("b")                # run B at its divergence, the child selected
            await settle(pilot)
            rs = app.screen
            assert isinstance(rs, RunScreen) and rs.rec.run.name == "job-b"
            assert rs.at == START + 1200 * MS and rs.query_one(ProcessTree).selected == (4243, START + 1000 * MS)
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert app.screen is s

    asyncio.run(go())


def test_tui_command_errors_are_one_line(db):
    for args, code, words in [
        (["tui", "nosuchrun"], 2, "unknown run"),
        (["tui", "--diff", "job"], 2, "--diff needs a first run"),
        (["tui", "job", "--at", "+99s"], 2, "outside"),
        (["tui", "job", "--", "true"], 2, "not both"),
    ]:
        out = osrewind(*args, db=db)
        assert out.returncode == code, (args, out.stderr)
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("osrewind: error:") and words in out.stderr


def test_tests_of_a_recorded_session_show_on_the_timeline_and_t_jumps_to_failures(tmp_path):
    """A run with a tests table (as pytest --osrewind leaves it): the scrubber draws each test's span,
    failed ones in red, and t / T step to the end of the next / previous failing test."""
    from osrewind.ingest import marks

    db = str(tmp_path / "db")
    rid = tui_runs.write(db, "a", name="session")
    found = marks.tests([
        {"t": START + 100 * MS, "pid": 4242, "nodeid": "t.py::test_ok", "when": "call", "ev": "start"},
        {"t": START + 200 * MS, "pid": 4242, "nodeid": "t.py::test_ok", "when": "call", "ev": "end",
         "outcome": "passed"},
        {"t": START + 500 * MS, "pid": 4242, "nodeid": "t.py::test_bad", "when": "call", "ev": "start"},
        {"t": START + 700 * MS, "pid": 4242, "nodeid": "t.py::test_bad", "when": "call", "ev": "end",
         "outcome": "failed", "message": "AssertionError"},
        {"t": START + 1100 * MS, "pid": 4243, "nodeid": "t.py::test_dies", "when": "call", "ev": "start"},
    ])
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_arrow("tests", marks.table(rid, found, lambda pid: START + 1400 * MS))

    async def go():
        async with running(db, run="session", at="start") as (app, pilot):
            s = app.screen
            scrub = s.scrubber
            assert sorted(scrub.tests) == [(START + 100 * MS, START + 200 * MS, False),
                                           (START + 500 * MS, START + 700 * MS, True),
                                           (START + 1100 * MS, START + 1400 * MS, True)]
            text = scrub.render()
            assert "3 tests, 2 failed" in str(text)
            marks_line = str(text).split("\n")[1]
            assert marks_line[scrub.column_of(START + 600 * MS)] == "━"      # inside the failed test
            assert marks_line[scrub.column_of(START + 150 * MS)] == "─"      # inside the passed one
            await pilot.press("t")
            await settle(pilot)
            assert s.at == START + 700 * MS and "t.py::test_bad" in scrub.note
            await pilot.press("t")
            await settle(pilot)
            assert s.at == START + 1400 * MS - 1 and "died" in scrub.note     # just before its process ended
            await pilot.press("T")
            await settle(pilot)
            assert s.at == START + 700 * MS

    asyncio.run(go())
