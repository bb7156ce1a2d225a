"""Real recordings of real programs on this kernel, rewound at sampled instants.

Each workload marks its progress with recorded mkdir() calls (``marks/step-N``) and sleeps after each
step; the test rewinds to the midpoint between two markers and asserts exactly the processes and fds
that must be there."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import WORKLOADS, as_at_a_terminal, osrewind, record_json
from osrewind.ingest.store import Store
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

pytestmark = pytest.mark.kernel


def markers(store: Store, run_id: str) -> dict[int, int]:
    rows = store.query("SELECT path, ts FROM events WHERE run_id = {r:UUID} AND kind = 'mkdir' AND ret = 0 "
                       "AND position(path, '/marks/step-') > 0 ORDER BY ts", {"r": run_id})
    return {int(p.rsplit("-", 1)[1]): int(ts) for p, ts in rows}


def high_fds(proc) -> dict[int, str]:
    return {n: f.target for n, f in proc.fds.items() if n >= 3}


@pytest.fixture(scope="module")
def fdsteps(kernel, store_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("fdsteps")
    summary = record_json(store_dir, "--name", "fdsteps", "--", sys.executable, str(WORKLOADS / "fdsteps.py"),
                          str(work), check_exit=3)
    with Store(str(store_dir)) as store:
        run = resolve_run(store, summary["run_id"])
        marks = markers(store, run.run_id)
        mids = {k: (marks[k] + marks[k + 1]) // 2 for k in range(7)}
        states = {k: state_at(store, run, at) for k, at in mids.items()}
        states["end"] = state_at(store, run, run.end_ns)
    return summary, run, work, states


def test_run_summary(fdsteps):
    summary, run, _work, _ = fdsteps
    assert summary["status"] == "complete" and summary["exit_code"] == 3 and summary["lost"] == 0
    assert run.exit_code == 3 and run.events == summary["events"] > 50
    assert run.command[1].endswith("fdsteps.py")


def test_state_between_every_pair_of_steps(fdsteps):
    _summary, _run, work, st = fdsteps
    w = str(work)
    py = [p for p in st[0].processes if any(a.endswith("fdsteps.py") for a in p.argv)]
    assert len(py) == 1
    pid = py[0].pid

    def proc(k, pid_):
        return {p.pid: p for p in st[k].processes}[pid_]

    assert [p.pid for p in st[0].processes] == [pid]
    assert high_fds(proc(0, pid)) == {}
    assert proc(0, pid).cwd == w
    assert set(proc(0, pid).fds) >= {0, 1, 2}
    assert high_fds(proc(1, pid)) == {3: f"{w}/a.txt"}
    s2 = high_fds(proc(2, pid))
    assert s2[3] == s2[10] == f"{w}/a.txt" and set(s2) == {3, 4, 5, 10}
    assert re.fullmatch(r"pipe:\[\d+\]", s2[4]) and s2[5] == s2[4]  # as /proc shows a pipe: by inode
    assert proc(2, pid).fds[4].cloexec
    assert not proc(2, pid).fds[10].cloexec

    # step 3: the child exec'd sleep: inherited 3 and 10, lost the CLOEXEC pipe
    kids = [p for p in st[3].processes if p.ppid == pid]
    assert len(kids) == 1
    child = kids[0]
    assert child.argv == ["sleep", "0.6"] and child.exe.endswith("sleep")
    assert high_fds(child) == {3: f"{w}/a.txt", 10: f"{w}/a.txt"}
    assert high_fds(proc(3, pid)) == s2

    # step 4: rename moves every open fd's path; close(3) in the parent only
    assert high_fds(proc(4, pid)) == {10: f"{w}/b.txt", 4: s2[4], 5: s2[5]}
    assert high_fds(proc(4, child.pid)) == {3: f"{w}/b.txt", 10: f"{w}/b.txt"}

    # step 5: chdir, fd 3 reused for a relative open, a thread's open belongs to the process
    p5 = proc(5, pid)
    assert p5.cwd == f"{w}/sub"
    assert high_fds(p5) == {3: f"{w}/sub/c.txt", 4: s2[4], 5: s2[5], 6: "/etc/hostname", 10: f"{w}/b.txt"}
    assert p5.threads == 1

    # step 6: unlink marks the open file deleted; pipe closed; close_range/close of 10
    assert high_fds(proc(6, pid)) == {3: f"{w}/sub/c.txt (deleted)", 6: "/etc/hostname"}
    assert child.pid in {p.pid for p in st[6].processes}

    # after the child exited and was reaped
    end = st["end"]
    assert end.processes == []
    gone = {p.pid: p for p in end.exited}
    assert gone[child.pid].exit_code == 0 and gone[pid].exit_code == 3


def test_state_cli_json_and_human(fdsteps, store_dir):
    summary, run, work, _ = fdsteps
    out = osrewind("state", summary["run_id"][:8], "--at", "+0s", "--json", db=store_dir, check=True)
    data = json.loads(out.stdout)
    assert data["run"]["run_id"] == summary["run_id"] and data["at_offset_ns"] == 0
    assert len(data["processes"]) == 1 and data["processes"][0]["from_snapshot"]
    human = osrewind("state", "fdsteps", "--at", "-1ms", db=store_dir, check=True).stdout
    assert "run " + summary["run_id"][:8] in human and "processes" in human
    listing = osrewind("runs", db=store_dir, check=True).stdout
    assert summary["run_id"][:8] in listing and "fdsteps" in listing
    runs = json.loads(osrewind("runs", "--json", db=store_dir, check=True).stdout)
    mine = [r for r in runs if r["run_id"] == summary["run_id"]][0]
    assert mine["exit_code"] == 3 and mine["status"] == "complete" and mine["lost"] == 0


def test_record_exit_code_and_failed_open(kernel, store_dir, tmp_path):
    summary = record_json(store_dir, "--", "/bin/sh", "-c", f"cat {tmp_path}/missing; exit 7", check_exit=7)
    with Store(str(store_dir)) as store:
        rows = store.query("SELECT ret, path FROM events WHERE run_id = {r:UUID} AND kind = 'open' "
                           "AND path = {p:String}", {"r": summary["run_id"], "p": f"{tmp_path}/missing"})
    assert rows == [(-2, f"{tmp_path}/missing")]  # ENOENT, recorded with its path


PRIORITIES = r"""
import os, time
print("self", os.getpriority(os.PRIO_PROCESS, 0), os.sched_getscheduler(0))
for _ in range(200000):
    os.getppid()      # records for the writer, the inserters and the store engine to work on
