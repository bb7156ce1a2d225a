"""The /proc baseline taken when a recording starts.

Events say what changed; the baseline says what already was: the scoped processes (pid, parent,
argv, exe, cwd, threads) and their open fds with targets, flags and offsets. With it, the state at
any instant of a run is complete, not only what changed after recording began: a shell started an
hour before ``osrewind record --pid`` still has its argv, cwd and fds at every instant.

Clock: /proc/PID/stat field 22 ``starttime`` counts clock ticks (``SC_CLK_TCK``, usually 100 Hz)
since boot on CLOCK_BOOTTIME. Events are stamped with CLOCK_MONOTONIC (``bpf_ktime_get_ns``). The
two clocks differ by the time the machine spent suspended, so a start time is converted with the
current difference::

    start_mono = starttime * 1e9 / CLK_TCK - (boottime_now - monotonic_now)

Two approximations follow. The kernel truncates to a whole tick, so ``start_ns`` may be up to one
tick (10 ms) earlier than the real start. A process started before a suspend is shifted by that
suspend too (its value may be negative); the kernel keeps no record of which side it was on.

Processes race with the snapshot. One that exits mid-read (its /proc files vanish, or reads fail
with ESRCH) is skipped; fields the reader may not see (EACCES, EPERM) stay empty. Zombies are left
out: they have exited, and no exit event will come for them. Nothing here raises for a racing
process. Only plain os calls are used, no subprocess: a whole-machine snapshot of a few hundred
processes takes tens of milliseconds.

Names, argv, link targets and the cwd are read as bytes and kept losslessly as ``str`` with
surrogateescape (``osrewind.text.from_bytes``): a path that is not UTF-8 is still that path.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from osrewind.text import from_bytes

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000  # task flag (stat field 9) of kernel threads
KTHREADD_PID = 2

# errnos meaning "the process (or fd) is gone", as opposed to "not allowed to look"
_GONE = (errno.ENOENT, errno.ESRCH)


@dataclass
class ProcInfo:
    pid: int  # tgid
    ppid: int
    start_ns: int  # CLOCK_MONOTONIC ns (see module docstring)
    uid: int  # real uid
    comm: str
    exe: str  # '' when unreadable (kernel threads, other users without privilege)
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    threads: int = 1
    cgroup: str = ""  # its path in the cgroup v2 hierarchy ('0::' in /proc/PID/cgroup)


@dataclass
class FdInfo:
    pid: int
    fd: int
    target: str  # '/path', 'pipe:[123]', 'socket:[456]', 'anon_inode:[eventfd]', '/dev/pts/0' ...
    kind: str  # 'file' | 'pipe' | 'socket' | 'anon' | 'other'
    flags: int  # open flags from fdinfo (O_CLOEXEC is 0o2000000)
    pos: int


class _Gone(Exception):
    """The process went away while being read."""


def fd_kind(target: str) -> str:
    """The kind of an fd from its /proc/PID/fd/N link target."""
    if target.startswith("/memfd:"):
        return "anon"
    if target.startswith("/"):
        return "file"
    if target.startswith("pipe:"):
        return "pipe"
    if target.startswith("socket:"):
        return "socket"
    if target.startswith("anon_inode:"):
        return "anon"
    return "other"


def boot_to_monotonic_ns() -> int:
    """What to subtract from a CLOCK_BOOTTIME value to get CLOCK_MONOTONIC (the time spent suspended)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()


def _read(path: str) -> bytes:
    """A whole /proc file with plain os calls (faster than open() for many small files)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _read_or_gone(path: str) -> bytes | None:
    """The file's bytes; None when not allowed to read it; raises _Gone when the process went away."""
    try:
        return _read(path)
    except OSError as exc:
        if exc.errno in _GONE:
            raise _Gone from exc
        return None


def _readlink(path: str) -> str:
    """A link's target, losslessly; '' when unreadable."""
    try:
        return from_bytes(os.readlink(os.fsencode(path)))
    except OSError:
        return ""


@dataclass
class _Stat:
    comm: str
    state: str
    ppid: int
    flags: int
    start_ticks: int


