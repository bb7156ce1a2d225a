"""The /proc baseline taken when a recording starts.

Events say what changed; the baseline says what already was: the scoped processes (pid, parent,
argv, exe, cwd, threads) and their open fds with targets and flags. With it, the state at any
instant of a run is complete, not only what changed after recording began.

Clock: /proc/PID/stat ``starttime`` counts clock ticks since boot on CLOCK_BOOTTIME. Events use
CLOCK_MONOTONIC (bpf_ktime_get_ns). The two differ by the time spent suspended, so a start time is
converted with the current difference: ``start_mono = start_boot - (boottime_now - monotonic_now)``.

Processes race with the snapshot: one that exits mid-read is skipped; unreadable fields stay empty.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class ProcInfo:
    pid: int
    ppid: int
    start_ns: int
    uid: int
    comm: str
    exe: str
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    threads: int = 1


@dataclass
class FdInfo:
    pid: int
    fd: int
    target: str
    kind: str
    flags: int
    pos: int


def fd_kind(target: str) -> str:
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:") or target.startswith("/memfd:"):
        return "anon"
    if target.startswith("/"):
        return "file"
    return "other"


def boot_to_monotonic_ns() -> int:
    """What to subtract from a CLOCK_BOOTTIME value to get CLOCK_MONOTONIC."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, starttime ticks) from /proc/PID/stat; comm may hold spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    lpar, rpar = data.find(b"("), data.rfind(b")")
    comm = data[lpar + 1 : rpar].decode("utf-8", "replace")
    rest = data[rpar + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, starttime field 22
    return comm, int(rest[1]), int(rest[19])


def alive(pid: int) -> bool:
    """True while the process runs: not gone, not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2 : data.rfind(b")") + 3] not in (b"Z", b"X")


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _status(pid: int) -> tuple[int, int]:
    uid, threads = 0, 1
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        pass
    return uid, threads


def all_pids() -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit()]


def parents() -> dict[int, int]:
    out = {}
    for pid in all_pids():
        st = _stat(pid)
        if st is not None:
            out[pid] = st[1]
    return out


def descendants(root_pids: Iterable[int]) -> set[int]:
    """The given pids that are alive, and every live process descending from them."""
    ppid = parents()
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = [p for p in root_pids if p in ppid]
    while stack:
        pid = stack.pop()
        if pid in found or not alive(pid):
            continue
        found.add(pid)
        stack.extend(children.get(pid, []))
    return found


def _fds(pid: int) -> list[FdInfo]:
    out = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        target = _readlink(f"/proc/{pid}/fd/{fd}")
        if not target:
            continue
        flags, pos = 0, 0
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        flags = int(line.split()[1], 8)
                    elif line.startswith("pos:"):
                        pos = int(line.split()[1])
        except OSError:
            pass
        out.append(FdInfo(pid, fd, target, fd_kind(target), flags, pos))
    return sorted(out, key=lambda f: f.fd)


def snapshot(pids: Iterable[int] | None) -> tuple[list[ProcInfo], list[FdInfo]]:
    """Processes (None: every process) and their open fds, read from /proc now."""
    system = pids is None
    wanted = all_pids() if pids is None else sorted(set(pids))
    shift = boot_to_monotonic_ns()
    procs: list[ProcInfo] = []
    fds: list[FdInfo] = []
    for pid in wanted:
        st = _stat(pid)
        if st is None:
            continue
        comm, ppid, start_ticks = st
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        argv = [a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")]
        if argv and argv[-1] == "":
            argv.pop()
        kernel_thread = not raw and (ppid == 2 or pid == 2)
        if kernel_thread and not system:
            continue
        uid, threads = _status(pid)
        start_ns = start_ticks * 1_000_000_000 // CLK_TCK - shift
        procs.append(ProcInfo(pid, ppid, start_ns, uid, comm, _readlink(f"/proc/{pid}/exe"), argv,
                              _readlink(f"/proc/{pid}/cwd"), threads))
        if not kernel_thread:
            fds.extend(_fds(pid))
    return procs, fds
