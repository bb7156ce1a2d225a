"""osrewind hunt on a real flaky program (tests/workloads/flaky.py): it finds a pass and a failure,
keeps one run of each (the others deleted), and names the first divergence: the file that was not
there."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import WORKLOADS, osrewind

pytestmark = pytest.mark.kernel


def test_hunt_finds_a_pass_and_a_failure_and_names_the_first_divergence(kernel, tmp_path):
    db = tmp_path / "db"
    got = osrewind("hunt", "--runs", "30", "--name", "flaky", "--no-sched", "--json", "--", sys.executable,
                   str(WORKLOADS / "flaky.py"), str(tmp_path), db=db, timeout=900)
    assert got.returncode == 0, got.stderr
    report = json.loads(got.stdout)
    assert report["found"] and 2 <= report["runs"] == len(report["exit_codes"]) <= 30
    assert report["exit_codes"][-1] in (0, 1) and {0, 1} == set(report["exit_codes"])
    assert report["kept"]["pass"]["exit_code"] == 0 and report["kept"]["fail"]["exit_code"] == 1
    assert "FileNotFoundError" in open(report["kept"]["fail"]["log"]).read()   # what the failing run printed
    # one run of each outcome is kept, the rest deleted
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert {r["run_id"] for r in runs} == {report["kept"]["pass"]["run_id"], report["kept"]["fail"]["run_id"]}
    first = report["diff"]["first_divergence"]
    assert first is not None and "/ready" in json.dumps(first), first
    # the progress said how each run went
    assert got.stderr.count("osrewind: hunt: run ") == report["runs"]
