"""The recording engine against the running kernel: record layouts, lanes, scope, drops, detach."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from osrewind.probes import records

pytestmark = pytest.mark.kernel


def _probe(**kw):
    from osrewind.probes.loader import Probe, ProbeOptions

    return Probe(ProbeOptions(**kw))


def _gated(argv: list[str]) -> tuple[int, int]:
    """A child that waits on a pipe before it execs argv: (pid, write end). Returns once the child
    sleeps in that read, so the write wakes it (the scheduler sees it switched in)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.read(r, 1)
            fd = os.open(os.devnull, os.O_WRONLY)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(r)
    deadline = time.monotonic() + 10
    while not _asleep_in_read(pid):
        assert time.monotonic() < deadline, "the gated child never blocked on its pipe"
        time.sleep(0.001)
    return pid, w


def _asleep_in_read(pid: int) -> bool:
    """The kernel's word: the task sleeps (state S) inside read(2)."""
    from osrewind.probes import syscall_table

    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/syscall") as f:
            nr = f.read().split()[0]
    except (OSError, IndexError):
        return False
    return state == "S" and nr == str(syscall_table.number("read"))


def test_every_layout_of_the_compiled_program_matches_the_decoder(kernel):
    probe = _probe(ringbuf_pages=16)
    try:
        for name, dt in records.DTYPES.items():
            layout = probe.layout(name)
            assert layout["size"] == dt.itemsize, name
            for field in dt.names:
                assert layout[field] == dt.fields[field][1], (name, field)
    finally:
        probe.close(background=False)


def test_options_attach_only_the_hooks_they_need(kernel):
    probe = _probe(ringbuf_pages=16, syscalls=False, sched=False)
    try:
        assert not probe.raw_hooks()  # no every-syscall hook for anybody
        tps = {k.decode() for k in probe.bpf.tracepoint_fds}
        assert not {t for t in tps if t.startswith("sched:sched_switch") or "wakeup" in t or "migrate" in t}
        assert "sched:sched_process_fork" in tps and "syscalls:sys_enter_openat" in tps
        assert "syscalls:sys_exit_openat" in tps   # the state lane's exits: their own tracepoints
        assert set(probe.readers) == {"events", "rb_short", "rb_facts"}
    finally:
        probe.close(background=False)
    probe = _probe(ringbuf_pages=16)
    try:
        assert probe.raw_hooks() == {"sys_enter", "sys_exit"} and probe.syscall_regs == "btf"
        assert set(probe.readers) == {"events", "rb_short", "rb_facts", "rb_sc", "rb_sched"}
        # the raw sys_exit hook completes the state lane's calls: none of their exit tracepoints
        from osrewind.probes.loader import state_exits

        tps = {k.decode() for k in probe.bpf.tracepoint_fds}
        exits = {f"syscalls:sys_exit_{name}" for name, _ in state_exits()}
        assert "syscalls:sys_exit_openat" in exits and "syscalls:sys_enter_openat" in tps and not exits & tps
    finally:
        probe.close(background=False)


def test_out_of_scope_processes_leave_no_record_and_the_stream_has_every_call(kernel):
    probe = _probe(ringbuf_pages=256)
    try:
        outsider = subprocess.run(["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=2000"],
                                  capture_output=True)
        assert outsider.returncode == 0
        pid, w = _gated(["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=5000"])
        probe.track([pid])
        assert pid in probe.tracked_pids()
        os.write(w, b"g")
        os.close(w)
        batches = []
        while not os.waitpid(pid, os.WNOHANG)[0]:
            batches.append(probe.drain())
            time.sleep(0.005)
        time.sleep(0.02)
        batches.append(probe.drain())
        assert probe.drops() == {}
        counted = probe.agg_sweep(final=True)   # a slow drain (a loaded machine) degrades the stream
    finally:
        probe.close(background=False)
    from osrewind.ingest import decode
    from osrewind.probes import syscall_table

    tables, n = decode.lane_tables(batches, decode.SyscallStream(), "3f2a0000-0000-0000-0000-000000000001", 0)
    import pyarrow as pa

    t = pa.concat_tables(tables).to_pydict()
    assert set(t["tgid"]) <= {pid, 0}  # 0: the other side of a context switch
    nrs = np.array([nr for nr, k in zip(t["nr"], t["kind"], strict=True) if k == records.KIND_CODES["syscall"]])
    assert set(counted["tgid"].tolist()) <= {pid}
    for name in ("read", "write"):
        nr = syscall_table.number(name)
        assert (nrs == nr).sum() + int(counted["count"][counted["nr"] == nr].sum()) >= 5000
    kinds = {records.KINDS[k] for k in t["kind"]}
    assert {"exec", "exit_call", "task_exit", "syscall", "sched_switch"} <= kinds


