"""The event log around the current instant, for the selection (or every process): facts just
before and after it, the cursor on the last one at or before the instant. Enter jumps there."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from osrewind.queries.events import describe
from osrewind.queries.timespec import format_offset
from osrewind.tui.fmt import safe


class EventLog(DataTable):
    class Jump(Message):
        def __init__(self, at: int) -> None:
            super().__init__()
            self.at = at

    def __init__(self, **kw) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kw)
        self.facts: list[dict] = []

    def on_mount(self) -> None:
        self.add_column("time", width=12)
        self.add_column("pid", width=7)
        self.add_column("event")

    def show(self, older: list[dict], newer: list[dict], start_ns: int, at: int) -> None:
        self.clear()
        self.facts = older + newer
        for e in self.facts:
            failed = e["ret"] < 0 and e["kind"] not in ("sched_switch", "fork", "exec", "wait") and e["ret"] >= -4095
            style = "red" if failed or e["kind"] == "lost" else ("dim" if e["ts"] > at else "")
            self.add_row(Text(format_offset(e["ts"] - start_ns), style="dim" if e["ts"] > at else ""),
                         str(e["tgid"]), Text(safe(describe(e)), style=style))
        if older:
            self.move_cursor(row=len(older) - 1, scroll=True)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if 0 <= event.cursor_row < len(self.facts):
            self.post_message(self.Jump(self.facts[event.cursor_row]["ts"]))
