"""fd and file facts: open/pipe/dup*/fcntl(F_DUPFD*)/anonymous fds create fds with their
close-on-exec bit; close removes one (even when it reports an error other than EBADF, as Linux
does); close_range removes a range or, with CLOSE_RANGE_CLOEXEC, marks it; fcntl(F_SETFD) changes
the bit; chdir/fchdir change the cwd. Where the probe read what the kernel opened (its path, inode,
device; pipes by inode), that wins over the path the program passed, which is otherwise resolved
against the cwd or the dirfd at the time. rename moves the paths of open fds and cwds (what it
replaced shows ``path (deleted)``, unless both names were links of one inode; RENAME_EXCHANGE
swaps), unlink and rmdir mark their holders ``(deleted)``, as /proc does.

Renames apply in the order they took effect. That is the order their syscalls returned, except when
two overlap (one entered before the other returned): then the first to take effect can return
second (its thread preempted by the renamer it woke). The probe numbers renames as they enter and
says, at each return, how many had entered by then; so a rename knows whether one it overlapped has
yet to come. If one has, and applying it now would replace what fds or cwds hold (nothing is held at
its source, something at its target: ``rename(b, a)`` arriving before the ``rename(a, b)`` that
took effect first), it is held back until a rename makes its source (both then apply, in the order
they took effect), or every rename it overlapped has come, or HOLD_NS of facts have gone by (a
rename's fact was lost). Renames that do not overlap, as in any program that renames one thing at a
time, are never held."""

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
HOLD_NS = 200_000_000   # fact time a held rename waits at most (the renames it overlapped return in µs)
SEEN_KEPT = 4096        # rename numbers kept above the mark before a missing one is given up
O_DIRECTORY = 0o200000


def on_open(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret < 0:
        return
    # the kernel's path of what it opened where the probe read it (path2); the path passed, made
    # absolute, where it did not, or to learn a directory's symlinks from
    target = f.path2
    if not target or f.a2 & O_DIRECTORY:
        passed = m.resolve(p, int(f.a0), f.path)
        if target:
            m.learn(passed, target)
        else:
            target = passed
    m.add_fd(p, int(f.ret), "file", target, bool(f.a2 & O_CLOEXEC), f.ts, int(f.a2), int(f.a4), user_dev(int(f.a5)))
    if m.log is not None:
        m.log.file(f.ts, p, "write" if f.a2 & WRITE_FLAGS else "read", target)


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
    overlapped = _entered(m, f)
    if f.ret == 0:
        old, new = m.unalias(m.resolve(p, int(f.a0), f.path)), m.unalias(m.resolve(p, int(f.a1), f.path2))
        if (overlapped and not f.a2 & RENAME_EXCHANGE and not _holders(m, old) and _holders(m, new)):
            m.held.append((f, old, new))   # it needs a rename into `old` that took effect first
        else:
            _rename(m, f, old, new)
    while m.held:   # those all of whose overlapping renames have come apply as they are, oldest first
        ready = next((i for i, (g, _s, _t) in enumerate(m.held) if int(g.a4) <= m.rename_mark), None)
        if ready is None:
            break
        _rename(m, *m.held.pop(ready))


def _entered(m: Machine, f: Fact) -> bool:
    """Notes the rename's number (``a3``: its place in the order renames entered); True while a rename
    that entered before this one returned (``a4``: how many had entered) has not come yet."""
    seq, entered = int(f.a3), int(f.a4)
    if seq <= 0:
        return False  # recorded before renames were numbered
    if seq > m.rename_mark:
        m.renames_seen.add(seq)
        if len(m.renames_seen) > SEEN_KEPT:   # the fact of the rename numbered mark + 1 was lost
            m.rename_mark = min(m.renames_seen) - 1
        while m.rename_mark + 1 in m.renames_seen:
            m.rename_mark += 1
            m.renames_seen.discard(m.rename_mark)
    return entered > m.rename_mark


def _rename(m: Machine, f: Fact, old: str, new: str) -> None:
    moved(m, old, new, bool(f.a2 & RENAME_EXCHANGE))
    if m.log is not None:
        who = m.procs.get(f.tgid) or m.exited.get(f.tgid)   # (a held rename may apply after its exit)
        if who is not None:
            m.log.file(f.ts, who, "rename", new, old)
    prefix = new.rstrip("/") + "/"
    for i, (_g, source, _t) in enumerate(m.held):
        if source == new or source.startswith(prefix):   # held for this one: it applies next
            _rename(m, *m.held.pop(i))
            return


def release_held(m: Machine, now: int | None) -> None:
    """Held renames older than HOLD_NS at fact time ``now`` (all of them, with None) apply as they
    are: the rename they waited for was lost (its number is given up too)."""
    while m.held and (now is None or now - m.held[0][0].ts > HOLD_NS):
        f, old, new = m.held.pop(0)
        if int(f.a4) > m.rename_mark:
            m.rename_mark = int(f.a4)
            m.renames_seen = {s for s in m.renames_seen if s > m.rename_mark}
        _rename(m, f, old, new)


def on_unlink(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.ret != 0:
        return
    gone = m.unalias(m.resolve(p, int(f.a0), f.path))
    holders = _holders(m, gone)
    unlinked(holders, gone)
    _touched(m, holders)
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
    _touched(m, at_old + at_new)


def _touched(m: Machine, holders: list[tuple[Proc, Fd | None]]) -> None:
    """While indexing, the interval log compares these holders alone (a process with thousands of
    fds would otherwise be compared whole at every unlink)."""
    if m.touched is not None:
        m.touched += holders


def _holders(m: Machine, path: str) -> list[tuple[Proc, Fd | None]]:
    """Every file fd (proc, fd) and cwd (proc, None) at ``path`` or beneath it. Run at every unlink
    and rename over every fd of every process: the cheapest test goes first (the target starts
    with the path), which almost every fd fails at its first characters."""
    base = path.rstrip("/")
    prefix = base + "/"
    out: list[tuple[Proc, Fd | None]] = []
    for q in m.procs.values():
        out += [(q, fd) for fd in q.fds.values()
                if fd.target.startswith(base) and fd.kind == "file" and not fd.gone
                and (fd.target == path or fd.target.startswith(prefix))]
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
