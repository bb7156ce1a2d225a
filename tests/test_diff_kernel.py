"""Diff of two real recordings of one script that takes another branch the second time."""

from __future__ import annotations

import json

import pytest

from conftest import osrewind, record_json

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def two_runs(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("diff")
    data = work / "data.txt"
    script = work / "job.sh"
    # reads data.txt; when it is missing: one more child (sleep) and exit 1
    script.write_text(f"if read line < {data}; then exit 0; fi\nsleep 0.05\nexit 1\n")
    db = tmp_path_factory.mktemp("diff-store") / "db"
    data.write_text("hello\n")
    good = record_json(db, "--name", "good", "--", "/bin/sh", str(script), check_exit=0)
    data.unlink()
    bad = record_json(db, "--name", "bad", "--", "/bin/sh", str(script), check_exit=1)
    return db, good, bad, data


def test_diff_names_exactly_the_differences(two_runs):
    db, good, bad, data = two_runs
    out = osrewind("diff", good["run_id"], bad["run_id"], "--json", db=db)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    kinds = sorted((x["kind"], x.get("what") or " ".join(x.get("process", {}).get("argv", [])) or
                    " ".join(x.get("a", {}).get("argv", []))) for x in d["differences"])
    assert kinds == sorted([
        ("process only in b", "sleep 0.05"),
        ("exit code", f"/bin/sh {data.parent}/job.sh"),
        ("failed only in b", f"open read {data} ENOENT"),
        ("file operation only in a", f"open read {data} ok"),
    ])
    exit_diff = next(x for x in d["differences"] if x["kind"] == "exit code")
    assert (exit_diff["a"]["exit_code"], exit_diff["b"]["exit_code"]) == (0, 1)
    first = d["first_divergence"]
    assert first["a"] == f"open {data} for read: ok" and first["b"] == f"open {data} for read: ENOENT"
    human = osrewind("diff", "good", "bad", db=db).stdout
    assert "first divergence" in human and "ENOENT" in human and "process only in b" in human


def test_a_run_against_itself_has_no_difference(two_runs):
    db, good, _bad, _data = two_runs
    d = json.loads(osrewind("diff", good["run_id"], good["run_id"], "--json", db=db, check=True).stdout)
    assert d["differences"] == [] and d["first_divergence"] is None and d["only_a"] == d["only_b"] == 0


def test_a_fork_that_diverges_is_named_by_what_the_child_became(kernel, tmp_path):
    settings = tmp_path / "settings.conf"
    script = tmp_path / "job.sh"
    script.write_text(f"if [ -e {settings} ]; then cat {settings}; fi\n")  # `[` is the shell's own: no fork
    db = tmp_path / "db"
    settings.write_text("x=1\n")
    with_file = record_json(db, "--name", "with", "--no-syscalls", "--no-sched", "--", "/bin/sh", str(script),
                            check_exit=0)
    settings.unlink()
    without = record_json(db, "--name", "without", "--no-syscalls", "--no-sched", "--", "/bin/sh", str(script),
                          check_exit=0)
    d = json.loads(osrewind("diff", with_file["run_id"], without["run_id"], "--json", db=db, check=True).stdout)
    forks = [json.loads(x) for x in osrewind("events", with_file["run_id"], "--kind", "fork", "--json",
                                             db=db, check=True).stdout.splitlines()]
    child = forks[0]["a1"]
    assert d["first_divergence"]["a"] == f"fork -> {child} cat {settings}"
    assert d["first_divergence"]["b"] is None
