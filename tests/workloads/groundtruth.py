"""Recorded by tests/test_groundtruth_kernel.py: a seeded random workload whose processes report
their own /proc state at known instants, so the test compares the rewound state with the kernel's.

Usage: groundtruth.py SEED WORKDIR REPORT STEPS
       groundtruth.py --worker N WORKDIR [FD ...]   (a worker after exec; FDs: its fds that survived)

The driver (the recorded command) runs one worker at first and, step by step, tells one worker to
do one random thing: open/openat (absolute, relative, through a dirfd, through a symlink, with and
without close-on-exec; O_TMPFILE; a reopen through /proc/self/fd), close, dup/dup2/dup3/F_DUPFD_CLOEXEC, close_range, pipe, socketpair, socket,
chdir/fchdir, rename of files and directories (also over open files and held cwds), unlink, rmdir,
mkdir, symlink, hard link, fork (a new worker), exec (the worker runs this script again), exit; and,
now and then, a new real uid (setresuid/setreuid, the effective uid kept).
Only one worker acts at a time. After each step every live worker reports, one after the other: the
instant (CLOCK_MONOTONIC ns, taken before it looks), then readlink of each /proc/self/fd entry, its
cwd, its parent and its real uid. Workers talk to the driver through FIFOs in WORKDIR/ctl (opened by path, so a
worker reopens them after exec). REPORT gets one JSON line per report at the end.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import random
import socket
import stat
import sys
import time

FILES = [f"f{i}" for i in range(5)]
DIRS = [f"d{i}" for i in range(4)]
LINKS = [f"l{i}" for i in range(3)]
HIGH = 40          # dup2 and F_DUPFD targets go at HIGH.., where close_range may close them
CLOSE_RANGE_CLOEXEC = 4


def fifo(work: str, n: int, end: str) -> str:
    return os.path.join(work, "ctl", f"{n}.{end}")


# ------------------------------------------------------------------ worker

class Worker:
    def __init__(self, n: int, work: str, mine: list[int]) -> None:
        self.n, self.work, self.fs = n, work, os.path.join(work, "fs")
        self.mine = set(mine)                      # fds the random steps made (the FIFOs are not ours)
        self.cmd = open(fifo(work, n, "cmd"), "rb", buffering=0)       # noqa: SIM115
        self.reply = open(fifo(work, n, "reply"), "wb", buffering=0)   # noqa: SIM115
        self.libc = ctypes.CDLL(None, use_errno=True)

    def serve(self) -> None:
        buf = b""
        while True:
            while b"\n" not in buf:
                chunk = self.cmd.read(65536)
                if not chunk:
                    return
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg["op"] == "report":
                self.send(self.report())
            elif msg["op"] == "exit":
                self.send({"ok": True})
                os._exit(0)
            elif msg["op"] == "exec":
                self.exec_self()
            elif msg["op"] == "fork":
                self.fork(msg["child"])
            else:
                try:
                    getattr(self, "op_" + msg["op"])(random.Random(msg["seed"]))
                    err = None
                except OSError as e:
                    err = e.errno
                self.send({"ok": True, "errno": err})

    def send(self, obj: dict) -> None:
        self.reply.write(json.dumps(obj).encode() + b"\n")

    def report(self) -> dict:
        at = time.monotonic_ns()
        me = os.getpid()
        fds = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                fds[name] = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                pass
        listing = f"/proc/{me}/fd"
        fds = {k: v for k, v in fds.items() if v != listing}  # the listing's own fd, opened after `at`
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])   # start, in clock ticks since boot
        return {"pid": me, "at": at, "fds": fds, "cwd": os.readlink("/proc/self/cwd"), "ppid": os.getppid(),
                "uid": os.getuid(),
                "start_ticks": ticks, "exe": os.readlink("/proc/self/exe")}

    # ---- paths: absolute, or relative to the cwd when the cwd still exists
    def path(self, rng: random.Random, rel: str) -> str:
        full = os.path.join(self.fs, rel)
        if rng.random() < 0.5:
            try:
                return os.path.relpath(full, os.getcwd())
            except OSError:
                pass
        return full

    def some_file(self, rng: random.Random, through_links: bool = True) -> str:
        name = rng.choice(FILES)
        where = rng.choice([None, *DIRS] + (LINKS if through_links else []))
        return name if where is None else f"{where}/{name}"

    def some_dir(self, rng: random.Random, through_links: bool = True) -> str:
        return rng.choice(DIRS + (LINKS if through_links else []) + ["."])

    def keep(self, fd: int, rng: random.Random) -> int:
        if rng.random() < 0.3:
            os.set_inheritable(fd, True)    # survives exec (fcntl/ioctl FD_CLOEXEC off)
        self.mine.add(fd)
        return fd

    def pick(self, rng: random.Random) -> int:
        live = sorted(fd for fd in self.mine if _is_open(fd))
        self.mine = set(live)
        if not live:
            raise OSError(9, "no fd of ours")
        return rng.choice(live)

    # ---- the steps
    def op_open(self, rng):
        flags = rng.choice([os.O_RDONLY, os.O_WRONLY | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_TRUNC])
        self.keep(os.open(self.path(rng, self.some_file(rng)), flags, 0o644), rng)

    def op_open_link(self, rng):
        self.keep(os.open(self.path(rng, rng.choice(LINKS)), os.O_RDONLY), rng)

    def op_tmpfile(self, rng):  # a file with no name: /proc shows "/dir/#inode (deleted)"
        self.keep(os.open(self.path(rng, self.some_dir(rng, False)), os.O_TMPFILE | os.O_RDWR, 0o600), rng)

    def op_reopen(self, rng):  # through /proc/self/fd: a deleted file opens as itself, "(deleted)"
        fd = self.pick(rng)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(22, "not a regular file")
        self.keep(os.open(f"/proc/self/fd/{fd}", os.O_RDONLY), rng)

    def op_openat(self, rng):
        d = os.open(self.path(rng, self.some_dir(rng)), os.O_RDONLY | os.O_DIRECTORY)
        self.keep(d, rng)
        self.keep(os.open(rng.choice(FILES), os.O_RDWR | os.O_CREAT, 0o644, dir_fd=d), rng)

    def op_close(self, rng):
        fd = self.pick(rng)
        os.close(fd)
        self.mine.discard(fd)

    def op_dup(self, rng):
        fd = self.pick(rng)
        how = rng.randrange(4)
        if how == 0:
            self.mine.add(os.dup(fd))                                          # F_DUPFD_CLOEXEC at 0
        elif how == 1:
            self.mine.add(os.dup2(fd, HIGH + rng.randrange(8), inheritable=True))   # dup2
        elif how == 2:
            self.mine.add(os.dup2(fd, HIGH + rng.randrange(8), inheritable=False))  # dup3(O_CLOEXEC)
        else:
            self.mine.add(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH + rng.randrange(8)))

    def op_close_range(self, rng):
        lo = HIGH + rng.randrange(8)
        flags = rng.choice([0, CLOSE_RANGE_CLOEXEC])
        if self.libc.close_range(lo, lo + rng.randrange(4), flags) != 0:
            raise OSError(ctypes.get_errno(), "close_range")

    def op_pipe(self, rng):
        r, w = os.pipe()
        self.keep(r, rng)
        self.keep(w, rng)

    def op_socketpair(self, rng):
        a, b = socket.socketpair(socket.AF_UNIX, rng.choice([socket.SOCK_STREAM, socket.SOCK_DGRAM]))
        self.keep(a.detach(), rng)
        self.keep(b.detach(), rng)

    def op_socket(self, rng):
        s = socket.socket(rng.choice([socket.AF_INET, socket.AF_INET6, socket.AF_UNIX]), socket.SOCK_STREAM)
        self.keep(s.detach(), rng)

    def op_chdir(self, rng):
        os.chdir(self.path(rng, self.some_dir(rng)))

    def op_fchdir(self, rng):
        d = os.open(self.path(rng, self.some_dir(rng)), os.O_RDONLY | os.O_DIRECTORY)
        os.fchdir(d)
        if rng.random() < 0.5:
            os.close(d)
        else:
            self.keep(d, rng)

    def op_rename(self, rng):   # files, often over one that is open somewhere
        os.rename(self.path(rng, self.some_file(rng, False)), self.path(rng, self.some_file(rng, False)))

    def op_rename_dir(self, rng):  # directories, back and forth, also over an empty one
        a, b = rng.sample(DIRS, 2)
        os.rename(self.path(rng, a), self.path(rng, b))

    def op_unlink(self, rng):
        os.unlink(self.path(rng, self.some_file(rng, False)))

    def op_rmdir(self, rng):
        os.rmdir(self.path(rng, rng.choice(DIRS)))

    def op_mkdir(self, rng):
        os.mkdir(self.path(rng, rng.choice(DIRS)))

    def op_symlink(self, rng):
        link = os.path.join(self.fs, rng.choice(LINKS))
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(rng.choice(DIRS + FILES + [f"{d}/{f}" for d in DIRS for f in FILES[:2]]), link)

    def op_setuid(self, rng):
        """Another real uid, the effective one kept (root: the worker can still do everything)."""
        uid = rng.choice([0, 65534, 1000, 4242])
        if rng.random() < 0.5:
            os.setresuid(uid, -1, -1)
        else:
            os.setreuid(uid, -1)

    def op_link(self, rng):
        os.link(self.path(rng, self.some_file(rng, False)), self.path(rng, self.some_file(rng, False)))

    def fork(self, child: int) -> None:
        pid = os.fork()
        if pid == 0:
            self.cmd.close()
            self.reply.close()
            Worker(child, self.work, sorted(self.mine)).serve()
            os._exit(0)
        self.send({"ok": True, "pid": pid})

    def exec_self(self) -> None:
        keep = [fd for fd in sorted(self.mine) if _is_open(fd) and os.get_inheritable(fd)]
        self.send({"ok": True})
        self.cmd.close()
        self.reply.close()
        os.execv(sys.executable, [sys.executable, __file__, "--worker", str(self.n), self.work,
                                  *map(str, keep)])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ driver

OPS = (["open"] * 6 + ["open_link"] * 2 + ["openat"] * 2 + ["tmpfile", "reopen", "reopen"] + ["close"] * 5 + ["dup"] * 4 + ["close_range"]
       + ["pipe", "socketpair", "socket"] + ["chdir"] * 3 + ["fchdir"] * 2 + ["rename"] * 4 + ["rename_dir"] * 3
       + ["unlink"] * 2 + ["rmdir", "mkdir", "mkdir", "symlink", "symlink", "link", "fork", "exec", "exit"])


class Driver:
    def __init__(self, work: str) -> None:
        self.work = work
        self.links: dict[int, tuple] = {}      # worker n -> (cmd file, reply file, pid, parent n)
        self.next = 0

    def connect(self, n: int, pid: int, parent: int | None) -> None:
        # read-write: the driver is itself a reader and a writer of both, so neither end ever sees
        # the other missing while a worker execs and opens them again
        cmd = os.fdopen(os.open(fifo(self.work, n, "cmd"), os.O_RDWR), "wb", buffering=0)
        reply = os.fdopen(os.open(fifo(self.work, n, "reply"), os.O_RDWR), "rb")
        self.links[n] = (cmd, reply, pid, parent)

    def new_fifos(self) -> int:
        n = self.next
        self.next += 1
        os.mkfifo(fifo(self.work, n, "cmd"))
        os.mkfifo(fifo(self.work, n, "reply"))
        return n

    def ask(self, n: int, msg: dict) -> dict:
        cmd, reply, _pid, _parent = self.links[n]
        cmd.write(json.dumps(msg).encode() + b"\n")
        line = reply.readline()
        if not line:
            raise SystemExit(f"worker {n} went away")
        return json.loads(line)


def drive(seed: int, work: str, report: str, steps: int) -> None:
    rng = random.Random(seed)
    fs = os.path.join(work, "fs")
    os.makedirs(os.path.join(work, "ctl"))
    os.makedirs(fs)
    for d in DIRS[:3]:
        os.mkdir(os.path.join(fs, d))
    for f in FILES[:3]:
        open(os.path.join(fs, f), "w").close()  # noqa: SIM115
    os.symlink(DIRS[0], os.path.join(fs, LINKS[0]))
    os.symlink(FILES[0], os.path.join(fs, LINKS[1]))
    d = Driver(work)
    first = d.new_fifos()
    pid = os.fork()
    if pid == 0:
        os.chdir(fs)
        Worker(first, work, []).serve()
        os._exit(0)
    d.connect(first, pid, None)
    reports = []
    uids = random.Random(seed * 7919 + 1)   # its own sequence: the steps of a seed stay what they were
    for _ in range(steps):
        if uids.random() < 0.15:
            d.ask(uids.choice(sorted(d.links)), {"op": "setuid", "seed": uids.randrange(2**32)})
        n = rng.choice(sorted(d.links))
        op = rng.choice(OPS)
        if op == "fork" and len(d.links) < 5:
            child = d.new_fifos()
            got = d.ask(n, {"op": "fork", "child": child})
            d.connect(child, got["pid"], n)
        elif op == "exec":
            d.ask(n, {"op": "exec"})
        elif op == "exit":
            if n != first and not any(p == n for (_c, _r, _pid, p) in d.links.values()):
                d.ask(n, {"op": "exit"})
                cmd, reply, _pid, _p = d.links.pop(n)
                cmd.close()
                reply.close()
        elif op not in ("fork", "exec", "exit"):
            d.ask(n, {"op": op, "seed": rng.randrange(2**32)})
        for m in sorted(d.links):
            reports.append(d.ask(m, {"op": "report"}))
    for n in sorted(d.links, reverse=True):  # children before their parents
        d.ask(n, {"op": "exit"})
    with open(report, "w") as out:
        out.write("".join(json.dumps(r) + "\n" for r in reports))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break


def main() -> None:
    if sys.argv[1] == "--worker":
        n, work, fds = int(sys.argv[2]), sys.argv[3], [int(x) for x in sys.argv[4:]]
        Worker(n, work, fds).serve()
        return
    drive(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))


if __name__ == "__main__":
    main()
