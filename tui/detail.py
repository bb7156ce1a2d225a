"""The selected process at the current instant: argv, exe, cwd, uid, run state, children, open fds
(files, pipes, sockets with their TCP state and bytes), or how it ended."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from osrewind.queries.timespec import format_offset
from osrewind.tui.fmt import safe


class DetailPane(Vertical):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.fd_rows: list[tuple[int, str, str]] = []   # (fd, kind, target) as shown

    def compose(self) -> ComposeResult:
        yield Static(id="detail-info")
        table = DataTable(id="detail-fds", cursor_type="row", zebra_stripes=False)
        table.add_columns("fd", "kind", "target", "flags")
        yield table

    @property
    def info(self) -> Static:
        return self.query_one("#detail-info", Static)

    @property
    def table(self) -> DataTable:
        return self.query_one("#detail-fds", DataTable)

    def selected_fd(self) -> tuple[int, str, str] | None:
        t = self.table
        if not self.fd_rows or t.cursor_row is None or not 0 <= t.cursor_row < len(self.fd_rows):
            return None
        return self.fd_rows[t.cursor_row]

    def show_nothing(self, why: str) -> None:
        self.border_title = "Detail"
        self.info.update(Text(why, style="dim"))
        self.fd_rows = []
        self.table.clear()

    def show(self, p, state, uid: int | None, start_ns: int, gone: bool = False) -> None:
        """``p``: a Proc alive at the instant (or exited, with ``gone``); ``state``: the StateAt."""
        self.border_title = f"pid {p.pid}"
        t = Text()
        t.append("argv ", "bold")
        t.append(safe(" ".join(p.argv)) or "?")
        t.append("\nexe ", "bold")
        t.append(safe(p.exe) or "?")
        t.append("  cwd ", "bold")
        t.append(safe(p.cwd) or "?")
        t.append("\nuid ", "bold")
        t.append(f"{uid if uid is not None else '?'}")
        t.append("  ppid ", "bold")
        t.append(f"{p.ppid}{' (orphaned)' if p.orphaned else ''}")
        t.append("  threads ", "bold")
        t.append(str(p.threads))
        t.append("  born ", "bold")
        t.append("before recording" if p.from_snapshot else format_offset(p.start_ns - start_ns))
        if gone:
            t.append("\nexited ", "bold red")
            t.append(f"{format_offset((p.exited_ns or 0) - start_ns)} with code "
                     f"{p.exit_code if p.exit_code is not None else '?'}", "red")
        else:
            rs = p.run_state
            t.append("  state ", "bold")
            t.append(rs, {"running": "bold green", "runnable": "yellow", "sleeping": "", "unknown": "dim"}[rs])
            if p.on_cpu:
                t.append(f" on cpu {','.join(str(c) for c in sorted(set(p.on_cpu.values())))}")
            if p.exit_code is not None:
                t.append(f"  exiting with {p.exit_code}", "red")
        kids = [c for c in state.processes if c.ppid == p.pid and c.pid != p.pid]
        if kids:
            t.append("\nchildren ", "bold")
            t.append(", ".join(f"{c.pid} {safe(c.comm)}" for c in kids[:8]) + (" …" if len(kids) > 8 else ""))
        self.info.update(t)
        table = self.table
        keep = table.cursor_row if table.row_count else 0
        table.clear()
        self.fd_rows = []
        for f in sorted(p.fds.values(), key=lambda f: f.fd):
            style = {"socket": "cyan", "pipe": "magenta", "anon": "dim"}.get(f.kind, "")
            flags = "cloexec" if f.cloexec else ""
            if f.sock is not None and (f.sock.sent or f.sock.received):
                flags = (flags + f" {f.sock.sent}B out {f.sock.received}B in").strip()
            table.add_row(str(f.fd), Text(safe(f.kind)), Text(safe(f.target), style=style), Text(flags))
            self.fd_rows.append((f.fd, f.kind, f.target))
        if self.fd_rows:
            table.move_cursor(row=min(keep, len(self.fd_rows) - 1))
