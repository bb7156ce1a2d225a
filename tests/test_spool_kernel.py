"""A recorder killed with SIGKILL mid-run (issue 10): the records that reached its spool are ingested
by the next command that opens the store, the run reads ``recovered`` and says how much came from
the spool, and what it shows up to the kill is the truth: each fd table the recorded program read
from /proc at a known instant is the one ``state --at`` rewinds to, and every one of a 1-byte
``dd``'s million reads is there, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import osrewind
from osrewind.ingest.store import Store
from osrewind.probes import syscall_table

pytestmark = pytest.mark.kernel

BLOCKS = 1_000_000

PROGRAM = textwrap.dedent("""
    import json, os, subprocess, sys, time
    work = sys.argv[1]
    report = open(os.path.join(work, "report.jsonl"), "w")
    fds = []
    def table():
        out = {}
        for name in os.listdir("/proc/self/fd"):
            try:
                out[name] = os.readlink("/proc/self/fd/" + name)
            except OSError:
                pass
        return out
    for i in range(6):
        fds.append(os.open(os.path.join(work, "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o600))
        if i % 3 == 2:
            os.close(fds.pop(0))
        seen = table()          # the listing's own fd is closed again before the instant below
        report.write(json.dumps({"at": time.monotonic_ns(), "fds": seen}) + "\\n")
        report.flush()
        time.sleep(0.05)
    dd = subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count=@BLOCKS@"], stderr=subprocess.DEVNULL)
    report.write(json.dumps({"dd_exit": dd.returncode, "pid": os.getpid()}) + "\\n")
    report.close()
    open(os.path.join(work, "ready"), "w").close()
    time.sleep(600)
""").replace("@BLOCKS@", str(BLOCKS))


def test_sigkill_mid_run_recovers_the_spool(kernel, tmp_path):
    db, work = tmp_path / "db", tmp_path / "work"
    work.mkdir()
    (work / "prog.py").write_text(PROGRAM)
    rec = subprocess.Popen([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--name", "killed",
                            "--", sys.executable, str(work / "prog.py"), str(work)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (work / "ready").exists():
        assert rec.poll() is None, rec.communicate()
        assert time.time() < deadline, "the workload did not finish its part"
        time.sleep(0.05)
    time.sleep(0.3)                      # its last records drained into the spool
    spools = list((db / "osrewind-spool").iterdir())
    rec.kill()
    rec.wait(timeout=60)
    lines = [json.loads(line) for line in (work / "report.jsonl").read_text().splitlines()]
    tail = lines.pop()
    os.kill(tail["pid"], signal.SIGKILL)
    assert tail["dd_exit"] == 0
    assert len(spools) == 1 and any(p.name.startswith("seg-") for p in spools[0].iterdir())

    out = osrewind("runs", "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert "recovered: " in out.stderr and "from its spool" in out.stderr
    (run,) = json.loads(out.stdout)
    assert run["status"] == "recovered" and "events recovered from its spool" in run["status_detail"]
    assert run["lost"] == 0 and run["events"] > 2 * BLOCKS
    recovered = int(run["status_detail"].split("; ")[1].split()[0])
    assert 0 < recovered <= run["events"]   # the kill came while the store was still catching up
    assert not (db / "osrewind-spool").exists() and not (db / "osrewind-reserve").exists()
    again = osrewind("runs", db=db)
    assert again.returncode == 0 and "recover" not in again.stderr

    for line in lines:   # the truth, as the program read it from /proc
        st = json.loads(osrewind("state", run["run_id"], "--at", str(line["at"]), "--json", db=db,
                                 check=True).stdout)
        (me,) = [p for p in st["processes"] if p["pid"] == tail["pid"]]
        rewound = {str(f["fd"]): f["target"] for f in me["fds"]}
        listing = {fd: t for fd, t in line["fds"].items() if t != f"/proc/{tail['pid']}/fd"}
        assert rewound == listing, line["at"]

    with Store(str(db), mode="read", purpose="test") as store:
        (reads,) = store.query(
            "SELECT count() FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' AND nr = {nr:UInt16} "
            "AND ret = 1 AND comm = 'dd'", {"r": run["run_id"], "nr": syscall_table.number("read")})[0]
        (dups,) = store.query("SELECT count() - uniqExact(seq) FROM events WHERE run_id = {r:UUID}",
                              {"r": run["run_id"]})[0]
    assert reads == BLOCKS and dups == 0


def test_recover_command(kernel, tmp_path):
    """Nothing to recover: said in one line, exit 0; --json gives an empty list."""
    db = tmp_path / "db"
    assert osrewind("record", "--quiet", "--", "true", db=db).returncode == 0
    out = osrewind("recover", db=db)
    assert out.returncode == 0 and out.stderr.strip() == "osrewind: nothing to recover"
    assert json.loads(osrewind("recover", "--json", db=db, check=True).stdout) == []
    assert not Path(db / "osrewind-spool").exists()
