"""The recorder's threads behind the spool go to the background while recording, and come back.

The kernel says each thread's nice value (/proc/self/task/TID/stat, field 19): it is read from
there, not from what ``Background`` remembers."""

from __future__ import annotations

import os
import threading

import pytest

from osrewind.ingest.background import NICE, Background


def nice_of(tid: int) -> int:
    with open(f"/proc/self/task/{tid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[16])


class Parked:
    """A thread that waits until told, then (optionally) starts a child thread that waits too."""

    def __init__(self, name: str) -> None:
        self.go, self.child_made, self.done = threading.Event(), threading.Event(), threading.Event()
        self.child: Parked | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        while self.thread.native_id is None:
            pass

    def _run(self) -> None:
        self.go.wait()
        if not self.done.is_set():
            self.child = Parked(self.thread.name + "-child")
            self.child_made.set()
        self.done.wait()

    @property
    def tid(self) -> int:
        return self.thread.native_id

    def stop(self) -> None:
        self.done.set()
        self.go.set()
        if self.child:
            self.child.stop()


@pytest.fixture
def root_only():
    if os.geteuid() != 0:
        pytest.skip("raising a nice value back needs root (recordings run as root)")


def test_only_osrewind_and_native_threads_go_to_the_background_and_come_back(root_only, tmp_path):
    from osrewind.ingest.store import Store

    ours, users = Parked("osrewind-writer"), Parked("a-user-thread")
    store = Store(str(tmp_path / "db"), purpose="recording")   # the engine's native threads
    try:
        store.ensure_schema()
        python = {t.native_id for t in threading.enumerate()}
        native = [int(t) for t in os.listdir("/proc/self/task") if int(t) not in python]
        assert native, "the embedded engine made no threads of its own"
        me = threading.get_native_id()
        before = {tid: nice_of(tid) for tid in (me, ours.tid, users.tid)}
        assert set(before.values()) == {0}

        bg = Background()
        bg.lower()
        assert nice_of(ours.tid) == NICE
        assert all(nice_of(t) == NICE for t in native if os.path.exists(f"/proc/self/task/{t}"))
        assert nice_of(users.tid) == 0 and nice_of(me) == 0 and nice_of(os.getpid()) == 0
        assert set(bg.lowered) >= {ours.tid, *native} - {t for t in native if not os.path.exists(f"/proc/self/task/{t}")}
        assert users.tid not in bg.lowered and me not in bg.lowered

        ours.go.set()   # a thread made by a lowered one starts lowered, unknown to bg so far
        ours.child_made.wait(5)
        assert nice_of(ours.child.tid) == NICE and ours.child.tid not in bg.lowered

        bg.restore()
        assert nice_of(ours.tid) == 0 and nice_of(ours.child.tid) == 0
        assert all(nice_of(t) == 0 for t in native if os.path.exists(f"/proc/self/task/{t}"))
        assert bg.lowered == {}
    finally:
        store.close()
        ours.stop()
        users.stop()


def test_a_real_time_thread_is_left_as_it_is(root_only):
    """The draining thread runs SCHED_FIFO while recording: never moved, whoever calls lower()."""
    drain = Parked("osrewind-drain")
    try:
        os.sched_setscheduler(drain.tid, os.SCHED_FIFO, os.sched_param(1))
        bg = Background()
        bg.lower()
        assert drain.tid not in bg.lowered and nice_of(drain.tid) == 0
        assert os.sched_getscheduler(drain.tid) == os.SCHED_FIFO
    finally:
        os.sched_setscheduler(drain.tid, os.SCHED_OTHER, os.sched_param(0))
        drain.stop()
