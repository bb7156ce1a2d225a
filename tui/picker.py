"""The run picker: every recorded run, newest first. Enter opens one; m marks a run and d diffs the
marked run against the one under the cursor."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from osrewind.queries.timespec import format_duration, format_wall
from osrewind.tui.fmt import safe


class PickerScreen(Screen):
    BINDINGS = [
        Binding("enter", "open", "Open run", show=True),
        Binding("m", "mark", "Mark for diff"),
        Binding("d", "diff", "Diff marked vs this"),
    ]

    def __init__(self, runs: list) -> None:
        super().__init__()
        self.runs = runs
        self.marked: int | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="⏪")
        yield Static(f"{len(self.runs)} recorded run{'s' if len(self.runs) != 1 else ''}: Enter opens one",
                     id="picker-title")
        yield DataTable(id="picker-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.title = "osrewind · runs"
        table = self.query_one(DataTable)
        table.add_columns(" ", "id", "name", "started", "duration", "events", "lost", "exit", "status")
        for r in self.runs:
            table.add_row(*self._cells(r, False))
        table.focus()

    def _cells(self, r, marked: bool) -> list:
        status_style = {"complete": "green", "interrupted": "yellow", "aborted": "red", "failed": "red",
                        "recovered": "yellow"}
        return [Text("A" if marked else " ", style="bold yellow"), r.run_id[:8], Text(safe(r.name)),
                format_wall(r.start_wall_ns), format_duration(r.duration_ns), str(r.events),
                Text(str(r.lost), style="bold red" if r.lost else ""), "" if r.exit_code is None else str(r.exit_code),
                Text(safe(r.status), style=status_style.get(r.status, ""))]

    @property
    def cursor(self) -> int | None:
        table = self.query_one(DataTable)
        return table.cursor_row if self.runs and table.cursor_row is not None else None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_open(self) -> None:
        i = self.cursor
        if i is not None:
            self.app.open_run(self.runs[i].run_id)

    def action_mark(self) -> None:
        i = self.cursor
        if i is None:
            return
        table = self.query_one(DataTable)
        if self.marked is not None:
            table.update_cell_at((self.marked, 0), Text(" "))
        self.marked = None if self.marked == i else i
        if self.marked is not None:
            table.update_cell_at((i, 0), Text("A", style="bold yellow"))
            self.notify(f"run {safe(self.runs[i].name)} marked: d on another run diffs them", markup=False)

    def action_diff(self) -> None:
        i = self.cursor
        if self.marked is None or i is None or i == self.marked:
            self.notify("mark a run with m, then press d on another", severity="warning")
            return
        self.app.open_diff(self.runs[self.marked].run_id, self.runs[i].run_id)
