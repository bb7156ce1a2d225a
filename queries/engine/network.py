"""Network facts: sockets, socketpairs and accepted connections create fds (a socket shared by
every fd that refers to it, so bytes add up per socket); bind, connect, listen, shutdown and
getsockname fill in its ends; TCP state changes (in whatever context the kernel made them) are
kept per kernel socket and linked to the fd whose connect or listen caused them; bytes sent and
received come from the every-syscall stream (read/write/send/recv family) or, with
--aggregate-io, from per-fd sums."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from osrewind.probes.records import KIND_CODES, O_CLOEXEC
from osrewind.queries.engine import process
from osrewind.queries.engine.model import TCP_STATES, Sock, family_name, sock_type_name, socket_label

if TYPE_CHECKING:
    from osrewind.queries.engine.machine import Fact, Machine

K = KIND_CODES
_SYN_SENT, _LISTEN = 2, 10


def on_socket(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret < 0:
        return
    m.add_fd(p, int(f.ret), "socket", socket_label(int(f.a0), int(f.a1)), bool(f.a1 & O_CLOEXEC), f.ts, ino=int(f.a4))
    p.fds[int(f.ret)].sock = Sock(family_name(int(f.a0)), sock_type_name(int(f.a1)))


def on_socketpair(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    label = socket_label(int(f.a3), int(f.a2))
    for fd, ino in ((int(f.a0), int(f.a4)), (int(f.a1), int(f.a5))):
        m.add_fd(p, fd, "socket", label, bool(f.a2 & O_CLOEXEC), f.ts, ino=ino)
        p.fds[fd].sock = Sock(family_name(int(f.a3)), sock_type_name(int(f.a2)))


def on_accept(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret < 0:
        return
    listener = p.fds.get(int(f.a0))
    lsock = listener.sock if listener is not None else None
    label = listener.target if listener is not None else "socket:[accepted]"
    m.add_fd(p, int(f.ret), "socket", label, bool(f.a2 & O_CLOEXEC), f.ts, ino=int(f.a4))
    sock = Sock(lsock.family, lsock.type) if lsock else Sock("", "")
    sock.remote = f.path
    if lsock is not None:
        sock.local = m.tcp[lsock.sk][1] if lsock.sk in m.tcp else lsock.local
        sock.sk = next((sk for sk, (_st, loc, rem) in reversed(m.tcp.items())
                        if loc == sock.local and rem == f.path), 0)
    p.fds[int(f.ret)].sock = sock


def on_endpoint(m: Machine, f: Fact) -> None:
    """bind, connect, listen, shutdown, getsockname."""
    p = m.proc(f)
    fd = p.fds.get(int(f.a0))
    ok = f.ret == 0 or (f.kind == K["connect"] and f.ret == -errno.EINPROGRESS)
    if not ok or fd is None or fd.sock is None:
        return
    sock = fd.sock
    if f.kind == K["bind"]:
        sock.local = f.path
    elif f.kind == K["sockname"]:
        if f.path and not f.path.startswith("unix:"):
            sock.local = f.path  # the port the kernel picked for a bind to port 0
    elif f.kind in (K["connect"], K["listen"]):
        if f.kind == K["connect"]:
            sock.remote = f.path
        else:
            sock.listening = True
        sk = m._tcp_by_tid.pop(f.tid, 0)
        if sk and sock.proto == "TCP":
            sock.sk = sk
    else:
        sock.shut = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}.get(int(f.a1), str(f.a1))


def on_sock_state(m: Machine, f: Fact) -> None:
    m.tcp[int(f.a5)] = (TCP_STATES.get(int(f.a1), str(f.a1)), f.path, f.path2)
    if f.tgid and f.a1 in (_SYN_SENT, _LISTEN):  # in the context of the connect or listen that caused it
        m._tcp_by_tid[f.tid] = int(f.a5)


def on_syscall(m: Machine, f: Fact) -> None:
    """A successful read/write-family call: bytes for its socket; for a file, who really moved the
    bytes (often not the process that opened it: a shell opens ``> out.txt``, the command it runs
    writes through the fd). A successful setuid-family call: the process's real user id."""
    if f.nr in m.uid_calls:
        process.set_uid(m, f, m.uid_calls[f.nr])
        return
    if f.nr not in m.sends and f.nr not in m.recvs:
        return
    q = m.procs.get(f.tgid)
    fd = q.fds.get(int(f.a0)) if q is not None else None
    if fd is None:
        return
    if fd.sock is not None:
        if f.nr in m.sends:
            fd.sock.sent += int(f.ret)
        else:
            fd.sock.received += int(f.ret)
    elif fd.kind == "file" and m.log is not None:
        m.log.io(f.ts, q, "wrote" if f.nr in m.sends else "read", fd.target)


def on_io(m: Machine, f: Fact) -> None:
    """--aggregate-io: bytes since the last flush on one fd (an fd closed since still gets its bytes)."""
    q = m.procs.get(f.tgid)
    fd = q.fds.get(int(f.a0)) if q is not None else None
    sock = fd.sock if fd is not None else m._closed_socks.get((f.tgid, int(f.a0)))
    if sock is not None:
        sock.sent += int(f.a1)
        sock.received += int(f.a2)


HANDLERS = {K["socket"]: on_socket, K["socketpair"]: on_socketpair, K["accept"]: on_accept,
            **{K[k]: on_endpoint for k in ("bind", "connect", "listen", "shutdown", "sockname")},
            K["sock_state"]: on_sock_state, K["syscall"]: on_syscall, K["io"]: on_io}
