"""Ground truth: a seeded random workload (tests/workloads/groundtruth.py) whose processes read their
own /proc state (every fd's readlink, cwd, parent) at known instants, recorded for real; the rewound
state at each of those instants must agree with what the kernel showed, exactly, for every seed."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from conftest import WORKLOADS, record_json
from osrewind.ingest.store import Store
from osrewind.probes import btf
from osrewind.queries.engine import Fd
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

pytestmark = pytest.mark.kernel

SEEDS = (1, 3, 5)   # each of these reaches deleted files with a name (renamed over, unlinked)
STEPS = 150


def _shown(f: Fd) -> str:
    """What readlink /proc/PID/fd/N shows for a rewound fd: sockets by inode (the rewound state
    labels them with their endpoints instead)."""
    if f.kind == "socket":
        return f"socket:[{f.ino}]"
    return f.target


def _disagreements(store, run, reports: list[dict], uids: bool = False) -> tuple[int, list[str]]:
    """(reports whose every fd, cwd, parent and start agree, what disagreed). /proc's start is in
    clock ticks: the rewound one (the kernel's, in ns) must be within that tick. ``uids``: the real
    uid too (a run with the every-syscall lane, where setuid-family calls are seen)."""
    bad: list[str] = []
    agree = 0
    tick = 10**9 // os.sysconf("SC_CLK_TCK")
    boot_minus_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    for r in reports:
        before = len(bad)
        st = state_at(store, run, r["at"])
        procs = {p.pid: p for p in st.processes}
        p = procs.get(r["pid"])
        if p is None:
            bad.append(f"at {r['at']}: pid {r['pid']} is not in the rewound state")
            continue
        rewound = {str(n): _shown(f) for n, f in p.fds.items()}
        if rewound != r["fds"]:
            diff = {k: (r["fds"].get(k), rewound.get(k)) for k in set(r["fds"]) | set(rewound)
                    if r["fds"].get(k) != rewound.get(k)}
            bad.append(f"at {r['at']} pid {r['pid']}: fds (proc, rewound) {diff}")
        if p.cwd != r["cwd"]:
            bad.append(f"at {r['at']} pid {r['pid']}: cwd {r['cwd']!r} rewound as {p.cwd!r}")
        if p.exe != r["exe"]:
            bad.append(f"at {r['at']} pid {r['pid']}: exe {r['exe']!r} rewound as {p.exe!r}")
        if p.ppid != r["ppid"]:
            bad.append(f"at {r['at']} pid {r['pid']}: parent {r['ppid']} rewound as {p.ppid}")
        if uids and p.uid != r["uid"]:
            bad.append(f"at {r['at']} pid {r['pid']}: uid {r['uid']} rewound as {p.uid}")
        start = r["start_ticks"] * tick - boot_minus_mono
        if not -10**6 <= p.start_ns - start <= tick + 10**6:
            bad.append(f"at {r['at']} pid {r['pid']}: started at {start} (to a tick) rewound as {p.start_ns}")
        agree += len(bad) == before
    return agree, bad


@pytest.mark.parametrize("seed", SEEDS)
def test_rewound_state_equals_proc_at_every_reported_instant(kernel, tmp_path, seed):
    if btf.offsets() is None:
        pytest.fail("this kernel has no BTF: files would be identified by the paths passed")
    db, work, report = tmp_path / "db", tmp_path / "w", tmp_path / "report.jsonl"
    lanes = [] if seed == SEEDS[-1] else ["--no-syscalls", "--no-sched"]  # one seed with every lane on
    summary = record_json(db, *lanes, "--", sys.executable,
                          str(WORKLOADS / "groundtruth.py"), str(seed), str(work), str(report), str(STEPS),
                          check_exit=0)
    assert summary["lost"] == 0 and summary["identity"] == "kernel"
    reports = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(reports) >= STEPS
    shown = [t for r in reports for t in r["fds"].values()]
    # the situations the test is for did happen (a run that never met them would prove nothing)
    assert any(t.endswith(" (deleted)") and "#" not in t for t in shown)   # renamed over or unlinked
    assert any(t.startswith("pipe:[") for t in shown) and any(t.startswith("socket:[") for t in shown)
    assert len({r["cwd"] for r in reports}) >= 2 and len({r["pid"] for r in reports}) >= 2
    assert len({r["uid"] for r in reports}) >= 2   # some worker changed its real uid
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        assert run.identity == "kernel"
        agree, bad = _disagreements(store, run, reports, uids=not lanes)
    print(f"seed {seed}: {agree}/{len(reports)} reports agree")
    assert agree == len(reports), f"{len(reports) - agree} of {len(reports)} reports disagree:\n" + "\n".join(bad[:15])


def test_without_btf_the_run_says_files_are_identified_by_path(kernel, tmp_path):
    """A kernel without BTF (OSREWIND_BTF pointing nowhere stands in for one): record says so once,
    the run is flagged, and files are what programs passed (a symlink's name, not its target)."""
    from conftest import osrewind

    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    db = tmp_path / "db"
    out = osrewind("record", "--json", "--no-syscalls", "--no-sched", "--", sys.executable, "-c",
                   f"import time; f = open({str(tmp_path / 'link')!r}); time.sleep(0.3)", db=db,
                   env={"OSREWIND_BTF": str(tmp_path / "no-btf")})
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("this kernel has no BTF") == 1
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["identity"] == "path"
    opens = [json.loads(x) for x in osrewind("events", summary["run_id"], "--kind", "open", "--json",
                                             db=db, check=True).stdout.splitlines()]
    (mine,) = [o for o in opens if o["path"] == str(tmp_path / "link")]
    assert mine["path2"] == ""
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        assert run.identity == "path"
        st = state_at(store, run, mine["ts"] + 1)
    assert str(tmp_path / "link") in {f.target for p in st.processes for f in p.fds.values()}


def test_renames_through_a_symlinked_directory_rewind_as_proc_shows(kernel, tmp_path):
    """As /var/run -> /run: a program lists a symlinked directory, then opens, renames and unlinks
    its files through it (the paths it passes); the rewound fds equal /proc at each instant."""
    real, link = tmp_path / "run", tmp_path / "var-run"
    real.mkdir()
    link.symlink_to(real)
    report = tmp_path / "report.json"
    code = f"""
import json, os, time
link, out = {str(link)!r}, []
def look():
    at = time.monotonic_ns()
    fds = {{}}
    for n in os.listdir("/proc/self/fd"):
        try:
            fds[n] = os.readlink(f"/proc/self/fd/{{n}}")
        except OSError:
            pass  # the listing's own fd, closed again
    out.append({{"at": at, "fds": {{n: t for n, t in fds.items() if t != f"/proc/{{os.getpid()}}/fd"}}}})
os.listdir(link)  # an O_DIRECTORY open: the kernel says where the directory is
a = os.open(link + "/app.pid", os.O_CREAT | os.O_WRONLY, 0o644); look()
os.rename(link + "/app.pid", link + "/app.old"); look()
b = os.open(link + "/app.pid", os.O_CREAT | os.O_WRONLY, 0o644); look()
os.rename(link + "/app.pid", link + "/app.old"); look()     # over the open app.old
os.unlink(link + "/app.old"); look()
open({str(report)!r}, "w").write(json.dumps(out))
"""
    db = tmp_path / "db"
    summary = record_json(db, "--no-syscalls", "--no-sched", "--", sys.executable, "-c", code, check_exit=0)
    reports = json.loads(report.read_text())
    assert len(reports) == 5 and reports[-1]["fds"]["3"].endswith("app.old (deleted)")  # what the kernel said
    with Store(str(db)) as store:
        run = resolve_run(store, summary["run_id"])
        for r in reports:
            procs = [p for p in state_at(store, run, r["at"]).processes if 3 in p.fds
                     and p.fds[3].target.startswith(str(real))]
            (p,) = procs
            assert {str(n): f.target for n, f in p.fds.items()} == r["fds"], r


def test_renames_racing_on_two_cpus_rewind_as_proc_shows(kernel, tmp_path):
    """Three processes rename one directory back and forth at once while two hold it (or a directory
    inside it) as their cwd and read /proc/self/cwd (tests/workloads/renamers.py). When two renames
    race, the first to take effect can return second; at every read with no rename in flight around
    it, the rewound cwd equals what /proc showed."""
    sys.path.insert(0, str(WORKLOADS))
    import renamers

    db, report = tmp_path / "db", tmp_path / "report.json"
    summary = record_json(db, "--", sys.executable, str(WORKLOADS / "renamers.py"), str(tmp_path / "w"),
                          str(report), "1.5", check_exit=0)
    assert summary["lost"] == 0
    with Store(str(db)) as store:
        got = renamers.compare(store, resolve_run(store, summary["run_id"]), json.loads(report.read_text()), 200)
    print({k: v for k, v in got.items() if k != "disagree"})
    # the race happened (renames entered while others were in flight), and there were quiet reads
    assert got["overlapped"] >= 100 and got["compared"] >= 100
    assert got["agree"] == got["compared"], got["disagree"]
