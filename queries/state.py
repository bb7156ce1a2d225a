"""Rewind: the processes and their open file descriptors exactly as they were at instant T.

State is derived, never stored: the /proc baseline taken when the run started, then every fact up
to T replayed in order through a small state machine (``Machine``). The rules follow the kernel:

- fork copies the parent's fd table and cwd; a clone with CLONE_THREAD adds a thread, not a process
  (fds belong to the process, not the thread);
- a successful exec keeps the fd table but closes every fd marked close-on-exec, and takes the argv
  recorded at the exec call;
- open/pipe/socket/accept/dup*/fcntl(F_DUPFD*) create fds with their CLOEXEC bit; close removes one
  (even when it reports an error other than EBADF, as Linux does); close_range removes a range or,
  with CLOSE_RANGE_CLOEXEC, marks it; fcntl(F_SETFD) changes the CLOEXEC bit;
- chdir/fchdir change the cwd; relative paths resolve against the cwd or the dirfd at the time;
- rename moves the paths of open fds and cwds, unlink marks them ``(deleted)`` as /proc does;
- a pid is reused: a process is (pid, start_ns), and a fork of a pid that exists replaces it.

``Machine`` holds no SQL and no store: it is fed rows, so it is tested from fixtures and used by the
keyframe work that comes later.
"""

from __future__ import annotations

import bisect
import errno
import os
import posixpath
from collections import OrderedDict
from dataclasses import dataclass, field

from osrewind.probes import syscall_table
from osrewind.probes.records import (
    ANON_NAMES,
    AT_FDCWD,
    CLONE_THREAD,
    CLOSE_RANGE_CLOEXEC,
    FD_CLOEXEC,
    IO_RECVS,
    IO_SENDS,
    KIND_CODES,
    MFD_CLOEXEC,
    O_CLOEXEC,
)
from osrewind.queries import named
from osrewind.queries.runs import RunInfo

K = KIND_CODES
_FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
_EBADF = -errno.EBADF
RENAME_EXCHANGE = 2


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
        return {"pid": self.pid, "start_ns": self.start_ns, "ppid": self.ppid, "orphaned": self.orphaned,
                "comm": self.comm, "exe": self.exe, "argv": self.argv, "cwd": self.cwd, "threads": self.threads,
                "from_snapshot": self.from_snapshot, "exec_ns": self.exec_ns, "run_state": self.run_state,
                "cgroup": self.cgroup,
                "cpus": sorted(set(self.on_cpu.values())),
                "fds": [f.to_json() for f in sorted(self.fds.values(), key=lambda f: f.fd)]}


