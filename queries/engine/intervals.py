"""Intervals: the rewound state as rows with a time range, for SQL at any instant.

While indexing, an ``IntervalLog`` watches the Machine: after each fact it compares what the fact
can have changed with the rows it holds open, closes the rows that no longer hold (``valid_to_ns``:
the fact's time) and opens the new ones (``valid_from_ns``: the same). A row is one stretch of a
process's life, or of an fd's, in which nothing it shows changed; a row still open when the run
ends is valid to ``OPEN_END``. So the state at T is the rows with ``valid_from_ns <= T <
valid_to_ns``: the facts stamped up to and including T, as ``state --at T`` replays them.

What each fact kind can change is declared once (``SCOPE``): the fact's own process (its fds, cwd,
exe), a fork's parent and child, the fds and cwds a rename or unlink moved or unlinked (the engine
lists them: ``Machine.touched``), or anything (a socket is shared by every fd that refers to it). Kinds not listed change nothing shown here (syscalls, the
scheduler, exit codes, close-on-exec). A rename the engine held back and applies later
(``files.release_held``) is seen by the fact that released it. Renames still held when the run ends
are not applied here: a rewind does not apply them either.

The rows show what a rewind shows, through one projection (``process_row``, ``fd_row``), shared by
nothing else: the agreement tests compare them with ``state --at`` read directly.
"""

from __future__ import annotations

from osrewind.probes.records import KIND_CODES
from osrewind.queries.engine.model import Fd, Proc

OPEN_END = 2**63 - 1   # valid_to_ns of a row that still held when the run ended

# the fd the fact returned / named, the two it made (a0, a1), its process's own row (not its fds),
# its process, a fork's parent (its row) and child, the fds and cwds it moved or unlinked
# (``Machine.touched``), anything
FD_RET, FD_A0, FD_PAIR, ROW, PROC, FORK, HOLDERS, ALL = 1, 2, 3, 4, 5, 6, 7, 8
_K = KIND_CODES
_SYSCALL = _K["syscall"]
SCOPE = {
    **{_K[k]: FD_RET for k in ("open", "dup", "anonfd", "socket", "accept")},
    _K["close"]: FD_A0,
    **{_K[k]: FD_PAIR for k in ("pipe", "socketpair")},
    **{_K[k]: ROW for k in ("chdir", "fchdir", "task_exit", "identity")},   # (the last thread's exit: all)
    **{_K[k]: PROC for k in ("close_range", "exec")},
    _K["fork"]: FORK,
    **{_K[k]: HOLDERS for k in ("rename", "unlink")},
    **{_K[k]: ALL for k in ("bind", "connect", "listen", "shutdown", "sockname", "sock_state")},
}

_FAMILY_CODES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}
_PROTO_CODES = {"TCP": 6, "UDP": 17}


def process_row(p: Proc) -> tuple:
    """(comm, exe, argv, cwd, ppid, threads, uid) of a process as a rewind shows it."""
    return (p.comm, p.exe, tuple(p.argv), p.cwd, p.ppid, p.threads, p.uid)


