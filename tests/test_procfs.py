"""The /proc baseline (probes/procfs.py) against real child processes. No root, no BCC."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from osrewind.probes import procfs

O_CLOEXEC = 0o2000000

# Opens a file (inheritable: no O_CLOEXEC), a pipe with O_CLOEXEC, chdirs, reports, waits for stdin EOF.
CHILD = textwrap.dedent("""
    import os, sys
    path, workdir = sys.argv[1], sys.argv[2]
    fd = os.open(path, os.O_RDWR)
    os.set_inheritable(fd, True)
    os.write(fd, b"hello")
    r, w = os.pipe2(os.O_CLOEXEC)
    os.chdir(workdir)
    print("ready", fd, r, w, flush=True)
    sys.stdin.read()
""")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


def test_fd_kind() -> None:
    assert procfs.fd_kind("/etc/passwd") == "file"
    assert procfs.fd_kind("/dev/pts/0") == "file"
    assert procfs.fd_kind("pipe:[123]") == "pipe"
    assert procfs.fd_kind("socket:[456]") == "socket"
    assert procfs.fd_kind("anon_inode:[eventfd]") == "anon"
    assert procfs.fd_kind("anon_inode:inotify") == "anon"
    assert procfs.fd_kind("/memfd:buf (deleted)") == "anon"
    assert procfs.fd_kind("net:[4026531840]") == "other"


def test_snapshot_of_a_child(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"")
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    argv = [sys.executable, "-c", CHILD, str(data), str(workdir)]
    before = time.monotonic_ns()
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline().split()
        after = time.monotonic_ns()
        assert line[0] == "ready", line
        file_fd, pipe_r, pipe_w = (int(x) for x in line[1:])

        procs, fds = procfs.snapshot([child.pid])

        assert [p.pid for p in procs] == [child.pid]
        p = procs[0]
        assert p.ppid == os.getpid()
        assert p.argv == argv
        assert p.exe == os.path.realpath(sys.executable)
        assert p.cwd == str(workdir)
        assert p.uid == os.getuid()
        assert p.comm
        assert p.threads >= 1
        # starttime is truncated to a whole clock tick
        tick = 1_000_000_000 // procfs.CLK_TCK
        assert before - tick <= p.start_ns <= after

        assert all(f.pid == child.pid for f in fds)
        by_fd = {f.fd: f for f in fds}
        f = by_fd[file_fd]
        assert f.target == str(data)
        assert f.kind == "file"
        assert not f.flags & O_CLOEXEC
        assert f.flags & os.O_ACCMODE == os.O_RDWR
        assert f.pos == 5
        for fd in (pipe_r, pipe_w):
            assert by_fd[fd].kind == "pipe"
            assert by_fd[fd].target.startswith("pipe:[")
            assert by_fd[fd].flags & O_CLOEXEC
        assert by_fd[pipe_r].target == by_fd[pipe_w].target  # both ends of one pipe
        assert by_fd[0].kind == "pipe" and by_fd[1].kind == "pipe"  # our Popen pipes
        assert [f.fd for f in fds] == sorted(by_fd)
    finally:
        _stop(child)


def test_thread_id_stands_for_its_process() -> None:
    import threading

    stop = threading.Event()
    ready = threading.Event()
    tids: list[int] = []

    def run() -> None:
        tids.append(threading.get_native_id())
        ready.set()
        stop.wait(10)

    t = threading.Thread(target=run)
    t.start()
    try:
        ready.wait(10)
        procs, _ = procfs.snapshot([tids[0], os.getpid()])
        assert [p.pid for p in procs] == [os.getpid()]
        assert procs[0].threads >= 2
    finally:
        stop.set()
        t.join()


def test_descendants() -> None:
    child = subprocess.Popen(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    grandchild: int | None = None
    try:
        grandchild = int(child.stdout.readline())
        assert procfs.descendants([child.pid]) == {child.pid, grandchild}
        assert procfs.descendants([grandchild]) == {grandchild}
        found = procfs.descendants([os.getpid()])
        assert {os.getpid(), child.pid, grandchild} <= found
        procs, _ = procfs.snapshot(procfs.descendants([child.pid]))
        assert {p.pid: p.ppid for p in procs} == {child.pid: os.getpid(), grandchild: child.pid}
    finally:
        _stop(child)
        if grandchild:
            try:
                os.kill(grandchild, 9)
            except ProcessLookupError:
                pass


def test_system_snapshot() -> None:
    procs, fds = procfs.snapshot(None)
    by_pid = {p.pid: p for p in procs}
    assert 1 in by_pid
    assert by_pid[1].ppid == 0
    me = by_pid[os.getpid()]
    assert me.exe == os.path.realpath(sys.executable)
    assert me.cwd == os.getcwd()
    assert any(f.pid == os.getpid() for f in fds)
    # kernel threads are listed in system mode, without exe, argv or fds
    if procfs.KTHREADD_PID in by_pid and by_pid[procfs.KTHREADD_PID].comm == "kthreadd":
        kthreadd = by_pid[procfs.KTHREADD_PID]
        assert kthreadd.exe == "" and kthreadd.argv == []
        assert not any(f.pid == procfs.KTHREADD_PID for f in fds)
        # ... but never in a scoped snapshot
        assert procfs.snapshot([procfs.KTHREADD_PID]) == ([], [])
    assert len(by_pid) == len(procs)


def test_vanished_and_zombie_pids_are_skipped() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert procfs.snapshot([child.pid]) == ([], [])
    assert not procfs.alive(child.pid)
    assert procfs.descendants([child.pid]) == set()

    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while procfs.alive(zombie.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{zombie.pid}")  # not reaped yet: a zombie
        assert procfs.snapshot([zombie.pid]) == ([], [])
        assert procfs.descendants([zombie.pid]) == set()
    finally:
        zombie.wait()


def test_parse_stat_with_odd_comm() -> None:
    fields = ["S", "42"] + ["0"] * 4 + [str(procfs.PF_KTHREAD)] + ["0"] * 12 + ["12345"] + ["0"] * 30
    st = procfs._parse_stat(b"7 (a) b (c)) " + " ".join(fields).encode())
    assert st is not None
    assert (st.comm, st.state, st.ppid, st.start_ticks) == ("a) b (c)", "S", 42, 12345)
    assert st.flags & procfs.PF_KTHREAD
    assert procfs._parse_stat(b"") is None
    assert procfs._parse_stat(b"7 (x) S") is None


@pytest.mark.parametrize("pid", [0, 2**22 + 12345])
def test_nonexistent_pids(pid: int) -> None:
    assert procfs.snapshot([pid]) == ([], [])
