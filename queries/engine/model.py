"""The rewind engine's model: what a process, an fd and a socket are at an instant, the history
an indexing run keeps, and the small pure helpers the fact handlers share. No store, no cache."""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field

_FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}


TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}


@dataclass(slots=True)
class Sock:
    """One socket, shared by every fd that refers to it (dup, fork): bytes add up per socket."""
    family: str                 # AF_INET, AF_INET6, AF_UNIX, ...
    type: str                   # SOCK_STREAM, SOCK_DGRAM, ...
    local: str = ""
    remote: str = ""
    sk: int = 0                 # kernel socket address: links the fd to TCP state changes
    listening: bool = False
    shut: str = ""              # SHUT_RD / SHUT_WR / SHUT_RDWR
    sent: int = 0
    received: int = 0

    @property
    def proto(self) -> str:
        if self.family == "AF_UNIX":
            return "UNIX"
        return {"SOCK_STREAM": "TCP", "SOCK_DGRAM": "UDP"}.get(self.type, self.type)


@dataclass(slots=True)
class Fd:
    fd: int
    kind: str               # file | pipe | socket | anon | other
    target: str             # path, or pipe:[...] / socket:[...] / anon_inode:[...]
    cloexec: bool
    flags: int = 0          # open flags where known
    since_ns: int = 0       # when this fd came to be (0: before recording)
    sock: Sock | None = None
    ino: int = 0            # the kernel's inode of what the fd refers to (0: not known)
    dev: int = 0            # and its device (st_dev), for files
    gone: bool = False      # a deleted file whose directory was removed or replaced: no rename moves it
    tcp_state: str = ""     # filled in when the state is read out

    def copy(self) -> Fd:
        return Fd(self.fd, self.kind, self.target, self.cloexec, self.flags, self.since_ns, self.sock, self.ino,
                  self.dev, self.gone)

    def to_json(self) -> dict:
        d = {"fd": self.fd, "kind": self.kind, "target": self.target, "cloexec": self.cloexec,
             "flags": self.flags, "since_ns": self.since_ns, "inode": self.ino or None}
        if self.sock is not None:
            s = self.sock
            d["socket"] = {"proto": s.proto, "family": s.family, "type": s.type, "local": s.local,
                           "remote": s.remote, "tcp_state": self.tcp_state or None, "listening": s.listening,
                           "shutdown": s.shut or None, "bytes_sent": s.sent, "bytes_received": s.received}
        return d


@dataclass(slots=True)
class Proc:
    pid: int
    start_ns: int
    ppid: int
    comm: str = ""
    exe: str = ""
    argv: list[str] = field(default_factory=list)
    cwd: str = ""
    threads: int = 1
    from_snapshot: bool = False
    exec_ns: int | None = None
    fds: dict[int, Fd] = field(default_factory=dict)
    orphaned: bool = False          # its parent exited: the kernel re-parented it to a reaper
    exit_code: int | None = None    # from exit_group(), or the parent's wait status
    exited_ns: int | None = None
    run: dict[int, str] = field(default_factory=dict)   # tid -> running|runnable|sleeping (scheduler)
    on_cpu: dict[int, int] = field(default_factory=dict)  # tid -> cpu, for running threads
    cgroup: str = ""                # its cgroup v2 path ('' when not known)
    uid: int = -1                   # its real user id (-1: not known): the baseline's, a fork's parent's,
                                    # then what its setuid/setreuid/setresuid calls set

    @property
    def run_state(self) -> str:
        """running if a thread is on a CPU, else runnable if one waits for a CPU, else sleeping;
        unknown when the run has no scheduler events for it."""
        states = set(self.run.values())
        for s in ("running", "runnable", "sleeping"):
            if s in states:
                return s
        return "unknown"

    def to_json(self) -> dict:
        return {"pid": self.pid, "start_ns": self.start_ns, "ppid": self.ppid, "uid": self.uid, "orphaned": self.orphaned,
                "comm": self.comm, "exe": self.exe, "argv": self.argv, "cwd": self.cwd, "threads": self.threads,
                "from_snapshot": self.from_snapshot, "exec_ns": self.exec_ns, "run_state": self.run_state,
                "cgroup": self.cgroup,
                "cpus": sorted(set(self.on_cpu.values())),
                "fds": [f.to_json() for f in sorted(self.fds.values(), key=lambda f: f.fd)]}


