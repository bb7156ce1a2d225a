"""The rewind state machine, fed fixture facts in kernel order (no root, no store)."""

from __future__ import annotations

import errno
import os

from osrewind.probes.records import AT_FDCWD, CLONE_THREAD, KIND_CODES, O_CLOEXEC
from osrewind.queries.engine import Machine
from osrewind.queries.engine.files import HOLD_NS

K = KIND_CODES


def fact(m: Machine, kind: str, tgid: int, *, ts: int = 0, tid: int | None = None, ret: int = 0, a0: int = 0,
         a1: int = 0, a2: int = 0, a3: int = 0, comm: str = "sh", path: str = "", path2: str = "",
         argv: list[str] | None = None, a4: int = 0, a5: int = 0) -> None:
    m.apply(ts, K[kind], tgid, tgid if tid is None else tid, ret, a0, a1, a2, a3, comm, path, path2, argv or [],
            0, a5, 0, a4)


def base() -> Machine:
    m = Machine()
    m.add_snapshot_proc(100, 1, 5, "sh", "/bin/sh", ["sh", "job.sh"], "/work", 1)
    m.add_snapshot_fd(100, 0, "/dev/null", "file", 0)
    m.add_snapshot_fd(100, 1, "pipe:[77]", "pipe", 0)
    m.add_snapshot_fd(100, 9, "/work/secret", "file", O_CLOEXEC)
    return m


def fds(m: Machine, pid: int) -> dict[int, str]:
    return {n: f.target for n, f in m.procs[pid].fds.items()}


def test_open_relative_to_cwd_and_dirfd_and_failed_open():
    m = base()
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="out/a.txt")
    fact(m, "open", 100, ret=4, a0=AT_FDCWD, path="/etc/../etc/hosts")
    fact(m, "open", 100, ret=5, a0=AT_FDCWD, path="/work/dir")
    fact(m, "open", 100, ret=6, a0=5, path="inner")
    fact(m, "open", 100, ret=-errno.ENOENT, a0=AT_FDCWD, path="missing")
    assert fds(m, 100) == {0: "/dev/null", 1: "pipe:[77]", 9: "/work/secret", 3: "/work/out/a.txt",
                           4: "/etc/hosts", 5: "/work/dir", 6: "/work/dir/inner"}


def test_fork_copies_fds_exec_closes_cloexec_and_takes_argv():
    m = base()
    fact(m, "fork", 100, ts=10, a0=100, a1=200, a2=0x1200011)
    fact(m, "exec_args", 200, ts=11, argv=["cat", "-n"])
    fact(m, "exec", 200, ts=12, a0=200, comm="cat", path="/usr/bin/cat")
    p = m.procs[200]
    assert p.ppid == 100 and p.start_ns == 10 and p.argv == ["cat", "-n"] and p.exe == "/usr/bin/cat"
    assert fds(m, 200) == {0: "/dev/null", 1: "pipe:[77]"}  # fd 9 was close-on-exec
    assert 9 in m.procs[100].fds  # the parent keeps its own


def test_threads_share_the_process_fd_table():
    m = base()
    fact(m, "fork", 100, a1=101, a2=CLONE_THREAD | 0x100)
    assert 101 not in m.procs and m.procs[100].threads == 2
    fact(m, "open", 100, tid=101, ret=3, a0=AT_FDCWD, path="/tmp/t")
    assert fds(m, 100)[3] == "/tmp/t"
    fact(m, "task_exit", 100, tid=101, a0=0)
    assert m.procs[100].threads == 1 and 100 in m.procs


def test_dup_variants_and_cloexec_bits():
    m = base()
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="/tmp/x", a2=O_CLOEXEC)
    fact(m, "dup", 100, ret=4, a0=3, a1=-1)                    # dup: no cloexec
    fact(m, "dup", 100, ret=1, a0=3, a1=1)                     # dup2 over stdout
    fact(m, "dup", 100, ret=7, a0=3, a1=7, a2=O_CLOEXEC)       # dup3(O_CLOEXEC)
    fact(m, "dup", 100, ret=3, a0=3, a1=3)                     # dup2(fd, fd): no change
    fact(m, "dup", 100, ret=-errno.EBADF, a0=42, a1=-1)
    f = m.procs[100].fds
    assert f[3].cloexec and not f[4].cloexec and not f[1].cloexec and f[7].cloexec
    assert f[1].target == "/tmp/x"
    fact(m, "setfd", 100, a0=4, a2=1)
    assert f[4].cloexec