def test_a_full_stream_ring_degrades_to_aggregates_and_costs_the_state_lane_nothing(kernel):
    """The syscall ring is two pages and nobody drains it while dd runs: the stream lane degrades at
    once (the kernel counts dd's syscalls per thread and number instead of recording them), drops
    nothing, and the state lane keeps every fact."""
    from osrewind.probes import syscall_table

    probe = _probe(ringbuf_pages=1, sched=False)
    try:
        pid, w = _gated(["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=20000"])
        probe.track([pid])
        os.write(w, b"g")
        os.close(w)
        os.waitpid(pid, 0)
        time.sleep(0.02)
        drops = probe.drops()
        d = probe.drain()
        agg = probe.agg_sweep(final=True)
        assert not len(probe.agg_sweep(final=True))  # taken once
    finally:
        probe.close(background=False)
    assert drops == {}
    calls = {}
    for row in agg:
        assert row["tgid"] == pid and row["first"] <= row["last"] and row["comm"] == b"dd"
        calls[int(row["nr"])] = calls.get(int(row["nr"]), 0) + int(row["count"])
    written = records.records_of(d.raw["rb_sc"], "sc_call")
    for name in ("read", "write"):
        nr = syscall_table.number(name)
        assert calls.get(nr, 0) + int((written["nr"] == nr).sum()) >= 20_000, name
        assert calls.get(nr, 0) > 19_000, name
    # the state lane kept every fact, each in the ring of its size class: with a string, with a short
    # path, without a string
    with_str = {records.KINDS[k] for k in records.records_of(d.raw["events"], "event")["kind"]}
    short = records.records_of(d.raw["rb_short"], "event_short")
    compact = {records.KINDS[k] for k in records.records_of(d.raw["rb_facts"], "fact")["kind"]}
    assert "exec" in with_str and {"exit_call", "task_exit", "close"} <= compact
    assert {records.KINDS[k] for k in short["kind"]} == {"open"} and not with_str & compact
    assert (short["len1"] < records.STR_SHORT).all()


def test_close_detaches_the_every_syscall_hooks_at_once(kernel):
    def our_prog_ids() -> set[int]:
        """The BPF programs this process holds (fdinfo of its fds), so other tracers on the machine
        (a parallel recording, a benchmark) never count."""
        ids = set()
        for fd in os.listdir("/proc/self/fdinfo"):
            try:
                text = open(f"/proc/self/fdinfo/{fd}").read()
            except OSError:
                continue
            m = re.search(r"^prog_id:\s*(\d+)", text, re.M)
            if m:
                ids.add(int(m.group(1)))
        return ids

    mine: set[int] = set()

    def links() -> int:
        out = json.loads(subprocess.run(["bpftool", "-j", "link", "show"], capture_output=True, text=True).stdout)
        return sum(1 for link in out if link.get("tp_name") == "sys_enter" and link.get("prog_id") in mine)

    if subprocess.run(["which", "bpftool"], capture_output=True).returncode:
        pytest.skip("bpftool is not installed")
    before = links()
    probe = _probe(ringbuf_pages=16)
    mine |= our_prog_ids()
    assert links() == before + 1
    t = time.monotonic()
    probe.close()  # the default: what `record` does
    assert time.monotonic() - t < 2.0
    assert links() == before  # gone when close returns, not when a helper finishes


