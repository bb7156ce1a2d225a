"""The timeline scrubber across the top: the run's span as an event-density sparkline, its markers
(lost-record gaps, bookmarks, the live edge, the tests of a recorded pytest session: failed ones in
red) and the current instant."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from osrewind.queries.timespec import format_duration, format_offset, format_wall
from osrewind.tui.fmt import safe

BARS = " ▁▂▃▄▅▆▇█"


class Scrubber(Widget):
    """Attributes down (span, instant, density, markers), messages up (a click picks an instant,
    a new width asks for a new density)."""

    at: reactive[int] = reactive(0)
    density: reactive[list[int]] = reactive(list, always_update=True)
    step_label: reactive[str] = reactive("100ms")
    note: reactive[str] = reactive("")

    class Seek(Message):
        def __init__(self, at: int) -> None:
            super().__init__()
            self.at = at

    class Resized(Message):
        def __init__(self, columns: int) -> None:
            super().__init__()
            self.columns = columns

    def __init__(self, start_ns: int, end_ns: int, wall_offset_ns: int, **kw) -> None:
        super().__init__(**kw)
        self.start_ns = start_ns
        self.end_ns = max(end_ns, start_ns + 1)
        self.wall_offset_ns = wall_offset_ns
        self.gaps: list[tuple[int, int]] = []
        self.bookmarks: list[int] = []
        self.tests: list[tuple[int, int, bool]] = []   # (start, end, failed) of each test
        self._columns = 0

    # ------------------------------------------------------------------ attributes down

    def set_span(self, start_ns: int, end_ns: int) -> None:
        self.start_ns, self.end_ns = start_ns, max(end_ns, start_ns + 1)
        self.refresh()

    def set_marks(self, gaps: list[tuple[int, int]], bookmarks: list[int],
                  tests: list[tuple[int, int, bool]] | None = None) -> None:
        self.gaps, self.bookmarks = list(gaps), sorted(bookmarks)
        if tests is not None:
            self.tests = list(tests)
        self.refresh()

    @property
    def columns(self) -> int:
        return max(1, self.size.width)

    def column_of(self, t: int) -> int:
        span = self.end_ns - self.start_ns
        return min(self.columns - 1, max(0, (t - self.start_ns) * self.columns // max(1, span)))

    def instant_of(self, column: int) -> int:
        span = self.end_ns - self.start_ns
        return self.start_ns + min(span, max(0, (column * span + span // 2) // self.columns))

    # ------------------------------------------------------------------ rendering

    def on_resize(self) -> None:
        if self.columns != self._columns:
            self._columns = self.columns
            self.post_message(self.Resized(self.columns))

    def render(self) -> Text:
        cols = self.columns
        cursor = self.column_of(self.at)
        dens = self.density if len(self.density) == cols else [0] * cols
        peak = max(dens) or 1
        spark = Text()
        for i, n in enumerate(dens):
            level = 0 if n == 0 else max(1, round(n * (len(BARS) - 1) / peak))
            if i == cursor:
                spark.append(BARS[level] if level else "│", "reverse bold")
            else:
                spark.append(BARS[level], "" if n else "dim")
        marks = [" "] * cols
        styles = [""] * cols
        for start, end, failed in sorted(self.tests, key=lambda t: t[2]):   # failed ones drawn last, on top
            for c in range(self.column_of(start), self.column_of(end) + 1):
                marks[c], styles[c] = ("━", "bold red") if failed else ("─", "green")
        for ts, _lost in self.gaps:
            c = self.column_of(ts)
            marks[c], styles[c] = "!", "bold red"
        for b in self.bookmarks:
            c = self.column_of(b)
            if marks[c] in " ─━":
                marks[c], styles[c] = "*", "bold yellow"
        marks[cursor], styles[cursor] = "▲", "bold"
        line2 = Text()
        for ch, st in zip(marks, styles, strict=True):
            line2.append(ch, st)
        lost = sum(n for _ts, n in self.gaps)
        info = Text()
        info.append(format_offset(self.at - self.start_ns), "bold")
        info.append(f" / {format_duration(self.end_ns - self.start_ns)}")
        info.append(f"  {format_wall(self.at + self.wall_offset_ns, date=False)}", "dim")
        info.append(f"  step {self.step_label}")
        if lost:
            info.append(f"  {lost} lost in {len(self.gaps)} gap{'s' if len(self.gaps) > 1 else ''}", "bold red")
        if self.bookmarks:
            info.append(f"  {len(self.bookmarks)} bookmark{'s' if len(self.bookmarks) > 1 else ''}", "yellow")
        if self.tests:
            failed = sum(1 for t in self.tests if t[2])
            info.append(f"  {len(self.tests)} tests")
            if failed:
                info.append(f", {failed} failed", "bold red")
        if self.note:
            info.append(f"  {safe(self.note)}", "italic")
        return Text("\n").join([spark, line2, info])

    def on_click(self, event) -> None:
        where = event.get_content_offset(self)
        if where is not None and where.y <= 1:
            self.post_message(self.Seek(self.instant_of(where.x)))
