"""The process tree at the current instant: alive processes, those born since the previous instant
(highlighted) and those that exited since it (shown where they were, struck through); a name filter;
the selection follows a process, (pid, start), across scrubs."""

from __future__ import annotations

import os

from rich.text import Text
from textual.message import Message
from textual.widgets import Tree

from osrewind.tui import fmt

Ident = tuple[int, int]  # (pid, start_ns): a pid is reused, a process is not


class ProcessTree(Tree[Ident]):
    class Selected(Message):
        def __init__(self, ident: Ident | None) -> None:
            super().__init__()
            self.ident = ident

    def __init__(self, **kw) -> None:
        super().__init__("processes", **kw)
        self.show_root = False
        self.guide_depth = 2
        self.selected: Ident | None = None
        self.filter = ""
        self.shown: list[Ident] = []          # in display order, for tests and stepping
        self.born: set[Ident] = set()
        self.gone: set[Ident] = set()
        self._rebuilding = False

    @staticmethod
    def label_for(p, born: bool = False, gone: bool = False) -> Text:
        name = fmt.safe(p.comm or os.path.basename(p.exe) or "?")
        t = Text()
        t.append(f"{p.pid} ", "bold" if not gone else "dim")
        t.append(name, fmt.colour(("pid", p.pid)) if not gone else "dim strike")
        args = fmt.short_argv(p.argv[1:] if p.argv else [], limit=40)
        if args:
            t.append(f" {args}", "dim")
        if born:
            t.append("  +new", "bold green")
        if gone:
            t.append(f"  exited {p.exit_code if p.exit_code is not None else '?'}", "bold red")
        elif getattr(p, "run_state", "unknown") == "running":
            t.append("  ●", "green")
        return t

    def show(self, processes: list, exited: list, prev_at: int | None, at: int) -> None:
        """Rebuild for a new instant: ``processes`` alive at ``at``, ``exited`` recently (newest first)."""
        lo, hi = (prev_at, at) if prev_at is not None else (at, at)
        if prev_at is not None and prev_at > at:
            lo, hi = at, prev_at
        alive = {p.pid: p for p in processes}
        self.born = {(p.pid, p.start_ns) for p in processes
                     if prev_at is not None and not p.from_snapshot and lo < p.start_ns <= hi}
        just_gone = [p for p in exited if prev_at is not None and p.exited_ns is not None and lo < p.exited_ns <= hi
                     and p.exited_ns <= at]
        self.gone = {(p.pid, p.start_ns) for p in just_gone}
        kids: dict[int | None, list] = {}
        for p in processes:
            kids.setdefault(p.ppid if p.ppid in alive and p.ppid != p.pid else None, []).append(p)
        for p in just_gone:
            kids.setdefault(p.ppid if p.ppid in alive else None, []).append(p)
        needle = self.filter.lower()
        matches: set[Ident] = set()
        if needle:
            def hit(p) -> bool:
                return needle in (p.comm or "").lower() or needle in " ".join(p.argv).lower() or needle == str(p.pid)

            def walk(p) -> bool:
                below = [walk(c) for c in kids.get(p.pid, [])]
                ok = hit(p) or any(below)
                if ok:
                    matches.add((p.pid, p.start_ns))
                return ok

            for r in kids.get(None, []):
                walk(r)
        self._rebuilding = True
        self.clear()
        self.shown = []
        target = None

        def add(node, p) -> None:
            nonlocal target
            ident = (p.pid, p.start_ns)
            if needle and ident not in matches:
                return
            gone = ident in self.gone
            children = [] if gone else sorted(kids.get(p.pid, []), key=lambda c: (c.start_ns, c.pid))
            label = self.label_for(p, ident in self.born, gone)
            child = node.add(label, data=ident, expand=True, allow_expand=bool(children))
            self.shown.append(ident)
            if ident == self.selected:
                target = child
            for c in children:
                add(child, c)

        for r in sorted(kids.get(None, []), key=lambda c: (c.start_ns, c.pid)):
            add(self.root, r)
        # node lines exist only after the next refresh: put the cursor back then, ignoring the
        # highlights the rebuild itself causes until that is done
        self.call_after_refresh(self._restore_cursor, target is not None)

    def _restore_cursor(self, found: bool) -> None:
        target = next((n for n in self._tree_nodes.values() if n.data == self.selected), None) if found else None
        if target is not None:
            self.move_cursor(target)
        elif self.selected is None and self.root.children:
            first = self.root.children[0]
            self.move_cursor(first)
            self.selected = first.data
            self.post_message(self.Selected(first.data))
        self.call_after_refresh(self._rebuilt)

    def _rebuilt(self) -> None:
        self._rebuilding = False

    def select_ident(self, ident: Ident) -> None:
        """Select a process (from code: a test, another view); the screen hears it as from a user."""
        if ident != self.selected:
            self.selected = ident
            self.post_message(self.Selected(ident))
        for node in self._tree_nodes.values():
            if node.data == ident:
                self.move_cursor(node)
                return

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        event.stop()
        if self._rebuilding or event.node is not self.cursor_node:
            return  # a highlight from a rebuild that has since moved on
        ident = event.node.data
        if ident is not None and ident != self.selected:
            self.selected = ident
            self.post_message(self.Selected(ident))