def test_the_detach_helper_is_a_small_program_that_releases_every_tracepoint(kernel):
    """The classic tracepoints are released by a helper program of its own (not a fork of the
    recorder, which would share its memory copy-on-write while the store catches up): the kernel
    shows the helper holding our tracepoint programs' perf events, with a few MB of memory, and
    then holding none of them, gone."""
    def perf_links() -> list[dict]:
        out = subprocess.run(["bpftool", "-j", "perf", "show"], capture_output=True, text=True)
        return json.loads(out.stdout or "[]")

    def rss_kb(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])

    if subprocess.run(["which", "bpftool"], capture_output=True).returncode:
        pytest.skip("bpftool is not installed")
    probe = _probe(ringbuf_pages=16)
    ours = {link["prog_id"] for link in perf_links() if link["pid"] == os.getpid()}
    assert len(ours) >= 10   # the state lane's classic tracepoints (exec, exit, openat, ...)
    mine = rss_kb(os.getpid())
    probe.close()
    helper = probe.release_helper
    assert helper is not None
    helper_rss = rss_kb(helper)   # releasing takes seconds (RCU grace periods): it is still there
    with open(f"/proc/{helper}/cmdline", "rb") as f:
        assert b"release.py" in f.read()
    assert helper_rss < min(64 * 1024, mine // 2), (helper_rss, mine)
    links = perf_links()
    held = {link["prog_id"] for link in links if link["pid"] == helper}
    assert held and held <= ours
    assert not {link["prog_id"] for link in links if link["pid"] == os.getpid()} & ours
    deadline = time.monotonic() + 60
    while os.path.exists(f"/proc/{helper}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{helper}"), "the helper never finished"
    assert not {link["prog_id"] for link in perf_links()} & ours   # every one released


NAMING = """
import ctypes, os, sys
def me():
    with open("/proc/thread-self/comm") as f:
        return f.read().strip()
libc = ctypes.CDLL(None)
out = []
for name in ("first-name", "second-name"):
    libc.prctl(15, name.encode(), 0, 0, 0)
    for _ in range(500):
        os.getppid()
    out.append(me())
print(" ".join(out))
"""


def test_every_syscall_bears_its_threads_name_of_the_moment(kernel, tmp_path):
    """The kernel sends a thread's name only when it changes (exec, prctl): each syscall still bears
    the name the thread had, as the thread itself read it from /proc, before and after a rename."""
    import sys

    from conftest import osrewind
    from osrewind.ingest.store import Store
    from osrewind.probes import syscall_table

    db = tmp_path / "db"
    out = osrewind("record", "--quiet", "--json", "--", sys.executable, "-c", NAMING, db=db)
    assert out.returncode == 0, out.stderr
    seen = out.stdout.strip().splitlines()[0].split()
    run = json.loads(out.stdout.strip().splitlines()[-1])["run_id"]
    with Store(str(db), mode="read", purpose="test") as store:
        got = dict(store.query("SELECT comm, count() FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' "
                               "AND nr = {nr:UInt16} GROUP BY comm", {"r": run, "nr": syscall_table.number("getppid")}))
    assert seen == ["first-name", "second-name"]
    assert {k.decode() if isinstance(k, bytes) else k: v for k, v in got.items()} == {"first-name": 500,
                                                                                    "second-name": 500}


def _facts(probe) -> list[dict]:
    import pyarrow as pa

    from osrewind.ingest import decode

    time.sleep(0.02)
    tables, _n = decode.lane_tables([probe.drain()], decode.SyscallStream(), "3f2a0000-0000-0000-0000-000000000001", 0)
    return pa.concat_tables(tables).to_pylist()


@pytest.mark.parametrize("identity", [True, False])
def test_fd_facts_carry_what_the_kernel_opened(kernel, tmp_path, identity):
    """With the kernel's BTF an open says which inode it opened and the path the kernel resolved
    (compared with fstat and realpath), chdir the cwd the kernel holds, pipes and sockets their
    inodes; without it (a kernel with no BTF) only what the program passed."""
    import socket

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "f").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "dir")
    probe = _probe(ringbuf_pages=16, syscalls=False, sched=False, kernel_identity=identity)
    here = os.getcwd()
    try:
        assert probe.identity == ("kernel" if identity else "path")
        probe.track([os.getpid()])
        fd = os.open(tmp_path / "link" / "f", os.O_RDONLY)
        os.chdir(tmp_path / "link")
        r, w = os.pipe()
        a, b = socket.socketpair()
        rows = [row for row in _facts(probe) if row["tgid"] == os.getpid()]
    finally:
        os.chdir(here)
        probe.close(background=False)
    st = os.fstat(fd)
    by = {}
    for row in rows:
        by.setdefault(records.KINDS[row["kind"]], []).append(row)
    opened = [row for row in by["open"] if row["ret"] == fd][-1]  # (track() opened /proc before it)
    chdir = by["chdir"][-1]
    pipe = next(row for row in by["pipe"] if row["a0"] == r)
    pair = next(row for row in by["socketpair"] if row["a0"] == a.fileno())
    assert opened["path"] == str(tmp_path / "link" / "f").encode()
    if identity:
        assert opened["path2"] == os.path.realpath(tmp_path / "link" / "f").encode()
        assert opened["a4"] == st.st_ino and os.makedev(opened["a5"] >> 20, opened["a5"] & 0xFFFFF) == st.st_dev
        assert chdir["path2"] == os.path.realpath(tmp_path / "dir").encode()
        assert pipe["a4"] == os.fstat(r).st_ino == os.fstat(w).st_ino
        assert (pair["a4"], pair["a5"]) == (os.fstat(a.fileno()).st_ino, os.fstat(b.fileno()).st_ino)
    else:
        assert opened["path2"] == b"" and opened["a4"] == 0 and chdir["path2"] == b"" and pipe["a4"] == 0
    for x in (fd, r, w):
        os.close(x)
    a.close()
    b.close()


