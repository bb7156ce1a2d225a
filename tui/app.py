"""The osrewind terminal UI: pick a run, scrub through it, inspect a process at any instant, step
through the events that touched it, compare two runs, or watch a command as it is recorded.

    osrewind tui                 # run picker
    osrewind tui last            # one run
    osrewind tui good --diff bad # two runs side by side
    osrewind tui -- make test    # record and watch live

Everything it shows comes from ``osrewind.queries.api.Recording`` (no SQL here)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from osrewind.errors import OsrewindError
from osrewind.queries.api import Recording
from osrewind.queries.runs import list_runs
from osrewind.tui.diff_screen import DiffScreen
from osrewind.tui.fmt import safe, text
from osrewind.tui.help_screen import HelpScreen, bindings_of
from osrewind.tui.picker import PickerScreen
from osrewind.tui.run_screen import RunScreen


class OsrewindApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "osrewind"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("ctrl+p", "command_palette", "Commands", show=False),
        Binding("ctrl+t", "toggle_theme", "Toggle light/dark theme", show=False),
    ]

    def __init__(self, store, run: str | None = None, diff: str | None = None, live=None, at: str | None = None,
                 theme: str | None = None) -> None:
        super().__init__()
        self.store = store
        self.run_spec = run
        self.diff_spec = diff
        self.live = live
        self.at_spec = at
        self.last_where: dict = {"run_id": None}   # updated by the run screen: printed by --json on exit
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        try:
            self.push_screen(self._first_screen())
        except OsrewindError as exc:
            self.exit(return_code=2, message=text(f"osrewind: error: {exc}"))

    def _first_screen(self) -> Screen:
        if self.live is not None:
            info = self.live.run_info()
            return RunScreen(Recording(self.store, info), live=self.live)
        if self.run_spec is not None and self.diff_spec is not None:   # '' is an empty run: an error
            return DiffScreen(Recording.of(self.store, self.run_spec), Recording.of(self.store, self.diff_spec))
        if self.run_spec is not None:
            rec = Recording.of(self.store, self.run_spec)
            at = rec.instant(self.at_spec) if self.at_spec else None
            return RunScreen(rec, at=at)
        return PickerScreen(list_runs(self.store))

    def where(self) -> dict:
        return dict(self.last_where)

    # ------------------------------------------------------------------ opening screens

    def open_run(self, run_id: str) -> None:
        try:
            self.push_screen(RunScreen(Recording.of(self.store, run_id), can_go_back=True))
        except OsrewindError as exc:
            self.notify(safe(str(exc)), severity="error", markup=False)

    def open_diff(self, run_a: str, run_b: str) -> None:
        try:
            self.push_screen(DiffScreen(Recording.of(self.store, run_a), Recording.of(self.store, run_b),
                                        can_go_back=True))
        except OsrewindError as exc:
            self.notify(safe(str(exc)), severity="error", markup=False)

    # ------------------------------------------------------------------ help and commands

    def help_rows(self, screen: Screen | None = None) -> list[tuple[str, str]]:
        screen = screen or self.screen
        return bindings_of(screen, self)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(f"osrewind keys: {type(self.screen).__name__.replace('Screen', '')} view",
                                    self.help_rows()))

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.theme != "textual-light" else "textual-dark"

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for source in (screen, self):
            for b in getattr(source, "BINDINGS", []):
                if isinstance(b, Binding) and b.description and b.action != "command_palette":
                    target = screen if source is screen else self
                    yield SystemCommand(b.description, f"key: {b.key}", partial(target.run_action, b.action))

    # ------------------------------------------------------------------ quitting

    _live_stop_asked = False   # a first q stopped the recording; a second leaves the command running

    async def action_quit(self) -> None:
        live = self.live
        if live is not None and not live.finished:
            if self._live_stop_asked:
                self.notify("recording stopped; the command keeps running", markup=False)
                live.stop()   # the second stop: at once, the command left running
                return
            self._live_stop_asked = True
            self.notify("stopping the recording (the run keeps everything so far)…")
            live.stop()
            self.run_worker(self._wait_live_then_exit, thread=True, exit_on_error=False)
            return
        self.exit()

    def _wait_live_then_exit(self) -> None:
        self.live.join(1.0)
        waiting = self.live.waiting_for()
        if waiting is not None:   # it did not exit on SIGTERM: say so, and how to leave it running
            self.call_from_thread(self.notify, f"waiting for {waiting} to exit; q again to stop recording "
                                  "and leave it running", markup=False, timeout=60)
        self.live.join()
        self.call_from_thread(self.exit)

