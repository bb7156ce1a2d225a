"""The Python API over recordings: what the CLI, the TUI and the pytest plugin all use.

    from osrewind.queries.api import Recording

    with Recording.open("last") as rec:                 # or Recording.open("build-42", db="...")
        st = rec.state_at("+1.25s")                     # processes, fds, sockets, CPUs at that instant
        for e in rec.events(kinds=["open"], failed=True):
            print(e["path"], e["ret"])
        rec.lineage("/tmp/out.txt", depth=2)
        rec.diff(other_run_spec)

Instants are anything ``osrewind state --at`` takes (``+1.25s``, ``-100ms``, ``end``, monotonic ns,
wall-clock time) or an int of CLOCK_MONOTONIC ns. One store per process for the embedded store:
``Recording.open`` holds it until ``close()``; ``Recording.of(store, run)`` shares an open store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from osrewind.errors import UsageError
from osrewind.queries import diff as diff_mod
from osrewind.queries import events as events_mod
from osrewind.queries import history, named, state, testcases, timeline, top
from osrewind.queries.cache import cache_for
from osrewind.queries.runs import RunInfo, list_runs, resolve_run
from osrewind.queries.timespec import parse_at, parse_duration


class Recording:
    def __init__(self, store: Any, run: RunInfo, owns_store: bool = False) -> None:
        self.store = store
        self.run = run
        self._owns = owns_store

    @classmethod
    def open(cls, run: str = "last", db: str | None = None) -> Recording:
        from osrewind.ingest.store import Store

        store = Store(db, purpose="reading (Python API)")
        try:
            return cls(store, resolve_run(store, run), owns_store=True)
        except BaseException:
            store.close()
            raise

    @classmethod
    def of(cls, store: Any, run: str) -> Recording:
        return cls(store, resolve_run(store, run))

    def close(self) -> None:
        if self._owns:
            self.store.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ time

    def instant(self, t: int | str, label: str = "instant") -> int:
        """CLOCK_MONOTONIC ns of an instant of the run (``label`` names it in an error: ``--at``):
        what ``parse_at`` takes, or a test's start or end: ``test:NODEID[:start|:end]``."""
        if isinstance(t, int):
            if not self.run.start_ns <= t <= self.run.end_ns:
                raise UsageError(f"{label} {t} is outside the run")
            return t
        if t.strip().startswith(testcases.PREFIX):
            nodeid, edge = testcases.split(t.strip())
            return testcases.instant(self.test(nodeid), edge)
        return parse_at(t, self.run.start_ns, self.run.end_ns, self.run.wall_offset_ns, label=label)

    # ------------------------------------------------------------------ tests (pytest --osrewind)

    def tests(self) -> list[testcases.TestCase]:
        """The tests of a recorded pytest session, in the order they started."""
        cache = cache_for(self.store)
        return cache.remember(cache.tests, self.run.run_id, lambda: testcases.tests(self.store, self.run))

    def test(self, nodeid: str) -> testcases.TestCase:
        """One test by node id (or a unique tail of one: ``test_y``, ``test_x.py::test_y``)."""
        return testcases.find(self.tests(), nodeid)

    def window(self, at: int | str | None, width: str | int) -> tuple[int, int]:
        """[from, to] ns: ``width`` (a duration: ``1s``, or ns) centred on ``at``, within the run; the
        whole run when ``at`` is None."""
        if at is None:
            return self.run.start_ns, self.run.end_ns
        centre = self.instant(at, "--at")
        half = (parse_duration(width) if isinstance(width, str) else int(width)) // 2
        return max(self.run.start_ns, centre - half), min(self.run.end_ns, centre + half)

    # ------------------------------------------------------------------ questions

    def state_at(self, t: int | str, pids: Iterable[int] = (), label: str = "instant") -> state.StateAt:
        """The state at ``t``; with ``pids``, only those processes."""
        st = state.state_at(self.store, self.run, self.instant(t, label))
        if pids:
            keep = set(pids)
            st.processes = [p for p in st.processes if p.pid in keep]
        return st

    def sql(self, query: str, params: dict[str, str] | None = None, at: int | str | None = None
            ) -> tuple[list[str], list[tuple]]:
        """A reading query (``queries/usersql.py``) with osquery's tables (``queries/osquery.py``)
        over this run: at instant ``at``, or over its whole history. Returns (columns, rows)."""
        from osrewind.queries import osquery, usersql

        at_ns = self.instant(at, "--at") if at is not None else None
        if at_ns is not None and self.run.status == "recording":
            raise UsageError(f"run {self.run.run_id[:8]} is still recording: its intervals are written when it "
                             "ends ('osrewind state --at' answers now)")
        if at_ns is not None:
            osquery.check_indexed(self.store, self.run.run_id)
        return usersql.run(self.store, query, dict(params or {}), views=(at_ns, self.run.run_id))

    def events(self, **filters: Any) -> Iterator[dict]:
        """Filters as ``events_mod.EventFilter``: t_from, t_to, pids, tree, kinds, syscalls, path_glob,
        failed, limit, backwards (t_from/t_to may be instants as strings)."""
        for key in ("t_from", "t_to"):
            if isinstance(filters.get(key), str):
                filters[key] = self.instant(filters[key])
        if filters.get("path_glob"):
            events_mod.check_glob(self.store, filters["path_glob"])
        return events_mod.events(self.store, self.run, events_mod.EventFilter(**filters))

    def process(self, pid: int, start_ns: int | None = None) -> history.ProcRecord:
        """A process of the run by pid (the latest of that pid unless ``start_ns`` says which)."""
        procs = [p for (ppid, s), p in history.processes(self.store, self.run).items()
                 if ppid == pid and (start_ns is None or s == start_ns)]
        if not procs:
            raise UsageError(f"no process {pid} in run {self.run.run_id[:8]}")
        return max(procs, key=lambda p: p.start_ns)

    def tree(self, t_from: int | None = None, t_to: int | None = None) -> list[history.ProcRecord]:
        """The run's process tree; with a window, only the processes alive in it (and their parents,
        to hang them from)."""
        roots = history.process_tree(self.store, self.run)
        if t_from is None and t_to is None:
            return roots
        lo = self.run.start_ns if t_from is None else t_from
        hi = self.run.end_ns if t_to is None else t_to

        def kept(p: history.ProcRecord) -> history.ProcRecord | None:
            children = [c for c in map(kept, p.children) if c is not None]
            alive = p.start_ns <= hi and (not p.end_ns or p.end_ns >= lo)
            return dataclasses.replace(p, children=children) if alive or children else None

        return [k for k in map(kept, roots) if k is not None]

    def lineage(self, path: str, depth: int = 1, all_inputs: bool = False) -> dict:
        return history.lineage(self.store, self.run, path, depth, all_inputs)

    def top(self, t_from: int | str | None = None, t_to: int | str | None = None, limit: int = 10,
            sections: Iterable[str] = top.SECTIONS) -> dict:
        lo = self.run.start_ns if t_from is None else self.instant(t_from)
        hi = self.run.end_ns if t_to is None else self.instant(t_to)
        return top.top(self.store, self.run, lo, hi, limit, tuple(sections))

    def diff(self, other: str | Recording) -> dict:
        other_run = other.run if isinstance(other, Recording) else resolve_run(self.store, other)
        return diff_mod.diff(self.store, self.run, other_run)

    def aligned(self, other: str | Recording) -> list[tuple[int, history.ProcRecord | None, history.ProcRecord | None]]:
        """The two runs' process trees side by side, as ``diff`` aligns them: (depth, a, b) rows in
        tree order, ``None`` where a process has no counterpart."""
        other_run = other.run if isinstance(other, Recording) else resolve_run(self.store, other)
        pairs = diff_mod.align(history.process_tree(self.store, self.run), history.process_tree(self.store, other_run))
        depth: dict[tuple[str, int, int], int] = {}
        rows = []
        for pair in pairs:
            d = 0
            for side, p in (("a", pair.a), ("b", pair.b)):
                if p is not None:
                    d = max(d, depth.get((side, p.ppid, p.parent_start_ns), -1) + 1)
            for side, p in (("a", pair.a), ("b", pair.b)):
                if p is not None:
                    depth[(side, p.pid, p.start_ns)] = d
            rows.append((d, pair.a, pair.b))
        return rows

    def export(self, path: str, window: tuple[int | str, int | str] | None = None, test: str | None = None) -> dict:
        """Write the run to a run file (``osrewind.ingest.runfile``): all of it, or what rewinding a
        window needs (``window``: two instants; ``test``: a test's window). Returns the manifest."""
        from osrewind.ingest import runfile

        span, note = None, ""
        if test is not None:
            t = self.test(test)
            span, note = (t.start_ns, t.end_ns), f"test {t.nodeid} ({t.outcome})"
        elif window is not None:
            span = (self.instant(window[0], "--from"), self.instant(window[1], "--to"))
            if span[0] > span[1]:
                raise UsageError("--from is after --to")
            note = "window"
        return runfile.export(self.store, self.run, path, span, note)

    def perfetto(self, path: str, progress: Callable[[int], None] | None = None) -> int:
        """Write the run as a Perfetto trace (``queries/perfetto.py``); returns its size in bytes."""
        from osrewind.queries import perfetto

        blob = perfetto.build(self, progress)
        try:
            with open(path, "wb") as f:
                f.write(blob)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        return len(blob)

    def reindex(self, progress: Callable[[int], None] | None = None) -> int:
        """Rebuild the run's keyframes and history from its events (needs a store open for writing);
        returns how many keyframes it has."""
        from osrewind.queries import keyframes

        return keyframes.build(self.store, self.run, progress=progress)

    # ------------------------------------------------------------------ for a time scrubber

    def density(self, buckets: int) -> list[int]:
        """Facts per bucket over the run's span, in ``buckets`` equal buckets."""
        return timeline.density(self.store, self.run, buckets)

    def gaps(self) -> list[timeline.Gap]:
        """Where records were lost (the kernel's ring buffer was full)."""
        return timeline.gaps(self.store, self.run)

    def cpu_lanes(self, t_from: int | str, t_to: int | str) -> dict[int, list[timeline.Slice]]:
        """What ran on each CPU over a window."""
        return timeline.cpu_lanes(self.store, self.run, self.instant(t_from), self.instant(t_to))

    def step(self, t: int | str, backwards: bool = False, pid: int | None = None, fd: int | None = None,
             path: str | None = None) -> dict | None:
        """The previous/next fact from ``t`` that touched a process (``pid``), one of its fds
        (``pid`` and ``fd``) or a path; with none of them, the neighbouring fact of the run."""
        return timeline.step(self.store, self.run, self.instant(t), backwards, pid, fd, path)

    def around(self, t: int | str, before: int = 30, after: int = 30, pid: int | None = None
               ) -> tuple[list[dict], list[dict]]:
        """Facts just before (and at) ``t`` and just after it, of one process or of all."""
        return timeline.around(self.store, self.run, self.instant(t), before, after, pid)

    def baseline_uids(self) -> dict[int, int]:
        """The uid of each process of the /proc baseline (children inherit their parent's)."""
        cache = cache_for(self.store)
        return cache.remember(cache.uids, self.run.run_id, lambda: {
            int(r[0]): int(r[3]) for r in named.run(self.store, "snapshot_procs", run=self.run.run_id)})


def runs(db: str | None = None, limit: int = 1000) -> list[RunInfo]:
    from osrewind.ingest.store import Store

    with Store(db, purpose="listing runs (Python API)") as store:
        return list_runs(store, limit)