def _proc_start_estimate(pid: int) -> int:
    """/proc's start time of pid (clock ticks of CLOCK_BOOTTIME) as CLOCK_MONOTONIC ns."""
    with open(f"/proc/{pid}/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])
    boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * 10**9 // os.sysconf("SC_CLK_TCK") - boot_minus_mono


def test_processes_carry_the_kernels_exact_start_and_real_parent(kernel):
    """A fork says the child's exact start and real parent (CLONE_PARENT: the forker's parent); a
    pidfd opened by the recorder makes the kernel say the same of any process (the /proc baseline's
    way to exact start times): two kernel paths, one answer, within /proc's tick of its own."""
    import ctypes

    from osrewind.probes import syscall_table

    probe = _probe(ringbuf_pages=16, syscalls=False, sched=False)
    r, w = os.pipe()
    try:
        probe.track([os.getpid()])
        child = os.fork()
        if child == 0:
            os.read(r, 1)
            os._exit(0)
        libc = ctypes.CDLL(None, use_errno=True)
        sibling = libc.syscall(syscall_table.number("clone"), 0x00008000 | 17, 0, 0, 0, 0)  # CLONE_PARENT|SIGCHLD
        if sibling == 0:
            os._exit(0)
        estimate = _proc_start_estimate(child)
        os.close(os.pidfd_open(child))   # as the recorder does for its baseline
        rows = _facts(probe)
    finally:
        os.write(w, b"g")
        probe.close(background=False)
    os.waitpid(child, 0)
    fork = next(row for row in rows if records.KINDS[row["kind"]] == "fork" and row["a1"] == child)
    clone = next(row for row in rows if records.KINDS[row["kind"]] == "fork" and row["a1"] == sibling)
    assert fork["a5"] == os.getpid() and clone["a5"] == os.getppid()
    assert 0 < fork["a4"] <= fork["ts"] and fork["ts"] - fork["a4"] < 10**9
    assert abs(fork["a4"] - estimate) <= 10**9 // os.sysconf("SC_CLK_TCK") + 10**6
    told = next(row for row in rows if records.KINDS[row["kind"]] == "identity" and row["tgid"] == child)
    assert (told["a0"], told["a1"]) == (fork["a4"], os.getpid())


SPINNER = r"""
import os, sys
os.sched_setaffinity(0, {1})
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))   # nothing switches it out while it spins
r = int(sys.argv[1])
os.set_blocking(r, False)
print("spinning", flush=True)
while True:                      # never blocks: the CPU never switches away from it
    os.getppid()
    try:
        if os.read(r, 1):
            break
    except BlockingIOError:
        pass
for _ in range(int(sys.argv[2])):
    os.getppid()
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_running_process_put_in_scope_is_recorded_at_once(kernel):
    """A process put in scope while it runs, and that never switches out after (a FIFO spinner pinned
    to CPU 1), is recorded from then on, not from its next switch (what a scope test cached per CPU
    at context switches would get wrong): every one of the getppid() calls it makes after the
    test's go is there (recorded, or counted degraded)."""
    from osrewind.probes import syscall_table

    calls = 3000
    probe = _probe(ringbuf_pages=256, sched=False)
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", SPINNER, str(r), str(calls)], pass_fds=(r,),
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"spinning\n"
        time.sleep(0.05)
        probe.track([child.pid])
        time.sleep(0.05)
        os.write(w, b"g")
        assert child.wait(timeout=30) == 0
        time.sleep(0.02)
        d = probe.drain()
        agg = probe.agg_sweep(final=True)
    finally:
        child.kill()
        os.close(r)
        os.close(w)
        probe.close(background=False)
    nr = syscall_table.number("getppid")
    got = records.records_of(d.raw["rb_sc"], "sc_call")
    recorded = int(((got["nr"] == nr) & (got["tgid"] == child.pid)).sum())
    counted = int(agg["count"][(agg["nr"] == nr) & (agg["tgid"] == child.pid)].sum())
    assert recorded + counted >= calls, (recorded, counted)


THREADS_ON_CPU1 = r"""
import os, sys, threading
cmd, ack, calls, main_cpu, wait = (int(a) for a in sys.argv[1:6])
os.sched_setaffinity(0, {main_cpu})
def work():
    os.sched_setaffinity(0, {1})
    for _ in range(calls):
        os.getppid()
    if wait:   # the test does something while this thread lives on, then lets it exit
        os.write(ack, b"b")
        os.read(cmd, 1)
made = []
print("ready", flush=True)
while os.read(cmd, 1) == b"t":
    t = threading.Thread(target=work)
    t.start()
    t.join()
    made.append(t.native_id)
    os.write(ack, b"k")
print(" ".join(map(str, made)), flush=True)
"""


class _ThreadsOnCpu1:
    """A child process (THREADS_ON_CPU1) whose main thread runs on ``main_cpu`` and that makes, on each
    :meth:`thread`, a thread on CPU 1 which calls getppid() ``calls`` times and exits there. The test
    process stays on CPU 0 but for :meth:`outsider`. For the tests of the raw syscall hooks' scope
    memos, which a task that dies on CPU 1 could leave to the next task made there (its stack)."""

    def __init__(self, calls: int, main_cpu: int, wait: bool = False) -> None:
        self.calls = calls
        self.cmd_r, self.cmd_w = os.pipe()
        self.ack_r, self.ack_w = os.pipe()
        self.mine = os.sched_getaffinity(0)
        self.child = subprocess.Popen(
            [sys.executable, "-c", THREADS_ON_CPU1, str(self.cmd_r), str(self.ack_w), str(calls),
             str(main_cpu), str(int(wait))], pass_fds=(self.cmd_r, self.ack_w), stdout=subprocess.PIPE)
        assert self.child.stdout.readline() == b"ready\n"
        os.sched_setaffinity(0, {0})

    def thread(self, meanwhile=None) -> None:
        """One thread, start to exit; with ``wait``, ``meanwhile()`` runs after its calls, before its exit."""
        os.write(self.cmd_w, b"t")
        if meanwhile is not None:
            assert os.read(self.ack_r, 1) == b"b"
            meanwhile()
            os.write(self.cmd_w, b"x")
        assert os.read(self.ack_r, 1) == b"k"

    @staticmethod
    def outsider(calls: int) -> None:
        """A process out of scope made on CPU 1 (where it gets the stack of the task that died there
        last), which calls getppid() ``calls`` times and exits."""
        os.sched_setaffinity(0, {1})
        pid = os.fork()
        if pid == 0:
            for _ in range(calls):
                os.getppid()
            os._exit(0)
        os.sched_setaffinity(0, {0})
        os.waitpid(pid, 0)

    def finish(self) -> list[int]:
        """The threads' tids, in order; the child has exited."""
        os.write(self.cmd_w, b"q")
        tids = [int(t) for t in self.child.stdout.readline().split()]
        assert self.child.wait(timeout=30) == 0
        return tids

    def close(self) -> None:
        os.sched_setaffinity(0, self.mine)
        self.child.kill()
        for fd in (self.cmd_r, self.cmd_w, self.ack_r, self.ack_w):
            os.close(fd)


def _getppid_counts_not(calls: int, tids: list[int], got: np.ndarray, agg: dict) -> dict[int, int]:
    """The threads among ``tids`` whose getppid() calls, recorded (``got``, sc_call records) or
    counted degraded (``agg``), are not ``calls``: {tid: how many}."""
    from osrewind.probes import syscall_table

    nr = syscall_table.number("getppid")
    wrong = {}
    for tid in tids:
        n = int(((got["nr"] == nr) & (got["tid"] == tid)).sum())
        n += int(agg["count"][(agg["nr"] == nr) & (agg["tid"] == tid)].sum())
        if n != calls:
            wrong[tid] = n
    return wrong


def _rounds_on_cpu1(rounds: int, calls: int, main_cpu: int, step, wait: bool = False,
                    track_each_round: bool = False) -> tuple[list[int], np.ndarray, dict, int]:
    """Records a _ThreadsOnCpu1 child while ``step(probe, threads)`` runs ``rounds`` times (the child
    is put in scope once before, or before each round). Returns the threads' tids, the syscall
    records (drained after each round), the degraded counts and the child's pid."""
    probe = _probe(ringbuf_pages=256, sched=False)
    threads, batches = None, []
    try:
        threads = _ThreadsOnCpu1(calls, main_cpu, wait)
        pid = threads.child.pid
        for i in range(rounds):
            if track_each_round or i == 0:
                probe.track([pid])
            step(probe, threads)
            batches.append(probe.drain())
        tids = threads.finish()
        time.sleep(0.02)
        batches.append(probe.drain())
        agg = probe.agg_sweep(final=True)
    finally:
        if threads is not None:
            threads.close()
        probe.close(background=False)
    assert len(tids) == rounds
    return tids, np.concatenate([records.records_of(b.raw["rb_sc"], "sc_call") for b in batches]), agg, pid


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_thread_on_a_dead_out_of_scope_tasks_stack_is_recorded(kernel):
    """The raw syscall hooks remember, per CPU, the last task they found out of scope by the address
    of its registers, which is the top of its kernel stack. A task that dies leaves its stack to the
    next one made on that CPU: here, each time, a process out of scope makes a syscall on CPU 1 and
    exits there, then a recorded process makes a thread on CPU 1. Every getppid() of every thread is
    there (recorded, or counted degraded): none is taken for the dead process's."""
    def step(probe, threads):
        threads.outsider(1)
        threads.thread()

    calls = 200
    tids, got, agg, _pid = _rounds_on_cpu1(40, calls, main_cpu=1, step=step)
    wrong = _getppid_counts_not(calls, tids, got, agg)
    assert not wrong, f"threads with calls missing (of {calls} each): {wrong}"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_task_on_a_dead_recorded_threads_stack_is_not_recorded_as_it(kernel):
    """The raw syscall hooks also remember, per CPU, the last task they found in scope, with its
    pid_tgid, by the address of its registers (the top of its kernel stack). Here, each time, a
    thread of a recorded process makes its calls on CPU 1 and exits there, then a process out of
    scope is made on CPU 1 (where it gets that stack) and makes its own calls. Every recorded
    thread has exactly its own getppid() calls: none of the outsider's is taken for the dead
    thread's, and nothing of the outsider's is recorded."""
    def step(probe, threads):
        threads.thread()
        threads.outsider(300)

    calls = 200   # the main thread (CPU 0) makes no syscall on CPU 1
    tids, got, agg, pid = _rounds_on_cpu1(40, calls, main_cpu=0, step=step)
    wrong = _getppid_counts_not(calls, tids, got, agg)
    assert not wrong, f"threads whose getppid() count is not their own {calls}: {wrong}"
    assert set(got["tgid"].tolist()) <= {pid}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_process_taken_out_of_scope_leaves_no_memo_behind(kernel):
    """As the test before, but the recorded process is taken out of scope (``Probe.untrack``, as the
    recorder does with a process it finds dead, or when a recording fails) while its thread still
    lives on CPU 1; the thread then exits there, out of scope, and a process out of scope is made
    on CPU 1. Each round puts the process back in scope. Every thread has exactly its own getppid()
    calls: the memo of the thread as in scope did not outlive its leaving the scope."""
    def step(probe, threads):
        threads.thread(meanwhile=lambda: probe.untrack(threads.child.pid))
        threads.outsider(300)

    calls = 200
    tids, got, agg, _pid = _rounds_on_cpu1(40, calls, main_cpu=0, step=step, wait=True, track_each_round=True)
    wrong = _getppid_counts_not(calls, tids, got, agg)
    assert not wrong, f"threads whose getppid() count is not their own {calls}: {wrong}"


EXEC_AFTER_LEADER = r"""
import ctypes, os, sys, threading, time
gate, count = int(sys.argv[1]), sys.argv[2]
os.sched_setaffinity(0, {1})
os.read(gate, 1)
def leader_state():
    with open(f"/proc/{os.getpid()}/task/{os.getpid()}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
def run():
    while leader_state() != "Z":   # until the leader thread has exited
        time.sleep(0.002)
    print(threading.get_native_id(), flush=True)
    os.execv("/bin/dd", ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=" + count])
threading.Thread(target=run).start()
ctypes.CDLL(None).syscall(60, 0)   # SYS_exit: the leader thread alone exits
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_a_thread_that_execs_after_its_leader_exited_is_recorded_under_the_pid(kernel):
    """A thread other than the leader execs after the leader thread has exited: the kernel gives it
    the leader's pid (de_thread), with no task exiting at the exec. Its execve returns, and the new
    program's calls are made, under that pid, and are recorded so (not under the thread's old tid,
    which a CPU's scope memo still held)."""
    from osrewind.probes import syscall_table

    count = 3000
    probe = _probe(ringbuf_pages=2048, sched=False)
    r, w = os.pipe()
    child = subprocess.Popen([sys.executable, "-c", EXEC_AFTER_LEADER, str(r), str(count)], pass_fds=(r,),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        probe.track([child.pid])
        os.write(w, b"g")
        old_tid = int(child.stdout.readline())
        assert child.wait(timeout=30) == 0
        time.sleep(0.02)
        d = probe.drain()
        agg = probe.agg_sweep(final=True)
    finally:
        child.kill()
        os.close(r)
        os.close(w)
        probe.close(background=False)
    got = records.records_of(d.raw["rb_sc"], "sc_call")
    mine = got[got["tgid"] == child.pid]
    execve = mine[(mine["nr"] == syscall_table.number("execve")) & (mine["ret"] == 0)]
    assert len(execve) == 1 and execve["tid"][0] == child.pid, execve[["tid", "ret"]]
    after = mine[mine["ts"] > execve["ts"][0]]
    assert len(after) and set(after["tid"].tolist()) == {child.pid}, (old_tid, set(after["tid"].tolist()))
    for name in ("read", "write"):
        nr = syscall_table.number(name)
        n = int(((after["nr"] == nr) & (after["tid"] == child.pid)).sum())
        n += int(agg["count"][(agg["nr"] == nr) & (agg["tid"] == child.pid)].sum())
        assert n >= count, (name, n)


ARGS = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(fd, flush=True)
sys.stdin.read(1)
os.pread(fd, 7, 4242)
os.lseek(fd, 31337, os.SEEK_SET)
"""


@pytest.mark.parametrize("regs", ["btf", "probe_read"])
def test_every_syscall_carries_its_arguments_as_the_program_passed_them(kernel, regs, monkeypatch, tmp_path):
    """The every-syscall hooks read the argument registers with plain loads where the kernel's BTF
    declares the hooks ("btf"), else with a probe read (a kernel without BTF: OSREWIND_BTF pointing
    nowhere stands in for one). Either way pread64 and lseek carry the arguments the program gave."""
    from osrewind.ingest import decode
    from osrewind.probes import btf, syscall_table

    if regs == "probe_read":
        monkeypatch.setenv(btf.ENV, str(tmp_path / "no-btf"))
    elif btf.offsets() is None:
        pytest.skip("this kernel has no BTF")
    probe = _probe(ringbuf_pages=64, sched=False)
    try:
        assert probe.syscall_regs == regs
        data = tmp_path / "data"
        data.write_bytes(b"x" * 8192)
        child = subprocess.Popen([sys.executable, "-c", ARGS, str(data)], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        fd = int(child.stdout.readline())
        probe.track([child.pid])
        child.stdin.write(b"g")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
        time.sleep(0.02)
        d = probe.drain()
    finally:
        probe.close(background=False)
    tables, _n = decode.lane_tables([d], decode.SyscallStream(), "3f2a0000-0000-0000-0000-000000000002", 0)
    import pyarrow as pa

    t = pa.concat_tables(tables).to_pylist()
    calls = [r for r in t if r["kind"] == records.KIND_CODES["syscall"] and r["tgid"] == child.pid]
    pread = [r for r in calls if r["nr"] == syscall_table.number("pread64")]
    lseek = [r for r in calls if r["nr"] == syscall_table.number("lseek")]
    assert [(r["a0"], r["a2"], r["a3"], r["ret"]) for r in pread] == [(fd, 7, 4242, 7)]
    assert [(r["a0"], r["a1"], r["a2"], r["ret"]) for r in lseek] == [(fd, 31337, os.SEEK_SET, 31337)]