def test_close_close_range_and_ebadf():
    m = base()
    for n in (3, 4, 5, 6):
        fact(m, "open", 100, ret=n, a0=AT_FDCWD, path=f"/f{n}")
    fact(m, "close", 100, a0=3)
    fact(m, "close", 100, ret=-errno.EBADF, a0=3)
    fact(m, "close", 100, ret=-errno.EIO, a0=4)  # Linux closes the fd even then
    fact(m, "close_range", 100, a0=5, a1=2**32 - 1, a2=4)  # CLOSE_RANGE_CLOEXEC
    assert set(fds(m, 100)) == {0, 1, 9, 5, 6} and m.procs[100].fds[6].cloexec
    fact(m, "close_range", 100, a0=5, a1=9)
    assert set(fds(m, 100)) == {0, 1}


def test_pipes_sockets_anon_fds():
    m = base()
    fact(m, "pipe", 100, a0=3, a1=4, a2=O_CLOEXEC)
    fact(m, "socket", 100, ret=5, a0=2, a1=1 | O_CLOEXEC)
    fact(m, "socketpair", 100, a0=6, a1=7, a2=1, a3=1)
    fact(m, "anonfd", 100, ret=8, a1=3, a2=1, path="scratch")
    fact(m, "anonfd", 100, ret=10, a1=1, a2=0)
    f = m.procs[100].fds
    assert f[3].kind == f[4].kind == "pipe" and f[3].target.endswith("read") and f[4].target.endswith("write")
    assert f[3].cloexec and f[5].target == "socket:[AF_INET SOCK_STREAM]" and f[5].cloexec
    assert f[6].target == f[7].target == "socket:[AF_UNIX SOCK_STREAM]"
    assert f[8].target == "/memfd:scratch (deleted)" and f[8].cloexec
    assert f[10].target == "anon_inode:[eventfd]" and not f[10].cloexec


def test_chdir_fchdir_rename_unlink():
    m = base()
    fact(m, "chdir", 100, path="sub")
    assert m.procs[100].cwd == "/work/sub"
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="/data")
    fact(m, "fchdir", 100, a0=3)
    assert m.procs[100].cwd == "/data"
    fact(m, "open", 100, ret=4, a0=AT_FDCWD, path="a.txt")
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="a.txt", path2="/data/b.txt")
    assert fds(m, 100)[4] == "/data/b.txt"
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="/data", path2="/archive")
    assert fds(m, 100)[4] == "/archive/b.txt" and m.procs[100].cwd == "/archive"
    fact(m, "unlink", 100, a0=AT_FDCWD, path="/archive/b.txt")
    assert fds(m, 100)[4] == "/archive/b.txt (deleted)"


def test_what_the_kernel_opened_wins_over_the_path_passed():
    m = base()
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="link/f", path2="/data/dir/f", a4=77, a5=(254 << 20) | 1)
    fact(m, "chdir", 100, path="link", path2="/data/dir")
    fact(m, "fchdir", 100, a0=42, path2="/srv")  # an fd opened before the run: the kernel still knows
    f = m.procs[100].fds[3]
    assert (f.target, f.ino, f.dev) == ("/data/dir/f", 77, os.makedev(254, 1))
    assert m.procs[100].cwd == "/srv"
    fact(m, "pipe", 100, a0=4, a1=5, a4=9001)
    fact(m, "socketpair", 100, a0=6, a1=7, a2=1, a3=1, a4=12, a5=13)
    assert fds(m, 100)[4] == fds(m, 100)[5] == "pipe:[9001]"
    assert (m.procs[100].fds[6].ino, m.procs[100].fds[7].ino) == (12, 13)


