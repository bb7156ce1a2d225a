"""Two runs side by side: their process trees aligned as ``osrewind diff`` aligns them (by what each
process ran, never by pid), differences highlighted, and a key to the first divergence in both."""

from __future__ import annotations

import os

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from osrewind.errors import OsrewindError
from osrewind.queries.timespec import format_duration, format_offset
from osrewind.tui import fmt
from osrewind.tui.fmt import safe


def _cell(depth: int, p, other) -> Text:
    if p is None:
        return Text("  " * depth + "—", style="dim")
    name = " ".join(p.argv) if p.argv else (os.path.basename(p.exe) or "(forked, no exec)")
    t = Text("  " * depth)
    t.append(f"{p.pid} ", "dim")
    t.append(fmt.short_argv([name], limit=44))
    code = p.exit_code
    t.append(f"  exit {code if code is not None else '?'}", "")
    if other is None:
        t.stylize("bold green")
    elif other.exit_code != code:
        t.stylize("bold yellow", len(t) - len(f"  exit {code if code is not None else '?'}"))
    return t


class DiffScreen(Screen):
    BINDINGS = [
        Binding("v", "divergence", "First divergence"),
        Binding("a", "open('a')", "Open run A here"),
        Binding("b", "open('b')", "Open run B here"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, rec_a, rec_b, can_go_back: bool = False) -> None:
        super().__init__()
        self.rec_a, self.rec_b = rec_a, rec_b
        self.can_go_back = can_go_back
        self.rows: list[tuple[int, object, object]] = []
        self.result: dict | None = None
        self.divergence_row: int | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="⏪")
        yield Static("comparing the two runs…", id="diff-summary")
        yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=False)
        yield Static("", id="diff-detail")
        yield Footer()

    def on_mount(self) -> None:
        a, b = self.rec_a.run, self.rec_b.run
        self.title = f"osrewind · diff {safe(a.name)} ↔ {safe(b.name)}"
        self.sub_title = f"A {a.run_id[:8]} · B {b.run_id[:8]}"
        table = self.query_one(DataTable)
        table.add_column(fmt.text(f"A: {a.name} ({a.run_id[:8]})"), key="a")
        table.add_column(fmt.text(f"B: {b.name} ({b.run_id[:8]})"), key="b")
        table.focus()
        self.run_worker(self._compute, thread=True, exit_on_error=False)

    def _compute(self) -> None:
        try:
            rows = self.rec_a.aligned(self.rec_b)
            result = self.rec_a.diff(self.rec_b)
        except OsrewindError as exc:
            self.app.call_from_thread(self._failed, str(exc))
            return
        self.app.call_from_thread(self._show, rows, result)

    def _failed(self, why: str) -> None:
        self.query_one("#diff-summary", Static).update(fmt.text(f"cannot diff: {why}", style="bold red"))

    def _show(self, rows: list, result: dict) -> None:
        self.rows, self.result = rows, result
        table = self.query_one(DataTable)
        table.clear()
        for depth, pa, pb in rows:
            table.add_row(_cell(depth, pa, pb), _cell(depth, pb, pa))
        first = result.get("first_divergence")
        self.divergence_row = self._row_of(first)
        s = Text()
        s.append(f"{result['aligned']} processes aligned, {result['only_a']} only in A, {result['only_b']} only in B, "
                 f"{len(result['differences'])} differences", "bold")
        if first:
            s.append("\nfirst divergence: ", "bold red")
            s.append(safe(self._divergence_text(first)))
            s.append("   (v jumps there; a / b open that run at it)", "dim")
        for d in result["differences"][:3]:
            s.append("\n• " + safe(self._difference_text(d)))
        self.query_one("#diff-summary", Static).update(s)
        self._describe_row(0)

    @staticmethod
    def _divergence_text(first: dict) -> str:
        if "run" in first:
            p = first["process"]
            return f"process {p['pid']} ({' '.join(p['argv'])}) only in {first['run'].upper()}: {first['fact']}"
        parts = []
        for side in ("a", "b"):
            if first.get(side):
                parts.append(f"{side.upper()} {format_offset(first[side + '_offset_ns'])}: {first[side]}")
            else:
                parts.append(f"{side.upper()}: nothing")
        return " | ".join(parts)

    @staticmethod
    def _difference_text(d: dict) -> str:
        kind = d["kind"]
        if "what" in d:
            return f"{kind}: {d['what']} (pid {d['process']['pid']})"
        if kind == "exit code":
            who = " ".join(d["a"]["argv"]) or f"pid {d['a']['pid']}"
            return f"exit code {d['a']['exit_code']} in A, {d['b']['exit_code']} in B ({who})"
        if kind == "timing":
            return (f"timing: {format_duration(d['a']['duration_ns'])} in A, {format_duration(d['b']['duration_ns'])} in B "
                    f"({' '.join(d['a']['argv'])})")
        p = d.get("process", {})
        return f"{kind}: {' '.join(p.get('argv', []))} (pid {p.get('pid')})"

    def _row_of(self, first: dict | None) -> int | None:
        if not first:
            return None
        if "run" in first:
            want = (first["run"], first["process"]["pid"], first["process"]["start_ns"])
        else:
            want = ("a", first["process"]["a"]["pid"], first["process"]["a"]["start_ns"])
        for i, (_d, pa, pb) in enumerate(self.rows):
            p = pa if want[0] == "a" else pb
            if p is not None and (p.pid, p.start_ns) == want[1:]:
                return i
        return None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._describe_row(event.cursor_row)

    def _describe_row(self, i: int) -> None:
        if not self.rows or not 0 <= i < len(self.rows):
            return
        _d, pa, pb = self.rows[i]
        t = Text()
        for side, p, run in (("A", pa, self.rec_a.run), ("B", pb, self.rec_b.run)):
            t.append(f"{side} ", "bold")
            if p is None:
                t.append("no counterpart\n", "dim")
                continue
            end = format_offset(p.end_ns - run.start_ns) if p.end_ns else "still running"
            t.append(f"pid {p.pid}  {safe(' '.join(p.argv) or p.exe)}  born {format_offset(p.start_ns - run.start_ns)}  "
                     f"ended {end}  exit {p.exit_code if p.exit_code is not None else '?'}\n")
        if self.result:
            mine = [d for d in self.result["differences"]
                    if (pa is not None and d.get("process", d.get("a", {})).get("pid") == pa.pid)
                    or (pb is not None and d.get("process", d.get("b", {})).get("pid") == pb.pid)]
            for d in mine[:4]:
                t.append("• " + safe(self._difference_text(d)) + "\n", "yellow")
        self.query_one("#diff-detail", Static).update(t)

    def action_divergence(self) -> None:
        if self.divergence_row is None:
            self.notify("the runs did not diverge" if self.result else "still comparing…")
            return
        self.query_one(DataTable).move_cursor(row=self.divergence_row, scroll=True)
        self._describe_row(self.divergence_row)

    def divergence_instant(self, side: str) -> int | None:
        first = (self.result or {}).get("first_divergence")
        if not first:
            return None
        run = (self.rec_a if side == "a" else self.rec_b).run
        if first.get(f"{side}_offset_ns") is not None:
            return run.start_ns + first[f"{side}_offset_ns"]
        return None

    def action_open(self, side: str) -> None:
        from osrewind.tui.run_screen import RunScreen

        rec = self.rec_a if side == "a" else self.rec_b
        table = self.query_one(DataTable)
        row = table.cursor_row if self.rows else None
        p = None
        if row is not None and 0 <= row < len(self.rows):
            p = self.rows[row][1 if side == "a" else 2]
        at = self.divergence_instant(side) if row == self.divergence_row else None
        if at is None and p is not None:
            at = max(p.start_ns, rec.run.start_ns)
        self.app.push_screen(RunScreen(rec, at=at, select=(p.pid, p.start_ns) if p is not None else None,
                                       can_go_back=True))

    def action_back(self) -> None:
        if self.can_go_back:
            self.app.pop_screen()