def split_endpoint(text: str) -> tuple[str, int]:
    """'1.2.3.4:80' -> ('1.2.3.4', 80); '[::1]:443' -> ('::1', 443); anything else (a unix path) as is."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or text.startswith("unix:"):
        return text, 0
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port)


def sock_view(f: Fd, tcp: dict[int, tuple[str, str, str]]) -> tuple[str, str, str]:
    """(local, remote, TCP state) of a socket fd as a rewind reads it out (``model.socket_target``),
    without changing the socket."""
    s = f.sock
    assert s is not None
    local, remote, state = s.local, s.remote, ""
    if s.sk in tcp:
        state, tl, tr = tcp[s.sk]
        local = tl or local
        remote = tr if tr and not tr.endswith(":0") else remote
    return local, remote, state


def fd_row(f: Fd, tcp: dict[int, tuple[str, str, str]]) -> tuple:
    """(since_ns, kind, path, inode, family, protocol, local, remote, state, listening) of an fd.
    ``since_ns`` is in it: an fd opened again under the same number is another life."""
    if f.sock is None:
        return (f.since_ns, f.kind, f.target, f.ino, 0, 0, "", "", "", False)
    s = f.sock
    local, remote, state = sock_view(f, tcp)
    family = _FAMILY_CODES.get(s.family, 0)
    return (f.since_ns, f.kind, "", f.ino, family, _PROTO_CODES.get(s.proto, 0), local, remote, state, s.listening)


class IntervalLog:
    """The rows of a run's intervals: closed ones in ``procs`` / ``fds`` (taken by ``take``), open
    ones held until they close or the run ends (``open_rows``)."""

    def __init__(self) -> None:
        self.live: dict[int, int] = {}                               # pid -> start_ns of its open rows
        self.proc_open: dict[int, tuple[tuple, int]] = {}            # pid -> (row, valid_from)
        self.fd_open: dict[int, dict[int, tuple[tuple, int]]] = {}   # pid -> fd -> (row, valid_from)
        # closed rows: (pid, start_ns, row, valid_from, valid_to); (pid, start_ns, fd, row, from, to)
        self.procs: list[tuple] = []
        self.fds: list[tuple] = []

    # -------------------------------------------------------------- watching the machine

    def begin(self, m, ts: int) -> None:
        """The state a run starts from (its baseline), valid from ``ts``."""
        self.everything(m, ts)

    def after(self, m, f, released: bool) -> None:
        """Fact ``f`` was applied (and, if ``released``, renames held back before it)."""
        tgid, ts = f.tgid, f.ts
        scope = ALL if released else SCOPE.get(f.kind)
        if scope is None and f.kind == _SYSCALL and f.nr in m.uid_calls:
            scope = ROW   # a setuid-family call: the process's uid
        if scope is None:
            self.first_seen(m, tgid, ts)
        elif scope == FD_RET:
            self.fd(m, tgid, int(f.ret), ts)
        elif scope == FD_A0:
            self.fd(m, tgid, int(f.a0), ts)
        elif scope == FD_PAIR:
            self.fd(m, tgid, int(f.a0), ts)
            self.fd(m, tgid, int(f.a1), ts)
        elif scope == ROW:
            self.row(m, tgid, ts)
        elif scope == FORK:
            self.row(m, tgid, ts)             # a thread more, or nothing: the parent's fds stay
            self.process(m, int(f.a1), ts)    # a new process (a new thread is none)
        elif scope == HOLDERS:
            self.holders(m, tgid, ts)
        elif scope == ALL:
            self.everything(m, ts)
        else:
            self.process(m, tgid, ts)

    def first_seen(self, m, pid: int, ts: int) -> None:
        """A process first known by this fact gets its rows."""
        if pid not in self.live and pid in m.procs:
            self.process(m, pid, ts)

    def _same_life(self, m, pid: int, ts: int) -> Proc | None:
        """Process ``pid`` if its rows are open for the life the machine shows; else (the fact began
        or ended a life of it) it is compared whole here, and None."""
        p = m.procs.get(pid)
        if p is None or self.live.get(pid) != p.start_ns:
            self.process(m, pid, ts)
            return None
        return p

    def row(self, m, pid: int, ts: int) -> None:
        """Compare process ``pid``'s own row (cwd, threads, uid, parent: not its fds), or all of it
        when the fact began or ended a life of it."""
        p = self._same_life(m, pid, ts)
        if p is not None:
            self._own_row(pid, p, ts)

    def fd(self, m, pid: int, n: int, ts: int) -> None:
        """Compare fd ``n`` of process ``pid`` (the only thing the fact can have changed)."""
        p = self._same_life(m, pid, ts)
        if p is None:
            return
        f = p.fds.get(n)
        self._fd_row(pid, p.start_ns, self.fd_open[pid], n, None if f is None else fd_row(f, m.tcp), ts)

    def holders(self, m, tgid: int, ts: int) -> None:
        """A rename or unlink: the fds and cwds it moved or unlinked (``Machine.touched``), and its
        own process if this fact is the first to show it."""
        self.first_seen(m, tgid, ts)
        for q, f in m.touched or ():
            if f is None:
                self.row(m, q.pid, ts)   # a cwd: the process's own row shows it
            else:
                self.fd(m, q.pid, f.fd, ts)

    def everything(self, m, ts: int) -> None:
        for pid in [pid for pid in self.live if pid not in m.procs]:
            self._end(pid, ts)
        for pid in m.procs:
            self.process(m, pid, ts)

    def process(self, m, pid: int, ts: int) -> None:
        """Compare process ``pid``'s rows with the machine's state of it."""
        p = m.procs.get(pid)
        start = self.live.get(pid)
        if start is not None and (p is None or p.start_ns != start):
            self._end(pid, ts)   # exited, or another life (or its start corrected by the kernel's)
            start = None
        if p is None:
            return
        if start is None:
            self.live[pid] = p.start_ns
            self.proc_open[pid] = (process_row(p), ts)
            self.fd_open[pid] = {n: (fd_row(f, m.tcp), ts) for n, f in p.fds.items()}
            return
        self._own_row(pid, p, ts)
        held = self.fd_open[pid]
        fds = p.fds
        for n in [n for n in held if n not in fds]:
            self._fd_row(pid, start, held, n, None, ts)
        for n, f in fds.items():
            self._fd_row(pid, start, held, n, fd_row(f, m.tcp), ts)

    def _own_row(self, pid: int, p: Proc, ts: int) -> None:
        """Process ``pid`` (live, this life) now shows ``p``'s own row: its open row closes if that changed."""
        row = process_row(p)
        old, since = self.proc_open[pid]
        if row != old:
            self.procs.append((pid, p.start_ns, old, since, ts))
            self.proc_open[pid] = (row, ts)

    def _fd_row(self, pid: int, start: int, held: dict, n: int, row: tuple | None, ts: int) -> None:
        """Fd ``n`` of process ``pid`` (life ``start``, open rows ``held``) now shows ``row`` (None:
        closed): its open row closes if that changed, a new one opens."""
        was = held.get(n)
        if was is not None and was[0] != row:
            self.fds.append((pid, start, n, was[0], was[1], ts))
            del held[n]
            was = None
        if was is None and row is not None:
            held[n] = (row, ts)

    def _end(self, pid: int, ts: int) -> None:
        start = self.live.pop(pid)
        row, since = self.proc_open.pop(pid)
        self.procs.append((pid, start, row, since, ts))
        for n, (r, s) in self.fd_open.pop(pid).items():
            self.fds.append((pid, start, n, r, s, ts))

    # -------------------------------------------------------------- rows out

    def take(self) -> tuple[list[tuple], list[tuple]]:
        """The rows closed since the last take."""
        procs, fds = self.procs, self.fds
        self.procs, self.fds = [], []
        return procs, fds

    def open_rows(self) -> tuple[list[tuple], list[tuple]]:
        """The rows that still hold (at the run's end), valid to OPEN_END."""
        procs = [(pid, self.live[pid], row, since, OPEN_END) for pid, (row, since) in self.proc_open.items()]
        fds = [(pid, self.live[pid], n, row, since, OPEN_END)
               for pid, held in self.fd_open.items() for n, (row, since) in held.items()]
        return procs, fds