time.sleep(1.2)       # the recorder moves the threads the engine made since every 0.5 s
rec = os.getppid()
for tid in os.listdir(f"/proc/{rec}/task"):
    with open(f"/proc/{rec}/task/{tid}/stat") as f:
        comm, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
    st = rest.split()
    print("thread", tid, comm.replace(" ", "_"), st[16], st[38])   # nice, policy
"""


def test_the_recorders_own_work_runs_in_the_background_and_the_command_is_untouched(kernel, tmp_path):
    """While a command runs recorded, the recorder's draining thread is real-time (SCHED_FIFO) and the
    work behind the spool runs at nice 19: the store engine's threads (named by the engine) and the
    writer's threads. The command itself keeps the nice value and policy it would have had. All as
    the kernel shows them (/proc)."""
    out = osrewind("record", "--quiet", "--json", "--", sys.executable, "-c", PRIORITIES, db=tmp_path / "db")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == f"self {os.getpriority(os.PRIO_PROCESS, 0)} {os.SCHED_OTHER}"
    threads = [line.split()[1:] for line in lines if line.startswith("thread ")]
    rec = {int(tid): (comm, int(nice), int(policy)) for tid, comm, nice, policy in threads}
    drain = [tid for tid, (_, _, policy) in rec.items() if policy == os.SCHED_FIFO]
    assert len(drain) == 1 and rec[drain[0]][1] == 0
    engine = [t for t, (comm, _, _) in rec.items() if comm != "python" and not comm.startswith("python")]
    assert len(engine) >= 3, rec
    assert all(rec[t][1] == 19 for t in engine), rec
    # the writer and its two inserters too (Python threads: named "python" by the kernel)
    assert sum(1 for t, (_, nice, _) in rec.items() if nice == 19) >= len(engine) + 3, rec


def test_daemon_reparented_stays_in_scope(kernel, store_dir, tmp_path):
    flag = tmp_path / "daemon-done"
    # the daemon double-forks away from the recorded shell, outlives it, then writes a file
    script = f"( sleep 0.4; echo done > {flag} ) & exit 0"
    summary = record_json(store_dir, "--", "/bin/sh", "-c", script, check_exit=0)
    deadline = time.time() + 5
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.05)
    with Store(str(store_dir)) as store:
        run = resolve_run(store, summary["run_id"])
        st = state_at(store, run, run.end_ns)
    orphans = [p for p in st.processes if p.orphaned]
    assert orphans, [p.to_json() for p in st.processes]


def test_ctrl_c_keeps_what_was_recorded(kernel, store_dir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(store_dir), "record", "--quiet",
                             "--json", "--name", "interrupted", "--", "/bin/sh", "-c",
                             f"touch {tmp_path}/before; sleep 30"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=as_at_a_terminal)
    deadline = time.time() + 30
    while not (tmp_path / "before").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "interrupted"
    with Store(str(store_dir)) as store:
        run = resolve_run(store, summary["run_id"])
        touched = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND kind = 'open' "
                              "AND path = {p:String}", {"r": run.run_id, "p": f"{tmp_path}/before"})
    assert run.status == "interrupted" and touched == [(1,)]


def wait_recording(db: Path, timeout: float = 60) -> None:
    """Until the recorder says (in its lock file) that its scope is live."""
    lock = db / ".osrewind.lock"
    deadline = time.time() + timeout
    while time.time() < deadline and "recording run" not in (lock.read_text() if lock.exists() else ""):
        time.sleep(0.05)


def test_record_existing_pid_tree(kernel, tmp_path):
    db = tmp_path / "pidstore"
    go = tmp_path / "go"
    target = subprocess.Popen(["/bin/sh", "-c", f"sleep 30 & while [ ! -e {go} ]; do sleep 0.05; done; "
                               f"echo x > {tmp_path}/late; kill $!"])
    try:
        time.sleep(0.2)
        rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                                "--pid", str(target.pid)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_recording(db)
        go.touch()
        target.wait(timeout=30)  # reaped by us: the recorder must notice and stop
        out, err = rec.communicate(timeout=60)
    finally:
        target.kill()
    assert rec.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "complete"
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        first = state_at(store, run, run.start_ns)
        rows = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND kind = 'open' "
                           "AND path = {p:String}", {"r": run.run_id, "p": f"{tmp_path}/late"})
    pids = {p.pid: p for p in first.processes}
    assert target.pid in pids and pids[target.pid].from_snapshot
    assert any(p.argv == ["sleep", "30"] for p in first.processes)  # the child alive at attach time
    assert rows == [(1,)]


def test_record_pid_that_is_gone(kernel, tmp_path):
    out = osrewind("record", "--pid", "999999999", db=tmp_path / "db")
    assert out.returncode == 2 and out.stderr.strip() == "osrewind: error: no such process: 999999999"


def test_a_store_reads_while_it_records_and_refuses_writers(kernel, tmp_path):
    """Reading commands see what the recording has stored so far (the recording run says
    ``recording``); a command that would write the store is refused in one line; nothing is lost."""
    db = tmp_path / "busy"
    held = tmp_path / "held"
    go = tmp_path / "go"
    script = f"echo x > {held}; exec 7<{held}; while [ ! -e {go} ]; do sleep 0.05; done"
    rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json", "--",
                            "/bin/sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_recording(db)
        deadline = time.time() + 60
        while True:   # until the open of fd 7 is stored (the writer inserts about twice a second)
            out = osrewind("state", "last", "--at", "end", "--json", db=db)
            assert out.returncode == 0, out.stderr
            procs = [p for p in json.loads(out.stdout)["processes"]
                     if any(f["fd"] == 7 and f["target"] == str(held) for f in p["fds"])]
            if procs or time.time() > deadline:
                break
            time.sleep(0.2)
        if not procs:   # what the store held then, to tell a missing fact from a stale keyframe
            facts = osrewind("events", "last", "--kind", "open", "--kind", "exec", "--json", db=db)
            runs = osrewind("runs", "--json", db=db)
            pytest.fail(f"the recorded open never showed while recording: {out.stdout[-1500:]}\n"
                        f"runs: {runs.stdout[-800:]}\nfacts: {facts.stdout[-3000:]}{facts.stderr[-300:]}")
        pid = procs[0]["pid"]
        assert [f["target"] for f in procs[0]["fds"] if f["fd"] == 7] == [os.readlink(f"/proc/{pid}/fd/7")]
        runs = json.loads(osrewind("runs", "--json", db=db).stdout)
        assert runs[0]["status"] == "recording" and runs[0]["events"] > 0
        out = osrewind("reindex", "last", db=db)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 4 and len(lines) == 1, out.stderr
        assert "in use by osrewind pid" in lines[0] and "recording run" in lines[0]
    finally:
        go.touch()
        stdout, stderr = rec.communicate(timeout=60)
    assert rec.returncode == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    runs = json.loads(osrewind("runs", "--json", db=db).stdout)
    assert runs[0]["status"] == "complete" and runs[0]["events"] == summary["events"]


def test_layout_of_compiled_program_matches_decoder(kernel):
    from osrewind.probes.loader import Probe, ProbeOptions
    from osrewind.probes.records import EVENT_DTYPE

    probe = Probe(ProbeOptions(ringbuf_pages=16))
    try:
        layout = probe.layout()
    finally:
        probe.close()
    assert layout["size"] == EVENT_DTYPE.itemsize
    for name in EVENT_DTYPE.names:
        assert layout[name] == EVENT_DTYPE.fields[name][1], name


def test_print_bpf_shows_final_program():
    out = osrewind("record", "--print-bpf", "--system")
    assert out.returncode == 0
    assert "#define SYSTEM_WIDE" in out.stdout and "TRACEPOINT_PROBE(sched, sched_process_fork)" in out.stdout


def test_the_program_calls_no_helper_that_makes_bcc_read_every_kernel_symbol():
    """BCC compiles the program at every recording; a call of bpf_probe_read_user{,_str} by that
    name makes it load /proc/kallsyms first (0.5-0.8 s here), so user memory is read through the
    program's own names for the same helpers."""
    import re

    from osrewind.probes.loader import ProbeOptions, final_source

    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", final_source(ProbeOptions()), flags=re.S)
    assert "read_user(" in code and "read_user_str(" in code
    assert not re.search(r"\bbpf_probe_read_user(_str)?\s*\(", code)


