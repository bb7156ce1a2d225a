"""What a time scrubber needs of a run: event density over its span, where records were lost, what
ran on each CPU in a window, and the neighbouring facts of an instant (stepping one event at a time,
or one event of a process, an fd or a path).

Every answer reads a bounded window of the events table (windows widen only when a narrow one is
empty), so a step costs the same late in a 10M-event run as early in a small one.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass

from osrewind.probes import syscall_table
from osrewind.queries import events as events_mod
from osrewind.queries import named
from osrewind.queries.runs import RunInfo

WIDEN = (10_000_000, 1_000_000_000, 60_000_000_000)  # 10 ms, 1 s, 1 min, then the whole run


def density(store, run: RunInfo, buckets: int, t_from: int | None = None, t_to: int | None = None) -> list[int]:
    """Facts per bucket over [t_from, t_to] (default: the whole run), ``buckets`` equal buckets."""
    lo = run.start_ns if t_from is None else t_from
    hi = max(lo + 1, run.end_ns if t_to is None else t_to)
    buckets = max(1, buckets)
    width = max(1, -(-(hi - lo + 1) // buckets))
    out = [0] * buckets
    for b, n in named.run(store, "event_density", run=run.run_id, t_from=lo, t_to=hi, width=width):
        if 0 <= int(b) < buckets:
            out[int(b)] += int(n)
    return out


@dataclass(frozen=True)
class Gap:
    ts: int
    lost: int


def gaps(store, run: RunInfo) -> list[Gap]:
    """Where the kernel dropped records (noticed at ``ts``): shown as gaps, never hidden."""
    return [Gap(int(ts), int(n)) for ts, n in named.run(store, "run_gaps", run=run.run_id)]


@dataclass(frozen=True)
class Slice:
    """One stretch of a CPU: from ``start`` to ``end`` it ran ``tid`` (0: idle) of process ``pid``
    (None: outside the recording's scope)."""
    cpu: int
    start: int
    end: int
    tid: int
    pid: int | None
    comm: str


def cpu_lanes(store, run: RunInfo, t_from: int, t_to: int, lookback_ns: int = 1_000_000_000) -> dict[int, list[Slice]]:
    """What ran on each CPU over [t_from, t_to], from the context switches (the task on a CPU at
    ``t_from`` is the last one switched in within ``lookback_ns`` before; unknown before that)."""
    table = named.run_arrow(store, "cpu_switches", run=run.run_id, t_from=t_from - lookback_ns, t_to=t_to)
    cols = named.columns(table)
    lanes: dict[int, list[Slice]] = {}
    current: dict[int, tuple[int, int, int | None, str]] = {}
    for cpu, ts, tid, pid, comm in zip(cols["cpu"], cols["ts"], cols["next_tid"], cols["next_pid"],
                                       cols["next_comm"], strict=True):
        cpu, ts, tid = int(cpu), int(ts), int(tid)
        comm = events_mod._text(comm) if tid else "idle"
        who = (tid, None if int(pid) < 0 or not tid else int(pid), comm)
        prev = current.get(cpu)
        if prev is not None and ts > t_from:
            start = max(prev[0], t_from)
            lanes.setdefault(cpu, []).append(Slice(cpu, start, min(ts, t_to), *prev[1:]))
        current[cpu] = (ts, *who)
    for cpu, (ts, tid, pid, comm) in current.items():
        if ts <= t_to:
            lanes.setdefault(cpu, []).append(Slice(cpu, max(ts, t_from), t_to, tid, pid, comm))
    return {c: [s for s in lanes[c] if s.end > s.start or s.start == t_to] for c in sorted(lanes)}


def _windows(run: RunInfo, at: int, backwards: bool) -> Iterator[tuple[int, int]]:
    """Windows [lo, hi] reaching back (or forward) from ``at``, wider each time (``WIDEN``), the
    last one as far as the run goes."""
    end = max(run.end_ns, run.start_ns)
    for w in WIDEN:
        lo, hi = (max(run.start_ns, at - w), at) if backwards else (at, min(end, at + w))
        yield lo, hi
        if (lo <= run.start_ns) if backwards else (hi >= end):
            return
    yield (run.start_ns, at) if backwards else (at, end)


def neighbour(store, run: RunInfo, at: int, backwards: bool) -> int | None:
    """The instant of the fact just before (or after) ``at``, any process; None at either end."""
    for lo, hi in _windows(run, at, backwards):
        rows = named.run(store, "neighbour_event", run=run.run_id, at=at, t_from=lo, t_to=hi,
                         backwards=int(backwards))
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
    return None


# ------------------------------------------------------------------ what touches an fd or a path

_FD_FIRST = {"read", "write", "pread64", "pwrite64", "readv", "writev", "preadv", "pwritev", "preadv2",
             "pwritev2", "lseek", "fstat", "fsync", "fdatasync", "ftruncate", "fchmod", "fchown", "fcntl", "ioctl",
             "getdents64", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg", "flock", "fadvise64",
             "sendfile", "splice", "tee", "copy_file_range", "epoll_ctl", "epoll_wait", "epoll_pwait", "getsockopt",
             "setsockopt", "getpeername", "mmap", "close", "dup", "dup2", "dup3", "accept", "accept4", "connect",
             "bind", "listen", "shutdown", "getsockname"}
_A0_IS_FD = {"close", "dup", "setfd", "fchdir", "bind", "connect", "listen", "shutdown", "sockname", "io"}
_RET_IS_FD = {"open", "socket", "anonfd", "dup", "accept"}


def touches_fd(e: dict, fd: int) -> bool:
    """Whether a fact used, made or closed file descriptor ``fd`` (of its own process)."""
    k = e["kind"]
    if k in _A0_IS_FD and e["a0"] == fd:
        return True
    if k in _RET_IS_FD and e["ret"] == fd:
        return True
    if k == "accept" and e["a0"] == fd:
        return True
    if k in ("pipe", "socketpair") and e["ret"] == 0 and fd in (e["a0"], e["a1"]):
        return True
    if k == "close_range" and e["a0"] <= fd <= (e["a1"] if e["a1"] >= 0 else 2**31):
        return True
    if k == "syscall":
        name = e.get("syscall") or syscall_table.name(e["nr"])
        return name in _FD_FIRST and e["a0"] == fd
    return False


def _glob_escape(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in s)


def touches_path(e: dict, path: str) -> bool:
    """Whether a fact names ``path`` (absolute); relative names match by their trailing components."""
    for p in (e.get("path") or "", e.get("path2") or ""):
        if not p:
            continue
        if p == path or (not p.startswith("/") and path.endswith("/" + posixpath.normpath(p).lstrip("./"))):
            return True
    return False


def step(store, run: RunInfo, at: int, backwards: bool, pid: int | None = None, fd: int | None = None,
         path: str | None = None) -> dict | None:
    """The previous (or next) fact from ``at`` (excluded) that touched a process, one of its fds, or a
    path; None when there is none. With nothing to match, any fact of the run."""
    if pid is None and path is None:
        ts = neighbour(store, run, at, backwards)
        if ts is None:
            return None
        return next(iter(_window(store, run, ts, ts, backwards, None, None)), None)
    glob = "**/" + _glob_escape(posixpath.basename(path.rstrip("/"))) if path else ""
    for lo, hi in _windows(run, at, backwards):
        for e in _window(store, run, lo, hi, backwards, pid, glob):
            if e["ts"] == at:
                continue
            if fd is not None and not touches_fd(e, fd):
                continue
            if path is not None and not touches_path(e, path):
                continue
            return e
    return None


def _window(store, run: RunInfo, lo: int, hi: int, backwards: bool, pid: int | None, glob: str | None
            ) -> Iterator[dict]:
    flt = events_mod.EventFilter(t_from=lo, t_to=hi, pids=[pid] if pid is not None else [], path_glob=glob or "",
                                 backwards=backwards)
    return events_mod.events(store, run, flt)


def around(store, run: RunInfo, at: int, before: int = 30, after: int = 30, pid: int | None = None
           ) -> tuple[list[dict], list[dict]]:
    """Up to ``before`` facts at or before ``at`` (oldest first) and ``after`` facts after it, of one
    process or of all; the window widens until it has them or covers the run."""
    pids = [pid] if pid is not None else []
    older: list[dict] = []
    newer: list[dict] = []
    for lo, _hi in _windows(run, at, True):
        older = list(events_mod.events(store, run, events_mod.EventFilter(
            t_from=lo, t_to=at, pids=pids, limit=before, backwards=True)))
        if len(older) >= before:
            break
    for _lo, hi in _windows(run, at, False):
        newer = list(events_mod.events(store, run, events_mod.EventFilter(
            t_from=at + 1, t_to=hi, pids=pids, limit=after)))
        if len(newer) >= after:
            break
    older.reverse()
    return older, newer
