"""Rewind: the processes and their open file descriptors exactly as they were at instant T.

State is derived, never stored: the /proc baseline taken when the run started, then every fact up
to T replayed in order through the rewind engine (``queries/engine``: a pure state machine, one
handler per fact kind, following the kernel's rules). A rewind starts from the last keyframe before
T (``queries/keyframes.py``) when the run has them; the facts between two keyframes are read once
per open store and kept in its cache (``queries/cache.py``), so scrubbing nearby instants replays
from memory.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from osrewind.queries import keyframes, named
from osrewind.queries.cache import cache_for
from osrewind.queries.engine import CpuSlot, Machine, Proc
from osrewind.queries.engine.model import socket_target
from osrewind.queries.replay import apply_rows, baseline_machine, syscall_params
from osrewind.queries.runs import RunInfo


@dataclass
class StateAt:
    run: RunInfo
    at_ns: int
    processes: list[Proc]
    exited: list[Proc]       # the latest processes to exit by T (up to EXITED_KEPT), most recent first
    cpus: list[CpuSlot] = field(default_factory=list)   # last context switch on each CPU up to T
    sched: bool = False      # the run has scheduler events

    def to_json(self) -> dict:
        return {
            "run": {"run_id": self.run.run_id, "name": self.run.name},
            "at_ns": self.at_ns,
            "at_offset_ns": self.at_ns - self.run.start_ns,
            "at_wall_ns": self.at_ns + self.run.wall_offset_ns,
            "processes": [p.to_json() for p in self.processes],
            "cpus": [c.to_json() for c in self.cpus] if self.sched else None,
            "exited": [{"pid": p.pid, "start_ns": p.start_ns, "ppid": p.ppid, "argv": p.argv, "exe": p.exe,
                        "exit_code": p.exit_code, "exited_ns": p.exited_ns} for p in self.exited],
        }


def load_machine(store, run: RunInfo, at_ns: int, use_keyframes: bool = True) -> Machine:
    """The state at ``at_ns``: from the last keyframe before it (or the baseline), plus the facts since.

    Between two keyframes the facts are read once and kept per open store (a few intervals), so
    rewinds to nearby instants only rebuild the keyframe and replay from memory. The interval after
    the last keyframe is always read afresh: a recording may still be adding to it."""
    frame = keyframes.frame(store, run, at_ns) if use_keyframes else None
    if frame is not None:
        c_ts, c_seq, doc, nxt = frame
        m = keyframes.machine(doc)
        if nxt is not None:
            cols = _interval(store, run, m, (c_ts, c_seq), nxt)
            if cols is not None:
                apply_rows(m, cols, 0, bisect.bisect_right(cols["ts"], at_ns))
                return m
    else:
        m = baseline_machine(store, run.run_id)
        c_ts, c_seq = -1, 0
    while True:
        table = named.run_arrow(store, "state_events_after", run=run.run_id, at=at_ns, c_ts=c_ts, c_seq=c_seq,
                                lim=PAGE_ROWS, **syscall_params(m))
        cols = named.columns(table)
        apply_rows(m, cols, 0, table.num_rows)
        if table.num_rows < PAGE_ROWS:
            return m
        c_ts, c_seq = cols["ts"][-1], cols["seq"][-1]


def _interval(store, run: RunInfo, m: Machine, start: tuple[int, int], end: tuple[int, int]) -> dict | None:
    """The facts after keyframe ``start`` up to the instant of keyframe ``end`` (as column lists),
    read once per open store. None if there are too many to keep."""
    cache = cache_for(store)
    key = (run.run_id, *start)
    cols = cache.bounded_get(cache.intervals, key)
    if cols is not None:
        return cols
    table = named.run_arrow(store, "state_events_after", run=run.run_id, at=end[0], c_ts=start[0], c_seq=start[1],
                            lim=INTERVAL_ROWS, **syscall_params(m))
    if table.num_rows >= INTERVAL_ROWS:
        return None
    cols = named.columns(table)
    cache.bounded_put(cache.intervals, key, cols)
    return cols


INTERVAL_ROWS = 100_000
PAGE_ROWS = 500_000


def state_at(store, run: RunInfo, at_ns: int, use_keyframes: bool = True) -> StateAt:
    m = load_machine(store, run, at_ns, use_keyframes)
    procs = sorted(m.procs.values(), key=lambda p: (p.start_ns, p.pid))
    for p in procs:
        for f in p.fds.values():
            if f.sock is not None:
                f.target, f.tcp_state = socket_target(f, m.tcp)
    exited = sorted(m.exited.values(), key=lambda p: -(p.exited_ns or 0))
    cpus = [m.cpus[c] for c in sorted(m.cpus)]
    return StateAt(run, at_ns, procs, exited, cpus, m.sched_seen)
