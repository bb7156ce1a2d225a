"""Lineage and the process tree, on a real recorded pipeline."""

from __future__ import annotations

import json

import pytest

from conftest import osrewind, record_json

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def pipeline(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    (work / "in.txt").write_text("pear\napple\nfig\n")
    db = tmp_path_factory.mktemp("pipeline-store") / "db"
    script = f"cd {work} && sort in.txt > out.txt; mv out.txt final.txt; cp final.txt copy.txt"
    summary = record_json(db, "--", "/bin/sh", "-c", script, check_exit=0)
    assert (work / "copy.txt").read_text() == "apple\nfig\npear\n"
    return db, summary, work


def test_lineage_of_copy(pipeline):
    db, summary, work = pipeline
    out = osrewind("lineage", summary["run_id"], str(work / "copy.txt"), "--depth", "3", "--json", db=db)
    assert out.returncode == 0, out.stderr
    top = json.loads(out.stdout)
    assert top["path"] == f"{work}/copy.txt"
    (cp,) = top["events"]
    assert cp["chain"][0]["argv"] == ["cp", "final.txt", "copy.txt"] and cp["inputs"] == [f"{work}/final.txt"]
    assert cp["chain"][-1]["argv"][:2] == ["/bin/sh", "-c"]  # the exec chain reaches the recorded root
    (final,) = cp["sources"]
    # final.txt is out.txt renamed into place: one file, its writers under the earlier name first
    ops = [(e["op"], e.get("as")) for e in final["events"]]
    assert ops[-1] == ("renamed here", None) and ("wrote", f"{work}/out.txt") in ops
    mv = final["events"][-1]
    assert mv["from"] == f"{work}/out.txt" and mv["chain"][0]["argv"] == ["mv", "out.txt", "final.txt"]
    writers = [e for e in final["events"] if e["op"] == "wrote"]
    assert [w["chain"][0]["argv"] for w in writers] == [["sort", "in.txt"]]
    assert writers[0]["inputs"] == [f"{work}/in.txt"] and writers[0]["as"] == f"{work}/out.txt"
    (sorted_from,) = writers[0]["sources"]
    assert sorted_from["path"] == f"{work}/in.txt"
    # at depth 1 too: the file's own history, whatever it was called
    one = json.loads(osrewind("lineage", summary["run_id"], str(work / "final.txt"), "--json", db=db,
                              check=True).stdout)
    assert [e["chain"][0]["argv"] for e in one["events"] if e["op"] == "wrote"] == [["sort", "in.txt"]]
    human = osrewind("lineage", summary["run_id"], str(work / "copy.txt"), "--depth", "3", db=db).stdout
    assert "renamed here from" in human and "sort in.txt" in human and f"(as {work}/out.txt)" in human


def test_lineage_of_unknown_path(pipeline):
    db, summary, work = pipeline
    out = osrewind("lineage", summary["run_id"], str(work / "never.txt"), db=db)
    assert out.returncode == 0 and "no process of run" in out.stderr


def test_tree_over_the_whole_run(pipeline):
    db, summary, _work = pipeline
    data = json.loads(osrewind("tree", summary["run_id"], "--json", db=db, check=True).stdout)
    (root,) = data["processes"]
    assert root["argv"][:2] == ["/bin/sh", "-c"] and root["exit_code"] == 0
    kids = [c["argv"] for c in root["children"]]
    assert kids == [["sort", "in.txt"], ["mv", "out.txt", "final.txt"], ["cp", "final.txt", "copy.txt"]]
    assert all(c["exit_code"] == 0 and c["end_ns"] > c["start_ns"] for c in root["children"])
    human = osrewind("tree", summary["run_id"], db=db, check=True).stdout
    assert "└─" in human and "exit 0 after" in human
    at = osrewind("tree", summary["run_id"], "--at", "start", db=db, check=True).stdout
    assert "1 processes" in at
