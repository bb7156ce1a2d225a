"""Recorded text in the terminal UI (issue 9, points 4 and 15): argv, comm, exe, cwd, fd targets, paths
in event descriptions and run names reach the screen with control characters and non-UTF-8 bytes as
visible escapes (``osrewind.text.safe``) and are never read as markup; ``osrewind tui`` refuses to run
without a terminal and takes '' as the empty run it is."""

from __future__ import annotations

import contextlib
import uuid

import numpy as np
import pytest
from synthetic import record
from test_tui import settle

from conftest import osrewind
from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.probes.records import AT_FDCWD
from osrewind.tui.app import OsrewindApp
from osrewind.tui.detail import DetailPane
from osrewind.tui.diff_screen import DiffScreen
from osrewind.tui.eventlog import EventLog
from osrewind.tui.picker import PickerScreen
from osrewind.tui.proctree import ProcessTree
from osrewind.tui.run_screen import RunScreen

S = 20_000_000_000
MS = 1_000_000
PID, KID = 5151, 5152
ESC = "\x1b]0;PWNED\x07\x1b[2J"            # retitles the terminal, then clears it
ESC_SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J"
MARKUP = "[bold]x[/]"
BAD = "bad\udcffname"                        # the byte 0xff, kept losslessly (surrogateescape)
BAD_SHOWN = "bad\\xffname"
NAME = f"job{ESC}{MARKUP}{BAD}"
RUNS = (uuid.UUID("0c0c0c0c-1111-4222-8333-444444444444"), uuid.UUID("0d0d0d0d-1111-4222-8333-444444444444"))
SIZE = (160, 40)


def _exec_args(ts: int, pid: int, argv: list[bytes]) -> np.ndarray:
    ev = record(ts, "exec_args", pid)
    blob = b"\0".join(argv) + b"\0"
    raw = bytearray(512)
    raw[: len(blob)] = blob
    ev["str"], ev["len1"], ev["a0"] = bytes(raw), len(blob), len(argv)
    return ev


