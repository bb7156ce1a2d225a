"""Every key binding of the screen underneath, generated from the bindings themselves."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def key_label(key: str) -> str:
    names = {"left_square_bracket": "[", "right_square_bracket": "]", "left_curly_bracket": "{",
             "right_curly_bracket": "}", "question_mark": "?", "slash": "/", "apostrophe": "'",
             "plus": "+", "minus": "-", "comma": ",", "full_stop": "."}
    return ", ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def bindings_of(*sources) -> list[tuple[str, str]]:
    """(keys, description) for every described binding, in order, without repeats."""
    out, seen = [], set()
    for src in sources:
        for b in getattr(src, "BINDINGS", []):
            if isinstance(b, Binding) and b.description and (b.key, b.description) not in seen:
                seen.add((b.key, b.description))
                out.append((key_label(b.key), b.description))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss(None)", "Close help")]

    def __init__(self, title: str, rows: list[tuple[str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.rows = rows

    def compose(self) -> ComposeResult:
        table = Table(title=self.title_text, expand=True, show_edge=False)
        table.add_column("keys", style="bold", no_wrap=True)
        table.add_column("action")
        for keys, what in self.rows:
            table.add_row(keys, what)
        with VerticalScroll(id="help-box"):
            yield Static(table, id="help-table")
            yield Static("Every action is also in the command palette (ctrl+p). Escape closes this.", classes="dim")
