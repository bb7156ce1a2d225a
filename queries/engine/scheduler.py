"""Scheduler facts: a context switch says who left a CPU (preempted: still runnable; otherwise
asleep) and who came on; a wakeup makes a sleeping thread runnable. What ran on each CPU last is
kept per CPU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from osrewind.probes.records import KIND_CODES
from osrewind.queries.engine.model import TASK_REPORT_MAX, CpuSlot

if TYPE_CHECKING:
    from osrewind.queries.engine.machine import Fact, Machine

K = KIND_CODES


def on_switch(m: Machine, f: Fact) -> None:
    """a0 prev_state, a1 next tid, a2 next tgid (-1: not in scope), path the next task's name."""
    m.sched_seen = True
    prev_state, next_tid, next_tgid = int(f.a0), int(f.a1), int(f.a2)
    if f.tid:  # the task leaving the CPU is in scope
        p = m.procs.get(f.tgid)
        if p is not None:
            preempted = bool(prev_state & TASK_REPORT_MAX) or prev_state == 0
            p.run[f.tid] = "runnable" if preempted else "sleeping"
            p.on_cpu.pop(f.tid, None)
    q = m.procs.get(next_tgid) if next_tgid >= 0 else None
    if q is not None:
        q.run[next_tid] = "running"
        q.on_cpu[next_tid] = f.cpu
    m.cpus[f.cpu] = CpuSlot(f.cpu, next_tid, next_tgid if q is not None else None,
                            f.path if next_tid else "idle", f.ts)


def on_wakeup(m: Machine, f: Fact) -> None:
    p = m.procs.get(f.tgid)
    if p is not None and p.run.get(f.tid) != "running":
        p.run[f.tid] = "runnable"


HANDLERS = {K["sched_switch"]: on_switch, K["sched_wakeup"]: on_wakeup}