def test_rename_over_an_open_file_unlinks_what_it_replaced():
    m = base()
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="/w/b", path2="/w/b", a4=1)
    fact(m, "open", 100, ret=4, a0=AT_FDCWD, path="/w/a", path2="/w/a", a4=2)
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="/w/a", path2="/w/b")
    assert fds(m, 100)[3] == "/w/b (deleted)" and fds(m, 100)[4] == "/w/b"
    # a second name of the same inode: rename does nothing
    fact(m, "open", 100, ret=5, a0=AT_FDCWD, path="/w/h1", path2="/w/h1", a4=7)
    fact(m, "open", 100, ret=6, a0=AT_FDCWD, path="/w/h2", path2="/w/h2", a4=7)
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="/w/h1", path2="/w/h2")
    assert fds(m, 100)[5] == "/w/h1" and fds(m, 100)[6] == "/w/h2"
    # RENAME_EXCHANGE swaps; a directory held as cwd and removed is "(deleted)"
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, a2=2, path="/w/h1", path2="/w/b")
    assert fds(m, 100)[5] == "/w/b" and fds(m, 100)[4] == "/w/h1"
    fact(m, "chdir", 100, path="/w/d", path2="/w/d")
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="/w/e", path2="/w/d")  # an empty dir over it
    assert m.procs[100].cwd == "/w/d (deleted)"
    fact(m, "chdir", 100, path="/w/e2", path2="/w/e2")
    fact(m, "unlink", 100, a0=AT_FDCWD, a2=0x200, path="/w/e2")
    assert m.procs[100].cwd == "/w/e2 (deleted)"


def test_renames_and_unlinks_through_a_symlinked_directory_follow_the_kernels_paths():
    """/var/run is a symlink to /run: a chdir or a directory open says both; a rename or unlink
    passes only the first. Of a file nothing is learned (its last component may be the symlink)."""
    m = base()
    fact(m, "open", 100, ret=3, a0=AT_FDCWD, path="/var/run/app.pid", path2="/run/app.pid", a4=5)
    fact(m, "open", 100, ret=9, a0=AT_FDCWD, path="/usr/share/locale/locale.alias", path2="/etc/locale.alias")
    assert m.aliases == {}
    fact(m, "open", 100, ret=10, a0=AT_FDCWD, a2=0o200000, path="/var/run", path2="/run")  # O_DIRECTORY
    fact(m, "rename", 100, a0=AT_FDCWD, a1=AT_FDCWD, path="/var/run/app.pid", path2="/var/run/app.old")
    assert fds(m, 100)[3] == "/run/app.old"
    fact(m, "unlink", 100, a0=AT_FDCWD, path="/var/run/app.old")
    assert fds(m, 100)[3] == "/run/app.old (deleted)"
    fact(m, "unlink", 100, a0=AT_FDCWD, path="/var/run")        # the link itself: its target stays
    assert fds(m, 100)[10] == "/run"
    fact(m, "chdir", 100, path="/var/run", path2="/var/run")     # a directory now, no longer a link
    assert m.aliases == {}


def rename(m: Machine, ts: int, old: str, new: str, seq: int, entered: int, ret: int = 0, pid: int = 100) -> None:
    """A rename numbered ``seq`` in entry order, returning when ``entered`` renames had entered."""
    fact(m, "rename", pid, ts=ts, ret=ret, a0=AT_FDCWD, a1=AT_FDCWD, path=old, path2=new, a3=seq, a4=entered)


def test_renames_that_overlapped_apply_in_the_order_they_took_effect():
    """Two renames of one directory race: d1 -> d2 (entered first) took effect first but returned
    after d2 -> d1. The second would replace the directory cwds hold while nothing is at its source
    yet: it waits for the one it overlapped, and both apply in the order they took effect."""
    m = base()
    fact(m, "chdir", 100, ts=1, path="/w/d1", path2="/w/d1")
    fact(m, "chdir", 200, ts=2, path="/w/d1/sub", path2="/w/d1/sub")
    rename(m, 10, "/w/d2", "/w/d1", seq=2, entered=2)             # returned first; #1 not come yet
    assert m.procs[100].cwd == "/w/d1" and len(m.held) == 1
    rename(m, 11, "/w/d1", "/w/d2", seq=1, entered=2)
    assert not m.held and m.procs[100].cwd == "/w/d1" and m.procs[200].cwd == "/w/d1/sub"
    # applied in return order, the first would have replaced the directory the cwd holds
    n = base()
    fact(n, "chdir", 100, ts=1, path="/w/d1", path2="/w/d1")
    rename(n, 10, "/w/d2", "/w/d1", seq=0, entered=0)             # unnumbered (an older recording)
    rename(n, 11, "/w/d1", "/w/d2", seq=0, entered=0)
    assert not n.held and n.procs[100].cwd == "/w/d1 (deleted)"