def write(db: str, run_id: uuid.UUID) -> None:
    from osrewind.queries import keyframes
    from osrewind.queries.runs import resolve_run

    esc, markup = ESC.encode(), MARKUP.encode()
    switch = record(S + 50 * MS, "sched_switch", 0, a0=1, a1=PID, a2=PID, path=b"ev" + esc[:6] + b"[b]", comm=b"")
    evs = np.concatenate([
        switch,
        record(S + 300 * MS, "open", PID, ret=5, a0=AT_FDCWD, path=b"/tmp/" + esc + markup + b"\xff.txt",
               comm=b"sh" + esc[:8]),
        record(S + 500 * MS, "fork", PID, a0=PID, a1=KID, comm=b"sh" + esc[:8]),
        _exec_args(S + 600 * MS, KID, [b"/usr/bin/" + markup, esc, markup, b"bad\xffname"]),
        record(S + 600 * MS + 1, "exec", KID, a0=KID, path=b"/usr/bin/" + markup, comm=b"[bold]x[/]" + esc[:5]),
        record(S + 700 * MS, "open", KID, ret=3, a0=AT_FDCWD, path=b"/tmp/w/bad\xffname" + esc,
               comm=b"[bold]x[/]" + esc[:5]),
        record(S + 1800 * MS, "exit_call", KID, a0=0, a1=1, comm=b"[bold]x[/]" + esc[:5]),
        record(S + 1800 * MS + 1, "task_exit", KID, a0=1, comm=b"[bold]x[/]" + esc[:5]),
    ])
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows(
            "runs",
            [[run_id, NAME, "testhost", "", "6.18", ["sh", ESC, MARKUP, BAD], f"/tmp/{BAD}", "command", PID, S,
              S + 2000 * MS, 1_795_000_000_000_000_000 - S, len(evs), 0, 0, "complete", "test", 1]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"])
        store.insert_rows(
            "snapshot_procs", [[run_id, S, PID, 1, S - 1000, 1000, f"sh{ESC}"[:15], f"/bin/{MARKUP}{ESC}",
                                ["sh", ESC, MARKUP, BAD], f"/tmp/{MARKUP}{ESC}{BAD}", 1]],
            ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
        store.insert_rows("snapshot_fds", [[run_id, S, PID, fd, target, "file", 0, 0] for fd, target in
                                           [(0, "/dev/null"), (3, f"/tmp/{BAD}{ESC}"), (4, f"/tmp/[bold red]{MARKUP}")]],
                          ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
        store.insert_arrow("events", decode.to_arrow(evs, run_id, 0))
        keyframes.build(store, resolve_run(store, str(run_id)), every=2)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tui-hardening") / "db")
    for rid in RUNS:
        write(path, rid)
    return path


def screen_text(app) -> str:
    """Every character on the screen, as the terminal would be sent them (toasts included)."""
    update = app.screen._compositor.render_full_update(simplify=True)
    return "\n".join("".join(seg.text for strip in row for seg in strip) for row in update.strips)


def assert_harmless(app) -> str:
    text = screen_text(app)
    svg = app.export_screenshot()
    for raw in ("\x1b", "\x07", "\udcff", "\x9b"):
        assert raw not in text and raw not in svg, f"{raw!r} reached the screen"
    return text


@contextlib.asynccontextmanager
async def running(db: str, **kw):
    with Store(db, purpose="test") as store:
        app = OsrewindApp(store, **kw)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            yield app, pilot


def test_run_screen_shows_recorded_text_escaped_and_literal(db):
    import asyncio

    async def go():
        async with running(db, run=str(RUNS[0]), at="+0.4s") as (app, pilot):
            s = app.screen
            assert isinstance(s, RunScreen)
            text = assert_harmless(app)
            assert "PWNED" in text and "\\x1b" in text               # the title, shown as escapes
            assert s.title == f"osrewind · job{ESC_SHOWN}{MARKUP}{BAD_SHOWN}"
            d = s.query_one(DetailPane)
            info = d.info.render()
            plain = getattr(info, "plain", str(info))
            assert f"sh {ESC_SHOWN} {MARKUP} {BAD_SHOWN}" in plain     # argv, the markup as typed
            assert f"/bin/{MARKUP}{ESC_SHOWN}" in plain                 # exe
            assert f"/tmp/{MARKUP}{ESC_SHOWN}{BAD_SHOWN}" in plain      # cwd
            targets = [d.table.get_row_at(i)[2].plain for i in range(d.table.row_count)]
            assert f"/tmp/{BAD_SHOWN}{ESC_SHOWN}" in targets and f"/tmp/[bold red]{MARKUP}" in targets
            assert f"/tmp/{ESC_SHOWN}{MARKUP}\\xff.txt" in targets       # opened at +0.3s
            label = s.query_one(ProcessTree).root.children[0].label.plain
            assert label.startswith(f"{PID} sh\\x1b") and f"{ESC_SHOWN} {MARKUP} bad…" in label   # cut to 40
            log = s.query_one(EventLog)
            described = " ".join(log.get_row_at(i)[2].plain for i in range(log.row_count))
            assert f"open /tmp/{ESC_SHOWN}{MARKUP}\\xff.txt" in described
            # the child, after its exec: argv and comm from the events
            await pilot.press("3", "right", "right", "right")   # +0.7s
            await settle(pilot)
            s.query_one(ProcessTree).select_ident(next(i for i in s.query_one(ProcessTree).shown if i[0] == KID))
            await settle(pilot)
            await pilot.pause(0.2)
            text = assert_harmless(app)
            plain = s.query_one(DetailPane).info.render()
            plain = getattr(plain, "plain", str(plain))
            assert f"/usr/bin/{MARKUP} {ESC_SHOWN} {MARKUP} {BAD_SHOWN}" in plain
            described = " ".join(log.get_row_at(i)[2].plain for i in range(log.row_count))
            assert f"/tmp/w/{BAD_SHOWN}{ESC_SHOWN}" in described
            # a step to the next event of the process puts its description in the scrubber
            await pilot.press("1", "p")   # back to its exec
            await settle(pilot)
            await pilot.pause(0.2)
            assert MARKUP in s.scrubber.note and MARKUP in assert_harmless(app)
            await pilot.press("n")        # its open of the file with the escape sequence in its name
            await settle(pilot)
            await pilot.pause(0.2)
            assert "\\x1b]0;PWNED" in s.scrubber.note and "\x1b" not in s.scrubber.note
            assert_harmless(app)

    asyncio.run(go())


def test_picker_and_diff_show_names_escaped(db):
    import asyncio

    async def go():
        async with running(db) as (app, pilot):
            s = app.screen
            assert isinstance(s, PickerScreen)
            text = assert_harmless(app)
            assert f"job{ESC_SHOWN}"[:20] in text
            await pilot.press("m")        # the notification quotes the run name
            await pilot.pause(0.3)
            assert_harmless(app)
            await pilot.press("down", "d")
            await settle(pilot)
            await pilot.pause(0.3)
            assert isinstance(app.screen, DiffScreen)
            text = assert_harmless(app)
            assert f"A: job{ESC_SHOWN}"[:24] in text
            assert app.screen.title.startswith(f"osrewind · diff job{ESC_SHOWN}{MARKUP}")
            detail = str(app.screen.query_one("#diff-detail").render())
            assert f"{ESC_SHOWN} {MARKUP}" in detail

    asyncio.run(go())


def test_tui_needs_a_terminal_and_an_empty_run_is_an_error(db):
    empty = osrewind("tui", "", db=db, input="", timeout=60)
    assert empty.returncode == 2 and empty.stderr.startswith("osrewind: error: empty run"), empty.stderr
    assert len(empty.stderr.strip().splitlines()) == 1
    for args in ([], ["last"], ["last", "--json"]):
        proc = osrewind("tui", *args, db=db, input="", timeout=60)   # stdin and stderr are pipes here
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip() == ("osrewind: error: the terminal UI needs a terminal (stdin and stderr are "
                                       "not one); for scripts use 'osrewind state', 'events' or 'tree' (with --json)")
        assert proc.stdout == "" and "\x1b" not in proc.stderr
    bad = osrewind("tui", "nope", db=db, input="", timeout=60)          # a bad run is said first
    assert bad.returncode == 2 and "nope" in bad.stderr and "terminal" not in bad.stderr