def _clean(path: str) -> str:
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

    # -------------------------------------------------------------- baseline

    def add_snapshot_proc(self, pid: int, ppid: int, start_ns: int, comm: str, exe: str, argv: list[str],
                          cwd: str, threads: int, cgroup: str = "") -> None:
        self.procs[pid] = Proc(pid, start_ns, ppid, comm, exe, list(argv), cwd, max(1, threads), True)
        self.procs[pid].cgroup = cgroup

    def add_snapshot_fd(self, pid: int, fd: int, target: str, kind: str, flags: int) -> None:
        p = self.procs.get(pid)
        if p is not None:
            p.fds[fd] = Fd(fd, kind, target, bool(flags & O_CLOEXEC), flags, 0)

    # -------------------------------------------------------------- helpers

    def _proc(self, tgid: int, ts: int, comm: str) -> Proc:
        p = self.procs.get(tgid)
        if p is None:  # a process we did not see start (system-wide race): known from now on
            p = Proc(tgid, ts, 0, comm)
            self.procs[tgid] = p
        return p

    def _resolve(self, p: Proc, dfd: int, path: str) -> str:
        if path.startswith("/"):
            return _clean(path)
        if dfd == AT_FDCWD:
            base = p.cwd
        else:
            f = p.fds.get(dfd)
            base = f.target if f is not None else f"<fd {dfd}>"
        return _clean(posixpath.join(base, path)) if base else path

    def _add_fd(self, p: Proc, fd: int, kind: str, target: str, cloexec: bool, ts: int, flags: int = 0,
                ino: int = 0, dev: int = 0) -> None:
        if fd < 0:
            return
        p.fds[fd] = Fd(fd, kind, target, cloexec, flags, ts, None, ino, dev)

    def _exit(self, p: Proc, ts: int) -> None:
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

    # -------------------------------------------------------------- facts

    def apply(self, ts: int, kind: int, tgid: int, tid: int, ret: int, a0: int, a1: int, a2: int, a3: int,
              comm: str, path: str, path2: str, argv: list[str], cpu: int = 0, a5: int = 0, nr: int = 0,
              a4: int = 0) -> None:
        if kind == K["fork"]:
            parent = self._proc(tgid, ts, comm)
            child = int(a1)
            if a2 != -1 and a2 & CLONE_THREAD:
                parent.threads += 1
                return
            # the kernel's exact start and real parent where the probe read them (a4, a5)
            self.procs[child] = Proc(child, int(a4) or ts, int(a5) or tgid, parent.comm, parent.exe,
                                     list(parent.argv), parent.cwd, 1, False, None,
                                     {n: f.copy() for n, f in parent.fds.items()})
            self.procs[child].cgroup = parent.cgroup
            if self.log is not None:
                self.log.born(self.procs[child], parent)
            return
        if kind == K["exec_args"]:
            self._argv[tid] = list(argv)
            return
        if kind == K["exec_fail"]:
            self._argv.pop(tid, None)
            return

        if kind == K["sched_switch"]:
            self._switch(ts, tgid, tid, int(a0), int(a1), int(a2), path, cpu)
            return
        if kind == K["sock_state"]:
            self.tcp[int(a5)] = (TCP_STATES.get(int(a1), str(a1)), path, path2)
            if tgid and a1 in (2, 10):  # SYN_SENT (connect) or LISTEN (listen), in the caller's context
                self._tcp_by_tid[tid] = int(a5)
            return
        if kind == K["syscall"]:
            if nr in self.sends or nr in self.recvs:
                q = self.procs.get(tgid)
                f = q.fds.get(int(a0)) if q is not None else None
                if f is not None and f.sock is not None:
                    if nr in self.sends:
                        f.sock.sent += int(ret)
                    else:
                        f.sock.received += int(ret)
                elif f is not None and f.kind == "file" and self.log is not None and q is not None:
                    # who really moved the bytes: often not the process that opened the file
                    # (a shell opens `> out.txt`, the command it runs writes through the fd)
                    self.log.io(ts, q, "wrote" if nr in self.sends else "read", f.target)
            return
        if kind == K["io"]:  # --aggregate-io: bytes since the last flush on one fd
            q = self.procs.get(tgid)
            f = q.fds.get(int(a0)) if q is not None else None
            sock = f.sock if f is not None else self._closed_socks.get((tgid, int(a0)))
            if sock is not None:  # an fd closed since the flush before still gets its bytes
                sock.sent += int(a1)
                sock.received += int(a2)
            return
        if kind == K["sched_wakeup"]:
            p = self.procs.get(tgid)
            if p is not None and p.run.get(tid) != "running":
                p.run[tid] = "runnable"
            return

        if kind == K["identity"]:  # a baseline process as the kernel keeps it: exact start, real parent
            q = self.procs.get(tgid)
            if q is not None:
                q.start_ns, q.ppid = int(a0), int(a1) or q.ppid
            return
        if kind == K["cgroup"]:  # moved to another cgroup: the v2 hierarchy (0) is the one shown
            if a0 == 0:
                self._proc(tgid, ts, comm).cgroup = path  # (record --cgroup: it may be new to the run)
            return
        if kind == K["wait"]:
            if ret > 0 and a0 >= 0:
                gone = self.exited.get(int(ret))
                if gone is not None:
                    gone.exit_code = _wait_code(int(a0))
            return

        p = self._proc(tgid, ts, comm)
        if kind == K["exec"]:
            p.exe = self._resolve(p, AT_FDCWD, path)
            p.argv = self._argv.pop(int(a0), None) or self._argv.pop(tid, None) or [path]
            p.comm = comm
            p.exec_ns = ts
            if a4:  # the kernel's exact start (a process first seen at its exec, or from /proc's ticks)
                p.start_ns, p.ppid = int(a4), int(a5) or p.ppid
            p.threads = 1
            p.fds = {n: f for n, f in p.fds.items() if not f.cloexec}
            if self.log is not None:
                self.log.execd(p, ts)
        elif kind == K["exit_call"]:
            if a1 == 1 or p.threads <= 1:
                p.exit_code = int(a0) & 0xFF
        elif kind == K["task_exit"]:
            p.run.pop(tid, None)
            p.on_cpu.pop(tid, None)
            if a0:  # group_dead: the last thread is gone, so is the process
                self._exit(p, ts)
            elif tid != tgid and p.threads > 1:
                p.threads -= 1
        elif kind == K["open"]:
            if ret >= 0:  # the kernel's path of what it opened where the probe read it (path2)
                self._add_fd(p, int(ret), "file", path2 or self._resolve(p, int(a0), path), bool(a2 & O_CLOEXEC),
                             ts, int(a2), int(a4), _user_dev(int(a5)))
                if self.log is not None:
                    self.log.file(ts, p, "write" if a2 & WRITE_FLAGS else "read", p.fds[int(ret)].target)
        elif kind == K["close"]:
            if ret != _EBADF:
                gone = p.fds.pop(int(a0), None)
                if gone is not None and gone.sock is not None:
                    self._closed_socks[(tgid, int(a0))] = gone.sock
        elif kind == K["close_range"]:
            if ret == 0:
                hi = int(a1) if a1 >= 0 else 2**31 - 1
                for n in [n for n in p.fds if int(a0) <= n <= hi]:
                    if a2 & CLOSE_RANGE_CLOEXEC:
                        p.fds[n].cloexec = True
                    else:
                        del p.fds[n]
        elif kind == K["dup"]:
            new = int(ret)
            if new >= 0 and new != a0:
                src = p.fds.get(int(a0))
                f = src.copy() if src is not None else Fd(new, "other", f"<copy of fd {a0}>", False)
                f.fd, f.since_ns, f.cloexec = new, ts, bool(a2 & O_CLOEXEC)
                p.fds[new] = f
        elif kind == K["setfd"]:
            if ret == 0 and int(a0) in p.fds:
                p.fds[int(a0)].cloexec = bool(a2 & FD_CLOEXEC)
        elif kind == K["pipe"]:
            if ret == 0:
                cloexec = bool(a2 & O_CLOEXEC)
                if a4:  # the pipe's inode: what /proc shows, the same for both ends
                    ends = (f"pipe:[{a4}]", f"pipe:[{a4}]")
                else:
                    self._pipe_seq += 1
                    ends = (f"pipe:[new #{self._pipe_seq}] read", f"pipe:[new #{self._pipe_seq}] write")
                self._add_fd(p, int(a0), "pipe", ends[0], cloexec, ts, int(a2), int(a4))
                self._add_fd(p, int(a1), "pipe", ends[1], cloexec, ts, int(a2), int(a4))
        elif kind == K["socket"]:
            if ret >= 0:
                self._add_fd(p, int(ret), "socket", _socket_label(int(a0), int(a1)), bool(a1 & O_CLOEXEC), ts,
                             ino=int(a4))
                p.fds[int(ret)].sock = Sock(_family(int(a0)), _stype(int(a1)))
        elif kind == K["socketpair"]:
            if ret == 0:
                label = _socket_label(int(a3), int(a2))
                for fd, ino in ((int(a0), int(a4)), (int(a1), int(a5))):
                    self._add_fd(p, fd, "socket", label, bool(a2 & O_CLOEXEC), ts, ino=ino)
                    p.fds[fd].sock = Sock(_family(int(a3)), _stype(int(a2)))
        elif kind == K["accept"]:
            if ret >= 0:
                listener = p.fds.get(int(a0))
                lsock = listener.sock if listener is not None else None
                label = listener.target if listener is not None else "socket:[accepted]"
                self._add_fd(p, int(ret), "socket", label, bool(a2 & O_CLOEXEC), ts, ino=int(a4))
                sock = Sock(lsock.family, lsock.type) if lsock else Sock("", "")
                sock.remote = path
                if lsock is not None:
                    sock.local = self.tcp[lsock.sk][1] if lsock.sk in self.tcp else lsock.local
                    sock.sk = next((sk for sk, (_st, loc, rem) in reversed(self.tcp.items())
                                    if loc == sock.local and rem == path), 0)
                p.fds[int(ret)].sock = sock
        elif kind in (K["bind"], K["connect"], K["listen"], K["shutdown"], K["sockname"]):
            f = p.fds.get(int(a0))
            ok = ret == 0 or (kind == K["connect"] and ret == -errno.EINPROGRESS)
            if ok and f is not None and f.sock is not None:
                sock = f.sock
                if kind == K["bind"]:
                    sock.local = path
                elif kind == K["sockname"]:
                    if path and not path.startswith("unix:"):
                        sock.local = path  # the port the kernel picked for a bind to port 0
                elif kind == K["connect"]:
                    sock.remote = path
                    sk = self._tcp_by_tid.pop(tid, 0)
                    if sk and sock.proto == "TCP":
                        sock.sk = sk
                elif kind == K["listen"]:
                    sock.listening = True
                    sk = self._tcp_by_tid.pop(tid, 0)
                    if sk and sock.proto == "TCP":
                        sock.sk = sk
                else:
                    sock.shut = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}.get(int(a1), str(a1))
        elif kind == K["anonfd"]:
            if ret >= 0 and int(ret) not in p.fds:
                name = ANON_NAMES.get(int(a1), "anon")
                if name == "memfd":
                    target, cloexec = f"/memfd:{path} (deleted)", bool(a2 & MFD_CLOEXEC)
                elif name == "pidfd":
                    target, cloexec = "anon_inode:[pidfd]", True
                else:
                    target, cloexec = f"anon_inode:[{name}]", bool(a2 & O_CLOEXEC)
                self._add_fd(p, int(ret), "anon", target, cloexec, ts, int(a2))
        elif kind == K["chdir"]:
            if ret == 0:
                p.cwd = path2 or self._resolve(p, AT_FDCWD, path)
        elif kind == K["fchdir"]:
            if ret == 0 and (path2 or int(a0) in p.fds):
                p.cwd = path2 or p.fds[int(a0)].target
        elif kind == K["rename"]:
            if ret == 0:
                old, new = self._resolve(p, int(a0), path), self._resolve(p, int(a1), path2)
                self._moved(old, new, bool(a2 & RENAME_EXCHANGE))
                if self.log is not None:
                    self.log.file(ts, p, "rename", new, old)
        elif kind == K["unlink"]:
            if ret == 0:
                gone = self._resolve(p, int(a0), path)
                self._deleted(gone)
                if self.log is not None:
                    self.log.file(ts, p, "delete", gone)

    def _switch(self, ts: int, tgid: int, tid: int, prev_state: int, next_tid: int, next_tgid: int, next_comm: str,
                cpu: int) -> None:
        self.sched_seen = True
        if tid:  # the task leaving the CPU is in scope
            p = self.procs.get(tgid)
            if p is not None:
                preempted = bool(prev_state & TASK_REPORT_MAX) or prev_state == 0
                p.run[tid] = "runnable" if preempted else "sleeping"
                p.on_cpu.pop(tid, None)
        q = self.procs.get(next_tgid) if next_tgid >= 0 else None
        if q is not None:
            q.run[next_tid] = "running"
            q.on_cpu[next_tid] = cpu
        self.cpus[cpu] = CpuSlot(cpu, next_tid, next_tgid if q is not None else None,
                                 next_comm if next_tid else "idle", ts)

    def _moved(self, old: str, new: str, exchange: bool = False) -> None:
        """rename(old, new) as the kernel applies it to the dentries open fds and cwds hold: what was
        at ``new`` is unlinked (its holders see ``new (deleted)``), unless it is the very file at
        ``old`` (hard links: nothing changes); with RENAME_EXCHANGE the two swap."""
        if old == new:
            return
        at_old, at_new = self._holders(old), self._holders(new)
        ids_old = {(f.dev, f.ino) for _q, f in at_old if f is not None and f.ino}
        if ids_old & {(f.dev, f.ino) for _q, f in at_new if f is not None and f.ino}:
            return  # two names of one inode: rename does nothing
        if exchange:
            self._rebase(at_new, new, old)
        else:
            self._unlinked(at_new, new)
        self._rebase(at_old, old, new)

    def _holders(self, path: str) -> list[tuple[Proc, Fd | None]]:
        """Every file fd (proc, fd) and cwd (proc, None) at ``path`` or beneath it."""
        prefix = path.rstrip("/") + "/"
        out: list[tuple[Proc, Fd | None]] = []
        for q in self.procs.values():
            out += [(q, f) for f in q.fds.values()
                    if f.kind == "file" and not f.gone and (f.target == path or f.target.startswith(prefix))]
            if q.cwd == path or q.cwd.startswith(prefix):
                out.append((q, None))
        return out

    @staticmethod
    def _rebase(holders: list[tuple[Proc, Fd | None]], old: str, new: str) -> None:
        for q, f in holders:
            if f is None:
                q.cwd = new + q.cwd[len(old):]
            else:
                f.target = new + f.target[len(old):]

    def _deleted(self, path: str) -> None:
        """unlink/rmdir of ``path``."""
        self._unlinked(self._holders(path), path)

    @staticmethod
    def _unlinked(holders: list[tuple[Proc, Fd | None]], path: str) -> None:
        """The dentry at ``path`` is unlinked: who holds it (an fd, a cwd) sees ``path (deleted)``, as
        /proc does. What is beneath it (a directory: only deleted files can be) keeps its path for good."""
        for q, f in holders:
            target = q.cwd if f is None else f.target
            if target == path:
                target = path + " (deleted)"
            elif f is not None:
                f.gone = True
            if f is None:
                q.cwd = target
            else:
                f.target = target


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


