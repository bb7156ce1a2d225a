"""record --cgroup: the processes of a cgroup (a container's) and any moved into it while recording,
each with its cgroup path, and nobody else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import osrewind
from osrewind.ingest.store import Store
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

pytestmark = pytest.mark.kernel


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[2] == "cgroup2":
                return fields[1]
    return None


@pytest.fixture
def cgroup(kernel):
    mount = _cgroup2_mount()
    if mount is None:
        pytest.fail("no cgroup v2 hierarchy is mounted")
    path = os.path.join(mount, f"osrewind-test-{os.getpid()}")
    os.makedirs(os.path.join(path, "sub"))
    procs: list[subprocess.Popen] = []
    yield mount, path, procs
    for p in procs:
        p.kill()
        p.wait()
    for d in (os.path.join(path, "sub"), path):
        for _ in range(50):  # a killed process leaves its cgroup a moment later
            try:
                os.rmdir(d)
                break
            except OSError:
                time.sleep(0.05)


def _move(pid: int, cgroup_dir: str) -> None:
    with open(os.path.join(cgroup_dir, "cgroup.procs"), "w") as f:
        f.write(str(pid))


def test_record_a_cgroup_follows_who_moves_in_and_shows_cgroups(cgroup, tmp_path):
    mount, path, procs = cgroup
    name = os.path.basename(path)
    code = ("import sys, time; sys.stdin.readline(); open(sys.argv[1]).close(); time.sleep(1.5)")
    marker_in, marker_out = tmp_path / "inside.txt", tmp_path / "outside.txt"
    marker_in.write_text("x")
    marker_out.write_text("x")
    member = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.append(member)
    _move(member.pid, path)
    db = tmp_path / "db"
    rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--cgroup", path,
                            "--duration", "4s", "--json", "--no-syscalls", "--no-sched"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = rec.stderr.readline()
    assert "recording run" in line, line + rec.stderr.read()
    newcomer = subprocess.Popen([sys.executable, "-c", code, str(marker_in)], stdin=subprocess.PIPE, text=True)
    outsider = subprocess.Popen([sys.executable, "-c", code, str(marker_out)], stdin=subprocess.PIPE, text=True)
    procs += [newcomer, outsider]
    _move(newcomer.pid, os.path.join(path, "sub"))
    moved_ns = time.monotonic_ns()
    for p in (newcomer, outsider):
        p.stdin.write("go\n")
        p.stdin.flush()
    out, err = rec.communicate(timeout=120)
    assert rec.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["lost"] == 0
    opens = [json.loads(x) for x in osrewind("events", summary["run_id"], "--kind", "open", "--json",
                                             db=db, check=True).stdout.splitlines()]
    opened = {(o["tgid"], o["path"]) for o in opens}
    assert (newcomer.pid, str(marker_in)) in opened
    assert not any(o["tgid"] == outsider.pid for o in opens) and str(marker_out) not in {o["path"] for o in opens}
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        st = state_at(store, run, moved_ns + 200_000_000)
    procs_at = {p.pid: p for p in st.processes}
    assert procs_at[member.pid].cgroup == f"/{name}" and procs_at[member.pid].from_snapshot
    assert procs_at[newcomer.pid].cgroup == f"/{name}/sub"
    assert outsider.pid not in procs_at
    text = osrewind("state", summary["run_id"], "--at", f"+{(moved_ns + 200_000_000 - run.start_ns) / 1e9:.3f}s",
                    "--no-fds", db=db, check=True).stdout
    assert f"cgroup /{name}/sub" in text
    tree = json.loads(osrewind("tree", summary["run_id"], "--json", db=db, check=True).stdout)
    flat, todo = {}, list(tree["processes"])
    while todo:
        p = todo.pop()
        flat[p["pid"]] = p
        todo += p["children"]
    assert flat[newcomer.pid]["cgroup"] == f"/{name}/sub" and flat[member.pid]["cgroup"] == f"/{name}"


def test_record_cgroup_refuses_what_is_not_a_cgroup(kernel, tmp_path):
    out = osrewind("record", "--cgroup", str(tmp_path), "--duration", "1s", db=tmp_path / "db")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "is not a cgroup directory" in out.stderr