def test_demo_shell_workload_rewound_at_its_checkpoint(kernel, tmp_path):
    """`osrewind demo` records osrewind/demo/workload.sh (a real shell script) and rewinds it."""
    proc = osrewind("demo", "--json", db=tmp_path / "db", env={"TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    work = next(tmp_path.glob("osrewind-demo-*"))
    by_argv = {" ".join(p["argv"]): p for p in st["processes"]}
    sh = next(p for a, p in by_argv.items() if a.endswith("workload.sh"))
    fds = {f["fd"]: f["target"] for f in sh["fds"]}
    assert sh["cwd"] == f"{work}/build"
    assert fds[7] == f"{work}/build/job.log" and fds[8] == f"{work}/build/sorted.txt"
    assert fds[3] == f"{work}/build/checkpoint"  # the instant shown is the checkpoint's open
    sleep, cat = by_argv["sleep 1"], by_argv["cat"]
    assert sleep["ppid"] == cat["ppid"] == sh["pid"]
    pipe_w = {f["fd"]: f for f in sleep["fds"]}[1]
    pipe_r = {f["fd"]: f for f in cat["fds"]}[0]
    assert pipe_w["kind"] == pipe_r["kind"] == "pipe"
    assert pipe_w["target"].replace("write", "") == pipe_r["target"].replace("read", "")
    assert {f["fd"]: f["target"] for f in cat["fds"]}[1] == f"{work}/build/piped.txt"
    exited = {" ".join(p["argv"]): p["exit_code"] for p in st["exited"]}
    assert exited.get("sort input.txt") == 0 and exited.get("mkdir -p build") == 0
    # later in the same run: the mv moved fd 8's path
    with Store(str(tmp_path / "db")) as store:
        run = resolve_run(store, "demo")
        mv = store.query("SELECT ts FROM events WHERE run_id = {r:UUID} AND kind = 'rename' AND ret = 0",
                         {"r": run.run_id})[0][0]
        later = state_at(store, run, mv + 1)
    shp = {p.pid: p for p in later.processes}[sh["pid"]]
    assert shp.fds[8].target == f"{work}/build/final.txt"


def test_system_wide_recording_sees_other_processes_not_itself(kernel, tmp_path):
    db = tmp_path / "sys"
    marker = tmp_path / "system-marker"
    rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                            "--system", "--duration", "2s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    wait_recording(db)
    subprocess.run(["/bin/sh", "-c", f"echo hi > {marker}"], check=True)
    out, err = rec.communicate(timeout=120)
    assert rec.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        hits = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND kind = 'open' "
                           "AND path = {p:String} AND ret >= 0", {"r": run.run_id, "p": str(marker)})
        own = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND tgid = {pid:UInt32}",
                          {"r": run.run_id, "pid": rec.pid})
        first = state_at(store, run, run.start_ns)
    assert hits == [(1,)] and own == [(0,)]
    pids = {p.pid for p in first.processes}
    assert 1 in pids and len(pids) > 5  # the whole machine's baseline