def _wait_code(status: int) -> int:
    """Exit code in shell convention from a wait status: code, or 128 + signal."""
    sig = status & 0x7F
    if sig == 0:
        return (status >> 8) & 0xFF
    return 128 + sig


def _family(family: int) -> str:
    return _FAMILIES.get(family, f"family {family}")


def _stype(stype: int) -> str:
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


def _user_dev(kdev: int) -> int:
    """The kernel's dev_t (major << 20 | minor) as user space's st_dev."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF) if kdev else 0


def _socket_label(family: int, stype: int) -> str:
    fam = _FAMILIES.get(family, f"family {family}")
    typ = _SOCK_TYPES.get(stype & 0xF, f"type {stype & 0xF}")
    return f"socket:[{fam} {typ}]"


# ------------------------------------------------------------------ from the store


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


def baseline_machine(store, run_id: str) -> Machine:
    """The state when recording started: the /proc baseline."""
    m = Machine()
    for row in named.run(store, "snapshot_procs", run=run_id):
        pid, ppid, start_ns, _uid, comm, exe, argv, cwd, threads, _ts = row[:10]
        m.add_snapshot_proc(int(pid), int(ppid), int(start_ns), comm, exe, list(argv), cwd, int(threads),
                            row[10] if len(row) > 10 else "")
    for pid, fd, target, kind, flags in named.run(store, "snapshot_fds", run=run_id):
        m.add_snapshot_fd(int(pid), int(fd), target, kind, int(flags))
    _io_numbers(m)
    return m


def _io_numbers(m: Machine) -> None:
    m.sends = {n for n in (syscall_table.number(s) for s in IO_SENDS) if n is not None}
    m.recvs = {n for n in (syscall_table.number(s) for s in IO_RECVS) if n is not None}


def apply_rows(m: Machine, cols: dict[str, list], start: int, end: int) -> None:
    """Feed rows [start, end) of a state_events_after result (as column lists: ``named.columns``, whose
    text is ``str`` already) to the machine."""
    ts, kind, tgid, tid, ret = cols["ts"], cols["kind_code"], cols["tgid"], cols["tid"], cols["ret"]
    a0, a1, a2, a3, a4, a5 = cols["a0"], cols["a1"], cols["a2"], cols["a3"], cols["a4"], cols["a5"]
    nr, cpu = cols["nr"], cols["cpu"]
    comm, path, path2, argv = cols["comm"], cols["path"], cols["path2"], cols["argv"]
    for i in range(start, end):
        m.apply(ts[i], kind[i], tgid[i], tid[i], ret[i], a0[i], a1[i], a2[i], a3[i], comm[i], path[i], path2[i],
                argv[i], cpu[i], a5[i], nr[i], a4[i])


def load_machine(store, run: RunInfo, at_ns: int, use_keyframes: bool = True) -> Machine:
    """The state at ``at_ns``: from the last keyframe before it (or the baseline), plus the facts since.

    Between two keyframes the facts are read once and kept per open store (a few intervals), so
    rewinds to nearby instants only rebuild the keyframe and replay from memory. The interval after
    the last keyframe is always read afresh: a recording may still be adding to it."""
    from osrewind.queries import keyframes

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
                                lim=PAGE_ROWS, io_nrs=sorted(m.sends | m.recvs))
        cols = named.columns(table)
        apply_rows(m, cols, 0, table.num_rows)
        if table.num_rows < PAGE_ROWS:
            return m
        c_ts, c_seq = cols["ts"][-1], cols["seq"][-1]


INTERVALS_KEPT = 8


def _interval(store, run: RunInfo, m: Machine, start: tuple[int, int], end: tuple[int, int]) -> dict | None:
    """The facts after keyframe ``start`` up to the instant of keyframe ``end`` (as column lists),
    read once per open store. None if there are too many to keep."""
    cache = getattr(store, "_interval_facts", None)
    if cache is None:
        cache = store._interval_facts = OrderedDict()
    key = (run.run_id, *start)
    cols = cache.get(key)
    if cols is not None:
        cache.move_to_end(key)
        return cols
    table = named.run_arrow(store, "state_events_after", run=run.run_id, at=end[0], c_ts=start[0], c_seq=start[1],
                            lim=INTERVAL_ROWS, io_nrs=sorted(m.sends | m.recvs))
    if table.num_rows >= INTERVAL_ROWS:
        return None
    cols = named.columns(table)
    cache[key] = cols
    while len(cache) > INTERVALS_KEPT:
        cache.popitem(last=False)
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
