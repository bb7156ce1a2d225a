"""One run, scrubbed through time: the timeline across the top, the process tree at the instant on
the left, the selected process and its event log on the right, CPU lanes below.

Every query runs on a worker thread. Scrubbing only records the instant wanted; one loader thread
takes the latest wanted instant each time it finishes, so a held key shows the newest instant
rather than working through a backlog, and the screen never waits for the store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from osrewind.errors import OsrewindError
from osrewind.queries.timespec import format_offset
from osrewind.tui.cpulanes import CpuLanes
from osrewind.tui.detail import DetailPane
from osrewind.tui.eventlog import EventLog
from osrewind.tui.fmt import safe
from osrewind.tui.goto import GotoScreen
from osrewind.tui.proctree import Ident, ProcessTree
from osrewind.tui.scrubber import Scrubber

STEPS: list[tuple[str, int]] = [("event", 0), ("1ms", 1_000_000), ("100ms", 100_000_000),
                                ("1s", 1_000_000_000), ("10s", 10_000_000_000)]
LANE_WINDOWS = [1_000_000, 5_000_000, 20_000_000, 100_000_000, 500_000_000, 2_000_000_000]


@dataclass
class Shown:
    """What the screen shows now, for tests and the benchmark: the instant and when it appeared."""
    at: int = 0
    requested_at: float = 0.0     # time.perf_counter() when that instant was asked for
    shown_at: float = 0.0         # ... and when its state was on screen


class RunScreen(Screen):
    BINDINGS = [
        Binding("right", "step(1)", "Step", priority=True),
        Binding("left", "step(-1)", "Back", priority=True),
        Binding("1", "step_size(0)", "Step by event", show=False),
        Binding("2", "step_size(1)", "Step by 1 ms", show=False),
        Binding("3", "step_size(2)", "Step by 100 ms", show=False),
        Binding("4", "step_size(3)", "Step by 1 s", show=False),
        Binding("5", "step_size(4)", "Step by 10 s", show=False),
        Binding("left_square_bracket", "event(-1)", "Previous event (any process)", show=False),
        Binding("right_square_bracket", "event(1)", "Next event (any process)", show=False),
        Binding("home", "jump('start')", "Jump to start", show=False, priority=True),
        Binding("end", "jump('end')", "Jump to end", show=False, priority=True),
        Binding("g", "goto", "Go to"),
        Binding("m", "bookmark", "Bookmark", show=False),
        Binding("b", "next_bookmark(1)", "Next bookmark", show=False),
        Binding("B", "next_bookmark(-1)", "Previous bookmark", show=False),
        Binding("t", "next_failed_test(1)", "Next failing test (its end: the failure)", show=False),
        Binding("T", "next_failed_test(-1)", "Previous failing test", show=False),
        Binding("p", "touch(-1, 'process')", "Prev of proc"),
        Binding("n", "touch(1, 'process')", "Next of proc"),
        Binding("P", "touch(-1, 'fd')", "Previous event on the selected fd", show=False),
        Binding("N", "touch(1, 'fd')", "Next event on the selected fd", show=False),
        Binding("left_curly_bracket", "touch(-1, 'path')", "Previous event on the selected fd's path", show=False),
        Binding("right_curly_bracket", "touch(1, 'path')", "Next event on the selected fd's path", show=False),
        Binding("slash", "filter", "Filter", show=False),
        Binding("escape", "clear_filter", "Clear the filter / back", show=False),
        Binding("f", "follow", "Follow the selected process (event steps stay on it)", show=False),
        Binding("z", "zoom(-1)", "CPU lanes: narrower window", show=False),
        Binding("Z", "zoom(1)", "CPU lanes: wider window", show=False),
    ]

    def __init__(self, rec, at: int | None = None, select: Ident | None = None, live=None,
                 can_go_back: bool = False) -> None:
        super().__init__()
        self.rec = rec
        self.live = live
        self.can_go_back = can_go_back
        run = rec.run
        self.at = run.end_ns if at is None and live is not None else (run.start_ns if at is None else at)
        self.step_idx = 0
        self.bookmarks: list[int] = []
        self.tests: list = []    # of a recorded pytest session (queries.testcases.TestCase), by start
        self.follow = False
        self.state = None
        self.prev_at: int | None = None
        self.shown = Shown()
        self.lane_idx = 2
        self._initial_select = select
        self._lock = threading.Lock()
        self._want: tuple[int, Ident | None] | None = None
        self._done: tuple[int, Ident | None] | None = None
        self._loading = False
        self._requested = 0.0
        self._live_edge = live is not None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        run = self.rec.run
        yield Header(show_clock=False, icon="⏪")
        yield Scrubber(run.start_ns, run.end_ns, run.wall_offset_ns)
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield Input(placeholder="filter by name, argv or pid (Enter keeps, Escape clears)", id="filter")
                yield ProcessTree()
            with Vertical(id="right"):
                yield DetailPane()
                yield EventLog()
        yield CpuLanes()
        yield Footer()

    @property
    def scrubber(self) -> Scrubber:
        return self.query_one(Scrubber)

    @property
    def proc_tree(self) -> ProcessTree:
        return self.query_one(ProcessTree)

    @property
    def detail(self) -> DetailPane:
        return self.query_one(DetailPane)

    @property
    def log_view(self) -> EventLog:
        return self.query_one(EventLog)

    @property
    def lanes(self) -> CpuLanes:
        return self.query_one(CpuLanes)

    def on_mount(self) -> None:
        run = self.rec.run
        self.title = f"osrewind · {safe(run.name)}"
        self.sub_title = f"run {run.run_id[:8]} · {safe(run.status)}" + (f" · exit {run.exit_code}"
                                                                    if run.exit_code is not None else "")
        self.proc_tree.border_title = "Processes"
        self.detail.border_title = "Detail"
        self.log_view.border_title = "Events"
        self.lanes.window_ns = LANE_WINDOWS[self.lane_idx]
        self.scrubber.step_label = STEPS[self.step_idx][0]
        if self._initial_select is not None:
            self.proc_tree.selected = self._initial_select
        self.proc_tree.focus()
        self.run_worker(self._load_marks, thread=True, group="marks", exit_on_error=False)
        if self.live is not None:
            self._live_timer = self.set_interval(0.5, self._live_tick)
        self._request(self.at)

    # ------------------------------------------------------------------ loading

    def _request(self, at: int) -> None:
        run = self.rec.run
        at = min(max(at, run.start_ns), max(run.end_ns, run.start_ns))
        self.at = at
        self.scrubber.at = at
        self._requested = time.perf_counter()
        with self._lock:
            self._want = (at, self.proc_tree.selected)
            if self._loading:
                return
            self._loading = True
        self.run_worker(self._load_loop, thread=True, group="load", exit_on_error=False)

    def _post(self, fn: Callable, *args, **kwargs) -> bool:
        try:
            self.app.call_from_thread(fn, *args, **kwargs)
            return True
        except Exception:  # the app is closing
            return False

    def _load_loop(self) -> None:
        state_for: tuple[int, object] | None = None
        try:
            while True:
                with self._lock:
                    req = self._want
                    if req is None or req == self._done:
                        self._loading = False
                        return
                at, sel = req
                asked = self._requested
                try:
                    self.rec.baseline_uids()   # read once here, off the screen's thread
                    if state_for is None or state_for[0] != at:
                        state_for = (at, self.rec.state_at(at))
                        if not self._post(self._show_state, at, state_for[1], asked):
                            return
                    if self._want != req:
                        continue
                    pid = sel[0] if sel is not None else None
                    older, newer = self.rec.around(at, before=40, after=20, pid=pid)
                    if self._want != req:
                        continue
                    lanes = {}
                    if state_for[1].sched:
                        w = LANE_WINDOWS[self.lane_idx]
                        run = self.rec.run
                        lo, hi = max(run.start_ns, at - w // 2), min(max(run.end_ns, run.start_ns), at + w // 2)
                        lanes = self.rec.cpu_lanes(lo, hi)
                    if not self._post(self._show_extras, at, sel, older, newer, lanes, state_for[1].sched):
                        return
                except OsrewindError as exc:
                    self._post(self.say, str(exc), severity="error")
                with self._lock:
                    self._done = req
        finally:
            with self._lock:
                self._loading = False

    def _load_marks(self) -> None:
        try:
            gaps = [(g.ts, g.lost) for g in self.rec.gaps()]
            dens = self.rec.density(self.scrubber.columns)
            tests = self.rec.tests()
        except OsrewindError as exc:
            self._post(self.say, str(exc), severity="error")
            return
        self._post(self._show_marks, gaps, dens, tests)

    def _show_marks(self, gaps: list[tuple[int, int]], dens: list[int], tests: list | None = None) -> None:
        if tests is not None:
            self.tests = tests
        self.scrubber.set_marks(gaps, self.bookmarks, [(t.start_ns, t.end_ns, t.failed) for t in self.tests])
        if len(dens) != self.scrubber.columns:
            # counted for a width the scrubber no longer has (it was resized meanwhile, and the
            # worker for the new width may have finished first): count again for this one
            self.run_worker(self._load_marks, thread=True, group="marks", exclusive=True, exit_on_error=False)
            return
        self.scrubber.density = dens

    def _show_state(self, at: int, st, asked: float) -> None:
        self.state = st
        self.proc_tree.show(st.processes, st.exited, self.prev_at, at)
        self.prev_at = at
        alive = len(st.processes)
        self.proc_tree.border_title = f"Processes at {format_offset(at - self.rec.run.start_ns)} ({alive} alive)"
        self._show_detail()
        self.shown = Shown(at, asked, time.perf_counter())
        run, sel = self.rec.run, self.proc_tree.selected
        self.app.last_where = {"run_id": run.run_id, "name": run.name, "at_ns": at, "at_offset_ns": at - run.start_ns,
                               "selected": {"pid": sel[0], "start_ns": sel[1]} if sel else None}

    def _show_extras(self, at: int, sel: Ident | None, older: list, newer: list, lanes: dict, sched: bool) -> None:
        run = self.rec.run
        self.log_view.show(older, newer, run.start_ns, at)
        who = f"pid {sel[0]}" if sel is not None else "all processes"
        self.log_view.border_title = f"Events of {who} around {format_offset(at - run.start_ns)}"
        self.lanes.show(lanes, at, sched)

    def _uid_of(self, p) -> int | None:
        uids = self.rec.baseline_uids()
        seen = 0
        procs = {q.pid: q for q in self.state.processes} if self.state else {}
        while p is not None and seen < 64:
            if p.pid in uids and p.from_snapshot:
                return uids[p.pid]
            p = procs.get(p.ppid)
            seen += 1
        return None

    def _show_detail(self) -> None:
        st, sel = self.state, self.proc_tree.selected
        if st is None:
            return
        if sel is None:
            self.detail.show_nothing("no process selected")
            return
        for p in st.processes:
            if (p.pid, p.start_ns) == sel:
                self.detail.show(p, st, self._uid_of(p), self.rec.run.start_ns)
                return
        for p in st.exited:
            if (p.pid, p.start_ns) == sel:
                self.detail.show(p, st, None, self.rec.run.start_ns, gone=True)
                return
        self.detail.border_title = f"pid {sel[0]}"
        self.detail.show_nothing(f"pid {sel[0]} is not alive at this instant "
                                 f"({'born later' if sel[1] > self.at else 'exited earlier'}); "
                                 "p / n step to its previous / next event")

    def say(self, message: str, severity: str = "information") -> None:
        """A notification that may quote recorded text (a path, an fd target, an error naming a
        run): escaped, and shown as typed rather than read as markup."""
        self.notify(safe(message), severity=severity, markup=False)

    # ------------------------------------------------------------------ messages up

    def on_process_tree_selected(self, message: ProcessTree.Selected) -> None:
        self._show_detail()
        self._request(self.at)

    def on_event_log_jump(self, message: EventLog.Jump) -> None:
        self._live_edge = False
        self._request(message.at)

    def on_scrubber_seek(self, message: Scrubber.Seek) -> None:
        self._live_edge = False
        self._request(message.at)

    def on_scrubber_resized(self, message: Scrubber.Resized) -> None:
        self.run_worker(self._load_marks, thread=True, group="marks", exclusive=True, exit_on_error=False)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.proc_tree.filter = event.value
            if self.state is not None:
                self.proc_tree.show(self.state.processes, self.state.exited, self.prev_at, self.at)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.proc_tree.focus()

    # ------------------------------------------------------------------ actions

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("step", "jump") and isinstance(self.focused, Input):
            return False   # arrows and home/end edit the filter while it has focus
        return True

    def action_step(self, direction: int) -> None:
        label, size = STEPS[self.step_idx]
        self._live_edge = False
        if size:
            self._request(self.at + direction * size)
            return
        pid = self.proc_tree.selected[0] if self.follow and self.proc_tree.selected else None
        self._find(direction, pid=pid)

    def action_step_size(self, idx: int) -> None:
        self.step_idx = idx
        self.scrubber.step_label = STEPS[idx][0]

    def action_event(self, direction: int) -> None:
        self._live_edge = False
        self._find(direction)

    def action_jump(self, where: str) -> None:
        run = self.rec.run
        self._live_edge = where == "end" and self.live is not None
        self._request(run.start_ns if where == "start" else max(run.end_ns, run.start_ns))

    def action_goto(self) -> None:
        def done(at: int | None) -> None:
            if at is not None:
                self._live_edge = False
                self._request(at)

        self.app.push_screen(GotoScreen(self.rec.instant), done)

    def action_bookmark(self) -> None:
        if self.at in self.bookmarks:
            self.bookmarks.remove(self.at)
            self.notify(f"bookmark at {format_offset(self.at - self.rec.run.start_ns)} removed")
        else:
            self.bookmarks.append(self.at)
            self.bookmarks.sort()
            self.notify(f"bookmarked {format_offset(self.at - self.rec.run.start_ns)} (b / B to come back)")
        self.scrubber.set_marks(self.scrubber.gaps, self.bookmarks)

    def action_next_bookmark(self, direction: int) -> None:
        if not self.bookmarks:
            self.notify("no bookmarks yet: m bookmarks the current instant")
            return
        later = [b for b in self.bookmarks if (b > self.at if direction > 0 else b < self.at)]
        target = (later[0] if direction > 0 else later[-1]) if later else (
            self.bookmarks[0] if direction > 0 else self.bookmarks[-1])
        self._live_edge = False
        self._request(target)

    def action_next_failed_test(self, direction: int) -> None:
        """To the end (the failure) of the next or previous failing test of a recorded pytest session."""
        from osrewind.queries import testcases

        failed = [t for t in self.tests if t.failed]
        if not failed:
            self.notify("no failing tests in this run" if self.tests else
                        "this run has no tests (record a pytest session with 'pytest --osrewind')")
            return
        ends = sorted(((testcases.instant(t, "end"), t) for t in failed), key=lambda x: x[0])
        later = [x for x in ends if (x[0] > self.at if direction > 0 else x[0] < self.at)]
        at, t = (later[0] if direction > 0 else later[-1]) if later else (ends[0] if direction > 0 else ends[-1])
        self._live_edge = False
        self.scrubber.note = safe(f"{t.outcome}: {t.nodeid}", limit=70)
        self._request(at)

    def action_touch(self, direction: int, what: str) -> None:
        sel = self.proc_tree.selected
        if sel is None:
            self.notify("select a process first", severity="warning")
            return
        if what == "process":
            self._find(direction, pid=sel[0])
            return
        fd = self.detail.selected_fd()
        if fd is None:
            self.notify("select an fd in the detail pane first", severity="warning")
            return
        if what == "fd":
            self._find(direction, pid=sel[0], fd=fd[0])
        elif fd[1] == "file" and fd[2].startswith("/"):
            self._find(direction, path=fd[2].removesuffix(" (deleted)"))
        else:
            self.say(f"fd {fd[0]} has no path ({fd[2]}): P / N step by the fd", severity="warning")

    def _find(self, direction: int, pid: int | None = None, fd: int | None = None, path: str | None = None) -> None:
        at = self.at
        what = f"fd {fd} of pid {pid}" if fd is not None else f"pid {pid}" if pid is not None else (
            path or "any process")

        def work() -> None:
            try:
                e = self.rec.step(at, backwards=direction < 0, pid=pid, fd=fd, path=path)
            except OsrewindError as exc:
                self._post(self.say, str(exc), severity="error")
                return
            if e is None:
                self._post(self.say, f"no {'earlier' if direction < 0 else 'later'} event of {what}")
                return
            self._post(self._stepped, e)

        self._live_edge = False
        self.run_worker(work, thread=True, group="step", exclusive=True, exit_on_error=False)

    def _stepped(self, e: dict) -> None:
        from osrewind.queries.events import describe

        self.scrubber.note = safe(f"{e['tgid']}: {describe(e)}", limit=70)
        self._request(e["ts"])

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("visible")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_class("visible"):
            box.value = ""
            box.remove_class("visible")
            self.proc_tree.focus()
        elif self.can_go_back:
            self.app.pop_screen()

    def action_follow(self) -> None:
        if self.proc_tree.selected is None:
            self.notify("select a process to follow", severity="warning")
            return
        self.follow = not self.follow
        self.scrubber.note = f"following pid {self.proc_tree.selected[0]}" if self.follow else ""
        if self.follow and self.step_idx != 0:
            self.action_step_size(0)

    def action_zoom(self, direction: int) -> None:
        self.lane_idx = min(len(LANE_WINDOWS) - 1, max(0, self.lane_idx + direction))
        self.lanes.window_ns = LANE_WINDOWS[self.lane_idx]
        with self._lock:
            self._done = None
        self._request(self.at)

    # ------------------------------------------------------------------ live

    def _live_tick(self) -> None:
        live = self.live
        info = live.run_info()
        if info is None:
            return
        self.rec.run = info
        self.scrubber.set_span(info.start_ns, info.end_ns)
        self.sub_title = f"run {info.run_id[:8]} · {safe(live.status_text())}"
        self.run_worker(self._load_marks, thread=True, group="marks", exclusive=True, exit_on_error=False)
        if self._live_edge:
            self._request(info.end_ns)
        if live.finished and live.indexed:  # the run is final: one last update, then no more ticks
            self._live_timer.stop()
            self.sub_title = f"run {info.run_id[:8]} · {safe(info.status)}" + (
                f" · exit {info.exit_code}" if info.exit_code is not None else "")
            self.say(live.status_text(), severity="error" if live.error else "information")