@pytest.mark.parametrize("spool", ["kept", "lost"])
def test_killed_recorder_keeps_its_data(kernel, tmp_path, spool):
    """SIGKILL: the next command recovers the run's spool (``recovered``); a recorder whose spool is
    gone too (a lost disk) leaves the run ``aborted`` with every batch it had inserted."""
    db = tmp_path / "killed"
    rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--name",
                            "killed", "--", "/bin/sh", "-c", f"touch {tmp_path}/early; sleep 20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_recording(db)
    time.sleep(1.5)  # past one insert batch
    rec.kill()
    rec.wait(timeout=30)
    if spool == "lost":
        shutil.rmtree(db / "osrewind-spool")
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    want = "recovered" if spool == "kept" else "aborted"
    assert [r["status"] for r in runs] == [want] and runs[0]["events"] > 0
    with Store(str(db)) as store:
        n = store.query("SELECT count() FROM events WHERE kind = 'open' AND path = {p:String}",
                        {"p": f"{tmp_path}/early"})
    assert n == [(1,)]
    subprocess.run(["pkill", "-f", f"touch {tmp_path}/early; sleep 20"])


def test_probes_compile_over_cached_tracepoint_structs_read_once_per_kernel(kernel, tmp_path, monkeypatch):
    """BCC would read each probe's tracefs format file at every compile, which waits while another
    recording's hooks are being released (the kernel's event_mutex): the structs are captured once
    into the cache, the next recording compiles over them (no capture), and its probes are attached
    as ``osr_tp__`` functions to the program's tracepoints. A first recording (nothing cached) still
    prints only its JSON on stdout (BCC's preprocessor output is caught)."""
    import bcc

    from osrewind.probes import loader, tpstructs

    proc = osrewind("record", "--quiet", "--json", "--", "true", db=tmp_path / "db",
                    env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["status"] == "complete"
    cached = list((tmp_path / "cache" / "osrewind").glob("tracepoint-structs-*.h"))
    assert len(cached) == 1
    text = cached[0].read_text()
    tps = tpstructs.tracepoints(loader.SOURCE.read_text(), loader.TRACEFS)
    assert len(tps) > 40 and all(f"struct osr_tp__{c}__{e} {{" in text for c, e in tps)
    # as BCC lays them out: openat's dfd is a 64-bit field after __syscall_nr and 4 bytes of padding
    assert re.search(r"struct osr_tp__syscalls__sys_enter_openat \{\n\tu64 __do_not_use__;\n\tint __syscall_nr;\n"
                     r"(\tchar __pad_\d+;\n){4}\ts64 dfd;", text)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(tpstructs, "_capture", lambda *a: pytest.fail("captured again, with a cache"))
    probe = loader.Probe(loader.ProbeOptions())
    try:
        lib = bcc.libbcc.lib
        functions = {lib.bpf_function_name(probe.bpf.module, i).decode()
                     for i in range(lib.bpf_num_functions(probe.bpf.module))}
        attached = {tp.decode() for tp in probe.bpf.tracepoint_fds}
    finally:
        probe.close(background=False)
    assert not {f for f in functions if f.startswith("tracepoint__")}   # BCC made no struct itself
    probes = {tpstructs.attach_name(f) for f in functions} - {None}
    assert attached == probes and attached <= {f"{c}:{e}" for c, e in tps}
    assert {"syscalls:sys_enter_openat", "sched:sched_process_exec", "sched:sched_switch"} <= attached
