"""fd and file facts: open/pipe/dup*/fcntl(F_DUPFD*)/anonymous fds create fds with their
close-on-exec bit; close removes one (even when it reports an error other than EBADF, as Linux
does); close_range removes a range or, with CLOSE_RANGE_CLOEXEC, marks it; fcntl(F_SETFD) changes
the bit; chdir/fchdir change the cwd. Where the probe read what the kernel opened (its path, inode,
device; pipes by inode), that wins over the path the program passed, which is otherwise resolved
against the cwd or the dirfd at the time. rename moves the paths of open fds and cwds (what it
replaced shows ``path (deleted)``, unless both names were links of one inode; RENAME_EXCHANGE
swaps), unlink and rmdir mark their holders ``(deleted)``, as /proc does."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from osrewind.probes.records import (
    ANON_NAMES,
    AT_FDCWD,
    CLOSE_RANGE_CLOEXEC,
    FD_CLOEXEC,
    KIND_CODES,
    MFD_CLOEXEC,
    O_CLOEXEC,
)
from osrewind.queries.engine.model import WRITE_FLAGS, Fd, Proc, user_dev

if TYPE_CHECKING:
    from osrewind.queries.engine.machine import Fact, Machine

K = KIND_CODES
_EBADF = -errno.EBADF
RENAME_EXCHANGE = 2
O_DIRECTORY = 0o200000


def on_open(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret < 0:
        return
    # the kernel's path of what it opened where the probe read it (path2)
    passed = m.resolve(p, int(f.a0), f.path)
    m.add_fd(p, int(f.ret), "file", f.path2 or passed, bool(f.a2 & O_CLOEXEC), f.ts,
             int(f.a2), int(f.a4), user_dev(int(f.a5)))
    if f.path2 and f.a2 & O_DIRECTORY:
        m.learn(passed, f.path2)
    if m.log is not None:
        m.log.file(f.ts, p, "write" if f.a2 & WRITE_FLAGS else "read", p.fds[int(f.ret)].target)


def on_close(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != _EBADF:
        gone = p.fds.pop(int(f.a0), None)
        if gone is not None and gone.sock is not None:
            m._closed_socks[(f.tgid, int(f.a0))] = gone.sock


def on_close_range(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    hi = int(f.a1) if f.a1 >= 0 else 2**31 - 1
    for n in [n for n in p.fds if int(f.a0) <= n <= hi]:
        if f.a2 & CLOSE_RANGE_CLOEXEC:
            p.fds[n].cloexec = True
        else:
            del p.fds[n]


def on_dup(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    new = int(f.ret)
    if new >= 0 and new != f.a0:
        src = p.fds.get(int(f.a0))
        fd = src.copy() if src is not None else Fd(new, "other", f"<copy of fd {f.a0}>", False)
        fd.fd, fd.since_ns, fd.cloexec = new, f.ts, bool(f.a2 & O_CLOEXEC)
        p.fds[new] = fd


def on_setfd(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret == 0 and int(f.a0) in p.fds:
        p.fds[int(f.a0)].cloexec = bool(f.a2 & FD_CLOEXEC)


def on_pipe(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    cloexec = bool(f.a2 & O_CLOEXEC)
    if f.a4:  # the pipe's inode: what /proc shows, the same for both ends
        ends = (f"pipe:[{f.a4}]", f"pipe:[{f.a4}]")
    else:
        m._pipe_seq += 1
        ends = (f"pipe:[new #{m._pipe_seq}] read", f"pipe:[new #{m._pipe_seq}] write")
    m.add_fd(p, int(f.a0), "pipe", ends[0], cloexec, f.ts, int(f.a2), int(f.a4))
    m.add_fd(p, int(f.a1), "pipe", ends[1], cloexec, f.ts, int(f.a2), int(f.a4))


def on_anonfd(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret < 0 or int(f.ret) in p.fds:
        return
    name = ANON_NAMES.get(int(f.a1), "anon")
    if name == "memfd":
        target, cloexec = f"/memfd:{f.path} (deleted)", bool(f.a2 & MFD_CLOEXEC)
    elif name == "pidfd":
        target, cloexec = "anon_inode:[pidfd]", True
    else:
        target, cloexec = f"anon_inode:[{name}]", bool(f.a2 & O_CLOEXEC)
    m.add_fd(p, int(f.ret), "anon", target, cloexec, f.ts, int(f.a2))


def on_chdir(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret == 0:
        passed = m.resolve(p, AT_FDCWD, f.path)
        if f.path2:
            m.learn(passed, f.path2)
        p.cwd = f.path2 or passed


def on_fchdir(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret == 0 and (f.path2 or int(f.a0) in p.fds):
        p.cwd = f.path2 or p.fds[int(f.a0)].target


def on_rename(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    old, new = m.unalias(m.resolve(p, int(f.a0), f.path)), m.unalias(m.resolve(p, int(f.a1), f.path2))
    moved(m, old, new, bool(f.a2 & RENAME_EXCHANGE))
    if m.log is not None:
        m.log.file(f.ts, p, "rename", new, old)


def on_unlink(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    gone = m.unalias(m.resolve(p, int(f.a0), f.path))
    unlinked(_holders(m, gone), gone)
    if m.log is not None:
        m.log.file(f.ts, p, "delete", gone)


# ------------------------------------------------------------------ renames and deletes

def moved(m: Machine, old: str, new: str, exchange: bool = False) -> None:
    """rename(old, new) as the kernel applies it to the dentries open fds and cwds hold: what was
    at ``new`` is unlinked (its holders see ``new (deleted)``), unless it is the very file at
    ``old`` (hard links: nothing changes); with RENAME_EXCHANGE the two swap."""
    if old == new:
        return
    at_old, at_new = _holders(m, old), _holders(m, new)
    ids_old = {(fd.dev, fd.ino) for _q, fd in at_old if fd is not None and fd.ino}
    if ids_old & {(fd.dev, fd.ino) for _q, fd in at_new if fd is not None and fd.ino}:
        return  # two names of one inode: rename does nothing
    if exchange:
        _rebase(at_new, new, old)
    else:
        unlinked(at_new, new)
    _rebase(at_old, old, new)


def _holders(m: Machine, path: str) -> list[tuple[Proc, Fd | None]]:
    """Every file fd (proc, fd) and cwd (proc, None) at ``path`` or beneath it."""
    prefix = path.rstrip("/") + "/"
    out: list[tuple[Proc, Fd | None]] = []
    for q in m.procs.values():
        out += [(q, fd) for fd in q.fds.values()
                if fd.kind == "file" and not fd.gone and (fd.target == path or fd.target.startswith(prefix))]
        if q.cwd == path or q.cwd.startswith(prefix):
            out.append((q, None))
    return out


def _rebase(holders: list[tuple[Proc, Fd | None]], old: str, new: str) -> None:
    for q, fd in holders:
        if fd is None:
            q.cwd = new + q.cwd[len(old):]
        else:
            fd.target = new + fd.target[len(old):]


def unlinked(holders: list[tuple[Proc, Fd | None]], path: str) -> None:
    """The dentry at ``path`` is unlinked: who holds it (an fd, a cwd) sees ``path (deleted)``, as
    /proc does. What is beneath it (a directory: only deleted files can be) keeps its path for good."""
    for q, fd in holders:
        target = q.cwd if fd is None else fd.target
        if target == path:
            target = path + " (deleted)"
        elif fd is not None:
            fd.gone = True
        if fd is None:
            q.cwd = target
        else:
            fd.target = target


HANDLERS = {K["open"]: on_open, K["close"]: on_close, K["close_range"]: on_close_range, K["dup"]: on_dup,
            K["setfd"]: on_setfd, K["pipe"]: on_pipe, K["anonfd"]: on_anonfd, K["chdir"]: on_chdir,
            K["fchdir"]: on_fchdir, K["rename"]: on_rename, K["unlink"]: on_unlink}
