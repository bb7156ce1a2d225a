"""The rewind state machine: processes, fd tables, cwds, sockets and CPUs, advanced one recorded fact
at a time. Pure: it is fed facts (no store, no cache), so it is tested from fixtures.

Each fact kind has one handler, registered by its family's module (``process``, ``files``,
``network``, ``scheduler``); :meth:`Machine.feed` looks the handler up by kind. The handlers follow
the kernel's rules; each module's docstring says which.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import NamedTuple

from osrewind.probes import syscall_table
from osrewind.probes.records import AT_FDCWD, IO_RECVS, IO_SENDS, O_CLOEXEC
from osrewind.queries.engine import files
from osrewind.queries.engine.model import EXITED_KEPT, CpuSlot, Fd, HistoryLog, Proc, Sock, clean_path

ALIASES_KEPT = 256
UID_CALLS = ("setuid", "setreuid", "setresuid")   # the calls that set a process's real user id


class Fact(NamedTuple):
    """One recorded fact, as the events table holds it (see probes/record.bpf.c for what a0..a5
    mean per kind)."""
    ts: int
    kind: int
    tgid: int
    tid: int
    ret: int
    a0: int
    a1: int
    a2: int
    a3: int
    comm: str
    path: str
    path2: str
    argv: list[str]
    cpu: int = 0
    a5: int = 0
    nr: int = 0
    a4: int = 0


Handler = Callable[["Machine", Fact], None]


class Machine:
    """Processes and fd tables, advanced one recorded fact at a time."""

    def __init__(self) -> None:
        self.procs: dict[int, Proc] = {}
        self.exited: dict[int, Proc] = {}      # the last EXITED_KEPT processes to exit, by pid
        self._argv: dict[int, list[str]] = {}  # argv captured at exec entry, by tid
        self._pipe_seq = 0
        self.cpus: dict[int, CpuSlot] = {}     # what each CPU switched to last
        self.sched_seen = False
        self.tcp: dict[int, tuple[str, str, str]] = {}  # sock address -> (state, local, remote)
        self._tcp_by_tid: dict[int, int] = {}           # socket a task's connect/listen just moved
        self._closed_socks: dict[tuple[int, int], Sock] = {}  # last socket closed at (pid, fd)
        self.log: HistoryLog | None = None               # set while indexing: births, execs, file use
        self.sends: set[int] = set()                    # syscall numbers that send / receive bytes
        self.recvs: set[int] = set()
        self.uid_calls: dict[int, str] = {}             # syscall number -> setuid | setreuid | setresuid
        # directories reached through a symlink, learned from chdirs and directory opens (they say
        # the path passed and the kernel's): passed -> kernel. Renames and unlinks say only the first.
        self.aliases: dict[str, str] = {}
        # renames in the order they took effect (engine/files.py): all numbered up to rename_mark have
        # come, and these above it; renames held back, each (fact, source, target), oldest first
        self.rename_mark = 0
        self.renames_seen: set[int] = set()
        self.held: list[tuple[Fact, str, str]] = []
        self.intervals = None   # an IntervalLog while indexing (engine/intervals.py): told of every fact
        # while indexing, the fds and cwds (proc, fd or None) the fact being applied moved or unlinked
        # (files.moved, files.on_unlink): all that a rename or unlink changed; None while rewinding
        self.touched: list[tuple[Proc, Fd | None]] | None = None

    def set_io_numbers(self) -> None:
        """The syscalls whose successful calls move bytes (this machine's architecture's numbers)."""
        self.sends = {n for n in (syscall_table.number(s) for s in IO_SENDS) if n is not None}
        self.recvs = {n for n in (syscall_table.number(s) for s in IO_RECVS) if n is not None}
        self.uid_calls = {n: s for s in UID_CALLS if (n := syscall_table.number(s)) is not None}

    # -------------------------------------------------------------- baseline

    def add_snapshot_proc(self, pid: int, ppid: int, start_ns: int, comm: str, exe: str, argv: list[str],
                          cwd: str, threads: int, cgroup: str = "", uid: int = -1) -> None:
        self.procs[pid] = Proc(pid, start_ns, ppid, comm, exe, list(argv), cwd, max(1, threads), True)
        self.procs[pid].cgroup = cgroup
        self.procs[pid].uid = uid

    def add_snapshot_fd(self, pid: int, fd: int, target: str, kind: str, flags: int) -> None:
        p = self.procs.get(pid)
        if p is not None:
            p.fds[fd] = Fd(fd, kind, target, bool(flags & O_CLOEXEC), flags, 0)

    # -------------------------------------------------------------- facts

    def apply(self, ts: int, kind: int, tgid: int, tid: int, ret: int, a0: int, a1: int, a2: int, a3: int,
              comm: str, path: str, path2: str, argv: list[str], cpu: int = 0, a5: int = 0, nr: int = 0,
              a4: int = 0) -> None:
        """One fact, given field by field."""
        self.feed(Fact(ts, kind, tgid, tid, ret, a0, a1, a2, a3, comm, path, path2, argv, cpu, a5, nr, a4))

    def feed(self, f: Fact) -> None:
        """One fact: its kind's handler (a kind without one changes nothing)."""
        released = False
        if self.held and f.ts - self.held[0][0].ts > files.HOLD_NS:
            files.release_held(self, f.ts)
            released = True
        handler = HANDLERS.get(f.kind)
        if self.intervals is None:   # rewinding: nobody to tell
            if handler is not None:
                handler(self, f)
            return
        self.touched = []
        if handler is not None:
            held = len(self.held)
            handler(self, f)
            released = released or len(self.held) < held   # this fact let held renames apply
        self.intervals.after(self, f, released)
        self.touched = None

    def settle(self) -> None:
        """Apply the renames still held back (the recording has ended: nothing more will come)."""
        files.release_held(self, None)

    # -------------------------------------------------------------- what handlers share

    def proc(self, f: Fact) -> Proc:
        """The fact's process; one not seen starting (a system-wide race) is known from now on."""
        p = self.procs.get(f.tgid)
        if p is None:
            p = Proc(f.tgid, f.ts, 0, f.comm)
            self.procs[f.tgid] = p
        return p

    def resolve(self, p: Proc, dfd: int, path: str) -> str:
        """A path as the program passed it, made absolute against its cwd or dirfd at the time."""
        if path.startswith("/"):
            return clean_path(path)
        if dfd == AT_FDCWD:
            base = p.cwd
        else:
            f = p.fds.get(dfd)
            base = f.target if f is not None else f"<fd {dfd}>"
        return clean_path(posixpath.join(base, path)) if base else path

    def learn(self, passed: str, kernel: str) -> None:
        """The directory ``passed`` (made absolute as a string) is ``kernel`` to the kernel. Only
        directories: of a file, the last component may be the symlink itself
        (/usr/share/locale/locale.alias -> /etc/locale.alias), which says nothing of its directory."""
        if not passed.startswith("/") or not kernel.startswith("/") or kernel.endswith(" (deleted)"):
            return
        if passed != kernel:
            self.aliases.pop(passed, None)
            self.aliases[passed] = kernel
            while len(self.aliases) > ALIASES_KEPT:
                del self.aliases[next(iter(self.aliases))]
        else:
            self.aliases.pop(passed, None)  # not (or no longer) a symlink

    def unalias(self, path: str) -> str:
        """A path made absolute as a string, with a directory on the way that is known to be reached
        through a symlink replaced by where the kernel found it (the last component is left alone:
        unlinking a symlink removes the link)."""
        if not self.aliases:
            return path
        head, last = posixpath.split(path)
        tail = "/" + last
        while head not in ("/", ""):
            if head in self.aliases:
                return self.aliases[head] + tail
            head, last = posixpath.split(head)
            tail = "/" + last + tail
        return path

    @staticmethod
    def add_fd(p: Proc, fd: int, kind: str, target: str, cloexec: bool, ts: int, flags: int = 0,
               ino: int = 0, dev: int = 0) -> None:
        if fd < 0:
            return
        p.fds[fd] = Fd(fd, kind, target, cloexec, flags, ts, None, ino, dev)

    def exit(self, p: Proc, ts: int) -> None:
        """The process is gone: its fds closed, remembered among the last EXITED_KEPT, children orphaned."""
        p.exited_ns = ts
        p.fds = {}  # the kernel closes them all at exit; nothing refers to them any more
        p.run.clear()
        p.on_cpu.clear()
        if self.log is not None:
            self.log.exited(p)
        self.procs.pop(p.pid, None)
        self.exited.pop(p.pid, None)
        self.exited[p.pid] = p
        if len(self.exited) > EXITED_KEPT:  # bounded: state stays O(live processes), not O(history)
            del self.exited[next(iter(self.exited))]
        for child in self.procs.values():
            if child.ppid == p.pid:
                child.orphaned = True


def _handlers() -> dict[int, Handler]:
    from osrewind.queries.engine import network, process, scheduler

    table: dict[int, Handler] = {}
    for family in (process, files, network, scheduler):
        overlap = table.keys() & family.HANDLERS.keys()
        assert not overlap, f"two handlers for kinds {overlap}"
        table.update(family.HANDLERS)
    return table


HANDLERS: dict[int, Handler] = _handlers()   # kind code -> handler