def test_renames_that_do_not_overlap_or_replace_nothing_held_apply_at_once():
    m = base()
    fact(m, "chdir", 100, ts=1, path="/w/d1", path2="/w/d1")
    fact(m, "open", 100, ts=2, ret=3, a0=AT_FDCWD, path="/w/f", path2="/w/f", a4=9)
    rename(m, 10, "/w/t", "/w/f", seq=1, entered=1)               # rename over an open file, alone
    assert fds(m, 100)[3] == "/w/f (deleted)" and not m.held
    rename(m, 20, "/w/x", "/w/y", seq=3, entered=3)               # #2 still out, but y holds nothing
    assert not m.held
    rename(m, 30, "/w/d1", "/w/d3", seq=4, entered=4)             # its source is held: applies
    assert m.procs[100].cwd == "/w/d3" and not m.held
    rename(m, 40, "/w/g", "/w/d3", seq=5, entered=6, ret=-errno.ENOTEMPTY)  # failed: nothing held
    assert not m.held and m.rename_mark == 1 and m.renames_seen == {3, 4, 5}
    rename(m, 50, "/w/a", "/w/b", seq=2, entered=2)
    assert m.rename_mark == 5 and not m.renames_seen


def test_a_held_rename_applies_once_all_it_overlapped_came_or_its_partner_was_lost():
    m = base()
    fact(m, "open", 100, ts=1, ret=3, a0=AT_FDCWD, path="/w/f", path2="/w/f", a4=9)
    rename(m, 10, "/w/t", "/w/f", seq=2, entered=3)               # #1 and #3 overlapped it
    assert len(m.held) == 1 and fds(m, 100)[3] == "/w/f"
    rename(m, 11, "/w/p", "/w/q", seq=1, entered=3)
    assert len(m.held) == 1
    rename(m, 12, "/w/r", "/w/s", seq=3, entered=3)               # all came: nothing made /w/t
    assert not m.held and fds(m, 100)[3] == "/w/f (deleted)"
    # the one it waited for was lost: it applies HOLD_NS later, and that number is given up
    fact(m, "open", 100, ts=20, ret=4, a0=AT_FDCWD, path="/w/g", path2="/w/g", a4=10)
    rename(m, 30, "/w/u", "/w/g", seq=5, entered=5)               # #4 never comes
    assert len(m.held) == 1
    fact(m, "close", 100, ts=30 + HOLD_NS + 1, a0=99, ret=-errno.EBADF)
    assert not m.held and fds(m, 100)[4] == "/w/g (deleted)" and m.rename_mark == 5
    # the end of the recording applies what is still held
    fact(m, "open", 100, ts=HOLD_NS + 40, ret=5, a0=AT_FDCWD, path="/w/h", path2="/w/h", a4=11)
    rename(m, HOLD_NS + 50, "/w/v", "/w/h", seq=7, entered=7)
    assert len(m.held) == 1
    m.settle()
    assert not m.held and fds(m, 100)[5] == "/w/h (deleted)"


def test_exit_codes_wait_status_pid_reuse_and_orphans():
    m = base()
    fact(m, "fork", 100, ts=10, a1=200)
    fact(m, "fork", 200, ts=11, a1=300)
    fact(m, "exit_call", 200, ts=12, a0=3, a1=1)
    fact(m, "task_exit", 200, ts=13, a0=1)
    assert 200 not in m.procs and m.exited[200].exit_code == 3
    assert m.procs[300].orphaned
    fact(m, "wait", 100, ts=14, ret=200, a0=3 << 8)
    assert m.exited[200].exit_code == 3
    fact(m, "fork", 100, ts=20, a1=200)  # pid reused: a new process
    assert m.procs[200].start_ns == 20 and not m.procs[200].orphaned
    fact(m, "task_exit", 300, ts=21, a0=1)
    fact(m, "wait", 1, ts=22, ret=300, a0=9)  # killed by SIGKILL
    assert m.exited[300].exit_code == 128 + 9
