"""Process facts: fork copies the parent's fd table and cwd (a clone with CLONE_THREAD adds a
thread, not a process: fds belong to the process); a successful exec keeps the fd table but closes
every fd marked close-on-exec and takes the argv recorded at the exec call; a pid is reused, so a
process is (pid, start_ns) and a fork of a pid that exists replaces it; exit codes come from
exit_group() or the parent's wait status; the kernel's exact start and real parent, where the probe
read them, win over the fork's instant and the forking process."""

from __future__ import annotations

from typing import TYPE_CHECKING

from osrewind.probes.records import AT_FDCWD, CLONE_THREAD, KIND_CODES
from osrewind.queries.engine.model import Proc, wait_code

if TYPE_CHECKING:
    from osrewind.queries.engine.machine import Fact, Machine

K = KIND_CODES


def on_fork(m: Machine, f: Fact) -> None:
    parent = m.proc(f)
    child = int(f.a1)
    if f.a2 != -1 and f.a2 & CLONE_THREAD:
        parent.threads += 1
        return
    # the kernel's exact start and real parent where the probe read them (a4, a5)
    p = Proc(child, int(f.a4) or f.ts, int(f.a5) or f.tgid, parent.comm, parent.exe, list(parent.argv), parent.cwd,
             1, False, None, {n: fd.copy() for n, fd in parent.fds.items()})
    p.cgroup, p.uid = parent.cgroup, parent.uid
    m.procs[child] = p
    if m.log is not None:
        m.log.born(p, parent)


def on_exec_args(m: Machine, f: Fact) -> None:
    m._argv[f.tid] = list(f.argv)


def on_exec_fail(m: Machine, f: Fact) -> None:
    m._argv.pop(f.tid, None)


def on_exec(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    p.exe = f.path2 or m.resolve(p, AT_FDCWD, f.path)  # the kernel's (/proc/PID/exe) where read
    p.argv = m._argv.pop(int(f.a0), None) or m._argv.pop(f.tid, None) or [f.path]
    p.comm = f.comm
    p.exec_ns = f.ts
    if f.a4:  # the kernel's exact start (a process first seen at its exec, or from /proc's ticks)
        p.start_ns, p.ppid = int(f.a4), int(f.a5) or p.ppid
    p.threads = 1
    p.fds = {n: fd for n, fd in p.fds.items() if not fd.cloexec}
    if m.log is not None:
        m.log.execd(p, f.ts)


def on_exit_call(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    if f.a1 == 1 or p.threads <= 1:
        p.exit_code = int(f.a0) & 0xFF


def on_task_exit(m: Machine, f: Fact) -> None:
    p = m.proc(f)
    p.run.pop(f.tid, None)
    p.on_cpu.pop(f.tid, None)
    if f.a0:  # group_dead: the last thread is gone, so is the process
        m.exit(p, f.ts)
    elif f.tid != f.tgid and p.threads > 1:
        p.threads -= 1


def on_wait(m: Machine, f: Fact) -> None:
    if f.ret > 0 and f.a0 >= 0:
        gone = m.exited.get(int(f.ret))
        if gone is not None:
            gone.exit_code = wait_code(int(f.a0))


def on_identity(m: Machine, f: Fact) -> None:
    """A baseline process as the kernel keeps it: exact start, real parent."""
    q = m.procs.get(f.tgid)
    if q is not None:
        q.start_ns, q.ppid = int(f.a0), int(f.a1) or q.ppid


def on_cgroup(m: Machine, f: Fact) -> None:
    """Moved to another cgroup: the v2 hierarchy (0) is the one shown. With record --cgroup the
    process may be new to the run."""
    if f.a0 == 0:
        m.proc(f).cgroup = f.path


_KEEP = 0xFFFFFFFF   # (uid_t) -1: leave this id as it is


def set_uid(m: Machine, f: Fact, call: str) -> None:
    """The kernel's rules for the real uid (credentials(7)): setresuid(r, e, s) and setreuid(r, e) set
    it to r unless r is -1; setuid(u) sets it only in a privileged process (taken as one whose real
    uid is 0: the effective uid is not recorded), otherwise only the effective uid changes."""
    q = m.procs.get(f.tgid)
    if q is None or f.ret != 0:
        return
    new = int(f.a0) & 0xFFFFFFFF
    if new == _KEEP or (call == "setuid" and q.uid != 0):
        return
    q.uid = new


HANDLERS = {K["fork"]: on_fork, K["exec_args"]: on_exec_args, K["exec_fail"]: on_exec_fail, K["exec"]: on_exec,
            K["exit_call"]: on_exit_call, K["task_exit"]: on_task_exit, K["wait"]: on_wait,
            K["identity"]: on_identity, K["cgroup"]: on_cgroup}
