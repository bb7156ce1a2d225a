"""While a program is recorded, the recorder's own work runs in the background (nice 19).

The recorded program must run as it would without osrewind. The draining thread runs before it
(real-time, ``Recorder._drain_first``): it only copies ring bytes into the spool. Everything behind
the spool (decoding, the store engine's inserts and merges, the live index) is work that may lag,
so it gets the CPU the recorded program leaves over: the lowest priority of the normal class. On a
flood from one process the other CPU is mostly idle, and the store keeps up while the flood lasts
instead of catching up after it; a program that keeps every CPU busy loses almost nothing to it.

Not ``SCHED_IDLE``, which would suit the idea better: these threads take Python's interpreter lock,
and a thread that holds it must get the CPU again soon, or the draining thread waits for it while
the rings fill. An idle-class holder waited out by CPU-bound programs lost a quarter of an fd-heavy
flood here; nice 19 keeps a small share (about 1.5% of a CPU against one busy program), and lost
nothing.

Which threads: this process's threads that osrewind made (Python threads named ``osrewind-*``)
and the threads of its native libraries (the embedded store engine's pools, Arrow's), never
another Python thread (the live TUI's own), never a thread with a real-time policy (the drain).
The engine makes threads as it needs them, so ``lower()`` is called again while recording; a
thread made by a lowered one starts lowered. ``restore()`` puts every one of them back to the nice
value of the thread that called ``lower()`` (once the recorded program has ended, the store's
catch-up is what the user waits for).
"""

from __future__ import annotations

import os
import threading

NICE = 19


class Background:
    """The recorder's threads moved to nice ``NICE`` (tid -> nice to restore): visible, so a test or
    ``restore()`` can see exactly what was touched."""

    def __init__(self) -> None:
        self.lowered: dict[int, int] = {}
        self._base: int | None = None

    def lower(self) -> None:
        """Move every thread of ours not yet moved to nice NICE. Best effort: a thread that has just
        exited, or a kernel that refuses, leaves it as it was."""
        if self._base is None:
            try:
                self._base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            except OSError:
                return
        for tid in self._ours():
            if tid in self.lowered:
                continue
            try:
                if os.sched_getscheduler(tid) != os.SCHED_OTHER:
                    continue
                if os.getpriority(os.PRIO_PROCESS, tid) != NICE:
                    os.setpriority(os.PRIO_PROCESS, tid, NICE)
            except OSError:
                continue
            self.lowered[tid] = self._base

    def restore(self) -> None:
        """Every moved thread back to its nice value (raising it back needs the privilege a
        recording has; without it they stay in the background)."""
        self.lower()   # the threads made since the last call, which started lowered
        for tid, nice in self.lowered.items():
            try:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
            except OSError:
                pass
        self.lowered.clear()

    @staticmethod
    def _ours() -> list[int]:
        me = threading.get_native_id()
        python = {t.native_id: t.name for t in threading.enumerate()}
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return []
        return [tid for tid in tids if tid != me and tid != os.getpid()
                and (tid not in python or python[tid].startswith("osrewind-"))]