def _parse_stat(data: bytes) -> _Stat | None:
    """Fields of /proc/PID/stat; comm may hold spaces and parentheses, so split after the last ')'."""
    lpar, rpar = data.find(b"("), data.rfind(b")")
    if lpar < 0 or rpar < lpar:
        return None
    rest = data[rpar + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, flags field 9, starttime field 22
    try:
        return _Stat(from_bytes(data[lpar + 1 : rpar]), rest[0].decode(), int(rest[1]),
                     int(rest[6]), int(rest[19]))
    except (IndexError, ValueError):
        return None


def _stat(pid: int) -> _Stat | None:
    try:
        return _parse_stat(_read(f"/proc/{pid}/stat"))
    except OSError:
        return None


def _dead(st: _Stat) -> bool:
    return st.state in ("Z", "X", "x")


def alive(pid: int) -> bool:
    """True while the process runs: not gone, not a zombie waiting to be reaped."""
    st = _stat(pid)
    return st is not None and not _dead(st)


def all_pids() -> list[int]:
    """Every process (thread group) on the machine, in ascending order."""
    return sorted(int(n) for n in os.listdir("/proc") if n.isdigit())


def _live_parents() -> dict[int, int]:
    out = {}
    for pid in all_pids():
        st = _stat(pid)
        if st is not None and not _dead(st):
            out[pid] = st.ppid
    return out


def parents() -> dict[int, int]:
    """pid -> ppid of every process on the machine that is still running."""
    return _live_parents()


def descendants(root_pids: Iterable[int]) -> set[int]:
    """The given pids that are alive, and every live process descending from them (one pass over /proc)."""
    ppid = _live_parents()
    children: dict[int, list[int]] = {}
    for pid, parent in ppid.items():
        children.setdefault(parent, []).append(pid)
    found: set[int] = set()
    stack = [p for p in root_pids if p in ppid]
    while stack:
        pid = stack.pop()
        if pid in found:
            continue
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return found


def _status(data: bytes | None) -> tuple[int, int, int]:
    """(tgid, real uid, threads) from /proc/PID/status; -1 / 0 / 1 where unknown."""
    tgid, uid, threads = -1, 0, 1
    for line in (data or b"").splitlines():
        key, _, value = line.partition(b":")
        try:
            if key == b"Tgid":
                tgid = int(value)
            elif key == b"Uid":
                uid = int(value.split()[0])
            elif key == b"Threads":
                threads = int(value)
                break  # Threads comes after Tgid and Uid
        except (IndexError, ValueError):
            pass
    return tgid, uid, threads


def _fdinfo(data: bytes) -> tuple[int, int]:
    flags = pos = 0
    for line in data.splitlines():
        if line.startswith(b"pos:"):
            pos = int(line.split()[1])
        elif line.startswith(b"flags:"):
            flags = int(line.split()[1], 8)
            break  # pos comes first
    return flags, pos


def _fds(pid: int) -> list[FdInfo]:
    """The open fds of one process; empty when it went away or may not be inspected."""
    out: list[FdInfo] = []
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for name in names:
        fd = int(name)
        try:
            target = from_bytes(os.readlink(f"/proc/{pid}/fd/{fd}".encode()))
        except OSError:
            continue  # closed meanwhile (or not allowed: then nothing is known of it)
        try:
            flags, pos = _fdinfo(_read(f"/proc/{pid}/fdinfo/{fd}"))
        except OSError as exc:
            if exc.errno in _GONE:
                continue  # closed between the readlink and here
            flags = pos = 0
        except (IndexError, ValueError):
            flags = pos = 0
        out.append(FdInfo(pid, fd, target, fd_kind(target), flags, pos))
    out.sort(key=lambda f: f.fd)
    return out


def _proc(pid: int, shift: int, system: bool) -> tuple[ProcInfo, bool] | None:
    """One process and whether it is a kernel thread; None when gone, a zombie, or (scoped) a kernel thread."""
    try:
        st = _parse_stat(_read(f"/proc/{pid}/stat"))
    except OSError:
        return None
    if st is None or _dead(st):
        return None
    try:
        raw = _read_or_gone(f"/proc/{pid}/cmdline")
        status = _read_or_gone(f"/proc/{pid}/status")
    except _Gone:
        return None
    raw = raw or b""
    kthread = bool(st.flags & PF_KTHREAD) or (not raw and (st.ppid == KTHREADD_PID or pid == KTHREADD_PID))
    if kthread and not system:
        return None
    argv = [from_bytes(a) for a in raw.split(b"\0")]
    if argv and argv[-1] == "":
        argv.pop()
    _tgid, uid, threads = _status(status)
    exe = "" if kthread else _readlink(f"/proc/{pid}/exe")
    cwd = "" if kthread else _readlink(f"/proc/{pid}/cwd")
    start_ns = st.start_ticks * 1_000_000_000 // CLK_TCK - shift
    return ProcInfo(pid, st.ppid, start_ns, uid, st.comm, exe, argv, cwd, threads, _cgroup(pid)), kthread


def _cgroup(pid: int) -> str:
    """The process's cgroup v2 path ('' when unreadable or not in one)."""
    try:
        data = _read(f"/proc/{pid}/cgroup")
    except OSError:
        return ""
    for line in data.split(b"\n"):
        if line.startswith(b"0::"):
            return from_bytes(line[3:])
    return ""


class CgroupProblem(Exception):
    """A path that is not a cgroup directory."""


def cgroup_dir(path: str) -> tuple[int, str]:
    """(hierarchy id, path inside the hierarchy) of a cgroup directory such as
    ``/sys/fs/cgroup/system.slice/x.service`` (cgroup v2: hierarchy 0) or ``/sys/fs/cgroup/memory/x``
    (a v1 hierarchy: its id from /proc/self/cgroup), as the kernel's cgroup tracepoints name them."""
    real = os.path.realpath(path)
    if not os.path.isfile(os.path.join(real, "cgroup.procs")):
        raise CgroupProblem(f"{path} is not a cgroup directory (it has no cgroup.procs)")
    best = None
    for line in _read("/proc/self/mountinfo").decode(errors="replace").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        root, mount = fields[3], fields[4]
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and (best is None or len(mount) > len(best[1])):
            best = (tail[0], mount, root, tail[2])
    if best is None:
        raise CgroupProblem(f"{path} is not on a cgroup file system")
    fstype, mount, root, options = best
    inside = os.path.normpath(os.path.join(root, os.path.relpath(real, mount)))  # root: the mount's own
    if fstype == "cgroup2":
        return 0, inside
    controllers = {o for o in options.split(",") if o not in ("rw", "ro") and not o.startswith(("release_agent",
                                                                                                "clone_children"))}
    for line in _read("/proc/self/cgroup").decode(errors="replace").splitlines():
        hid, _, rest = line.partition(":")
        names = rest.partition(":")[0]
        if names and set(names.split(",")) <= controllers and controllers & set(names.split(",")):
            return int(hid), inside
    raise CgroupProblem(f"cannot tell which cgroup hierarchy {path} belongs to")


def cgroup_members(path: str) -> set[int]:
    """The processes in the cgroup directory ``path`` and the cgroups beneath it, now."""
    out: set[int] = set()
    for here, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                out.update(int(x) for x in _read(os.path.join(here, "cgroup.procs")).split())
            except OSError:
                continue  # removed meanwhile
    return out


def _tgids(pids: Iterable[int]) -> list[int]:
    """The thread groups of the given ids (a thread id stands for its process), deduplicated, ascending."""
    out = set()
    for pid in pids:
        try:
            tgid, _uid, _threads = _status(_read(f"/proc/{pid}/status"))
        except OSError:
            continue  # gone
        out.add(tgid if tgid > 0 else pid)
    return sorted(out)


def snapshot(pids: Iterable[int] | None) -> tuple[list[ProcInfo], list[FdInfo]]:
    """Processes and their open fds, read from /proc now.

    ``pids`` None means every process on the machine, kernel threads included (without fds);
    otherwise the given processes only (thread ids stand for their process; kernel threads,
    zombies and pids that no longer exist are left out).
    """
    system = pids is None
    wanted = all_pids() if pids is None else _tgids(pids)
    shift = boot_to_monotonic_ns()
    procs: list[ProcInfo] = []
    fds: list[FdInfo] = []
    for pid in wanted:
        got = _proc(pid, shift, system)
        if got is None:
            continue
        info, kthread = got
        procs.append(info)
        if not kthread:
            fds.extend(_fds(pid))
    return procs, fds
