"""CPU lanes: what ran on each CPU in a window around the current instant, one line per CPU, one
colour per process (idle dotted, processes outside the recording dimmed); the instant is marked."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from osrewind.queries.timespec import format_duration
from osrewind.tui import fmt


class CpuLanes(Widget):
    window_ns: reactive[int] = reactive(20_000_000)

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.lanes: dict[int, list] = {}
        self.at = 0
        self.sched = True

    def show(self, lanes: dict[int, list], at: int, sched: bool = True) -> None:
        self.lanes, self.at, self.sched = lanes, at, sched
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 2 if not self.lanes else len(self.lanes) + 1

    def render(self) -> Text:
        if not self.sched:
            return Text("CPU lanes: this run was recorded without the scheduler (--no-sched)", style="dim")
        if not self.lanes:
            return Text(f"CPU lanes: no context switch within ±{format_duration(self.window_ns // 2)} of this instant",
                        style="dim")
        width = max(10, self.size.width - 7)
        lo, hi = self.at - self.window_ns // 2, self.at + self.window_ns // 2
        step = max(1, (hi - lo) // width)
        cursor = min(width - 1, (self.at - lo) // step)
        lines = []
        seen: dict[str, str] = {}
        for cpu, slices in self.lanes.items():
            line = Text(f"cpu{cpu:<3} ", style="bold")
            j = 0
            for col in range(width):
                mid = lo + col * step + step // 2
                while j < len(slices) - 1 and slices[j].end <= mid:
                    j += 1
                s = slices[j] if slices and slices[j].start <= mid < max(slices[j].end, slices[j].start + 1) else None
                if s is None:
                    ch, style = " ", ""
                elif s.tid == 0:
                    ch, style = "·", "dim"
                elif s.pid is None:
                    ch, style = "░", "dim"
                else:
                    ch, style = "█", fmt.colour(("pid", s.pid))
                    seen.setdefault(f"{s.pid} {fmt.safe(s.comm)}", style)
                if col == cursor:
                    style = (style + " reverse").strip()
                    ch = ch if ch != " " else "│"
                line.append(ch, style)
            lines.append(line)
        legend = Text(f"±{format_duration(self.window_ns // 2)}  ", style="dim")
        for name, style in list(seen.items())[:6]:
            legend.append("█ ", style)
            legend.append(name + "  ")
        legend.append("· idle  ░ other", style="dim")
        return Text("\n").join([*lines, legend])
