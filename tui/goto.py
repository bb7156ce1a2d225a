"""Type an instant: any form ``osrewind state --at`` takes (+1.25s, -100ms, end, 16:31:02.5, ns)."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

from osrewind.errors import OsrewindError
from osrewind.tui.fmt import safe


class GotoScreen(ModalScreen[int | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, parse: Callable[[str], int], prompt: str = "Go to instant") -> None:
        super().__init__()
        self.parse = parse
        self.prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="goto-box"):
            yield Label(f"{self.prompt}: +1.25s, -100ms, start, end, 16:31:02.5 or monotonic ns")
            yield Input(placeholder="+0.5s", id="goto-input")
            yield Label("", id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            at = self.parse(event.value.strip())
        except OsrewindError as exc:
            self.query_one("#goto-error", Label).update(Text(safe(str(exc))))   # may quote what was typed
            return
        self.dismiss(at)