def clean_path(path: str) -> str:
    if not path:
        return path
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


WRITE_FLAGS = 0o1 | 0o2 | 0o100 | 0o1000  # O_WRONLY | O_RDWR | O_CREAT | O_TRUNC


class HistoryLog:
    """What indexing keeps of a whole run beyond keyframes: every process (birth, execs, exit) and
    every use of a file by path (opened to read or write, renamed, deleted), paths resolved."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []                     # in birth order; objects keep their final state
        self.parents: dict[int, tuple[int, int]] = {}   # id(proc) -> (parent pid, parent start_ns)
        self.execs: dict[int, list[tuple[int, str, list[str]]]] = {}  # id(proc) -> [(ts, exe, argv)]
        self.files: list[tuple[int, int, int, str, str, str]] = []  # ts, pid, start_ns, op, path, path2
        self._io_seen: set[tuple[int, str, str]] = set()

    def adopt(self, p: Proc) -> None:
        if id(p) not in self.parents:
            self.procs.append(p)
            self.parents[id(p)] = (p.ppid, 0)
            self.execs[id(p)] = [(p.start_ns, p.exe, list(p.argv))]

    def born(self, p: Proc, parent: Proc) -> None:
        self.procs.append(p)
        self.parents[id(p)] = (parent.pid, parent.start_ns)
        self.execs[id(p)] = []

    def execd(self, p: Proc, ts: int) -> None:
        self.adopt(p)
        self.execs[id(p)].append((ts, p.exe, list(p.argv)))

    def exited(self, p: Proc) -> None:
        self.adopt(p)

    def io(self, ts: int, p: Proc, op: str, path: str) -> None:
        """The first read or write through an fd, per process and path."""
        key = (id(p), op, path)
        if key not in self._io_seen:
            self._io_seen.add(key)
            self.file(ts, p, op, path)

    def file(self, ts: int, p: Proc, op: str, path: str, path2: str = "") -> None:
        self.adopt(p)
        self.files.append((ts, p.pid, p.start_ns, op, path, path2))


EXITED_KEPT = 64  # exited processes remembered (their exit codes, reaped by a later wait)


TASK_REPORT_MAX = 0x100  # sched_switch prev_state bit: the task was preempted, it stays runnable


@dataclass(slots=True)
class CpuSlot:
    cpu: int
    tid: int                # 0: idle
    tgid: int | None        # None: a task outside the recording's scope
    comm: str
    since_ns: int

    def to_json(self) -> dict:
        return {"cpu": self.cpu, "tid": self.tid, "pid": self.tgid, "comm": self.comm, "in_scope": self.tgid is not None,
                "since_ns": self.since_ns}


def wait_code(status: int) -> int:
    """Exit code in shell convention from a wait status: code, or 128 + signal."""
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF
    return 128 + sig


def family_name(family: int) -> str:
    return _FAMILIES.get(family, f"family {family}")


def sock_type_name(stype: int) -> str:
    return _SOCK_TYPES.get(stype & 0xF, f"type {stype & 0xF}")


def socket_target(f: Fd, tcp: dict[int, tuple[str, str, str]]) -> tuple[str, str]:
    """(target, TCP state) of a socket fd as of now: endpoints and state from its latest TCP change."""
    s = f.sock
    assert s is not None
    state = ""
    if s.sk in tcp:
        state, local, remote = tcp[s.sk]
        s.local, s.remote = local or s.local, remote if remote and not remote.endswith(":0") else s.remote
    ends = s.local or "?"
    if s.remote:
        ends += f" -> {s.remote}"
    if s.listening:
        ends += " (listening)"
    extra = f" {state}" if state else ""
    return f"socket:[{s.proto} {ends}{extra}]", state


def user_dev(kdev: int) -> int:
    """The kernel's dev_t (major << 20 | minor) as user space's st_dev."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF) if kdev else 0


def socket_label(family: int, stype: int) -> str:
    fam = _FAMILIES.get(family, f"family {family}")
    typ = _SOCK_TYPES.get(stype & 0xF, f"type {stype & 0xF}")
    return f"socket:[{fam} {typ}]"


# ------------------------------------------------------------------ from the store
