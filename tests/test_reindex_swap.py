"""A rebuild of a run's derived data (keyframes, processes, file_access) is written beside the old
one and replaces it only when complete (issue 9, point 6): a rebuild that fails anywhere, or is
interrupted, leaves the run answering exactly as before; one that succeeds leaves one generation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from synthetic import random_run

from conftest import osrewind
from osrewind.errors import StoreError
from osrewind.ingest.store import Store
from osrewind.queries import keyframes
from osrewind.queries.api import Recording
from osrewind.queries.runs import resolve_run

DERIVED = ("keyframes", "processes", "file_access")


@pytest.fixture
def run_db(tmp_path):
    db = tmp_path / "db"
    rid = random_run(str(db), seed=7, n=1500)
    with Store(str(db)) as s:
        keyframes.build(s, resolve_run(s, rid), every=100)
    return db, rid


def answers(db, rid: str) -> dict:
    """What the run answers, read through a fresh store (nothing remembered from before)."""
    with Store(str(db)) as s:
        rec = Recording(s, resolve_run(s, rid))
        run = rec.run
        paths = [r[0] for r in s.query("SELECT DISTINCT path FROM file_access WHERE run_id = {r:UUID} AND op != 'read' "
                                       "ORDER BY path LIMIT 5", {"r": rid})]
        assert paths, "the generated run should write files"
        span = run.end_ns - run.start_ns
        return {"tree": [p.to_json(tree=True) for p in rec.tree()],
                "lineage": [rec.lineage(p, depth=2) for p in paths],
                "state": [rec.state_at(run.start_ns + span * i // 7).to_json() for i in range(8)],
                "keyframes": len(keyframes.positions(s, run))}


def rows(db, rid: str) -> dict:
    with Store(str(db)) as s:
        return {t: sorted(map(repr, s.query(f"SELECT * FROM {t} WHERE run_id = {{r:UUID}}", {"r": rid})))
                for t in (*DERIVED, "index_builds")}


def generations(db, rid: str) -> dict:
    with Store(str(db)) as s:
        return {t: s.query(f"SELECT DISTINCT gen FROM {t} WHERE run_id = {{r:UUID}}", {"r": rid})
                for t in (*DERIVED, "index_builds")}


def assert_one_generation(db, rid: str) -> None:
    gens = generations(db, rid)
    assert len(gens["index_builds"]) == 1, gens
    assert all(g in ([], gens["index_builds"]) for g in gens.values()), gens


class Boom(Exception):
    pass


def _fail_midway_through_keyframes(monkeypatch):
    real = keyframes.Indexer._insert

    def insert(self, frames):
        if frames:
            real(self, frames[: len(frames) // 2])
            raise Boom("disk on fire")

    monkeypatch.setattr(keyframes.Indexer, "_insert", insert)


def _fail_writing_history(monkeypatch):   # after every new keyframe is in
    def write(*a, **k):
        raise StoreError("writing processes to store x failed: no space left on device")

    monkeypatch.setattr(keyframes, "_write_history", write)


def _fail_at_the_swap(monkeypatch):       # everything written, the marker insert fails
    real = Store.insert_rows

    def insert_rows(self, table, *a, **k):
        if table == "index_builds":
            raise StoreError("writing index_builds to store x failed: connection reset")
        return real(self, table, *a, **k)

    monkeypatch.setattr(Store, "insert_rows", insert_rows)


@pytest.mark.parametrize("fail", [_fail_midway_through_keyframes, _fail_writing_history, _fail_at_the_swap])
def test_failed_rebuild_keeps_the_old_index(run_db, monkeypatch, fail):
    db, rid = run_db
    before, old_rows = answers(db, rid), rows(db, rid)
    assert all(old_rows[t] for t in DERIVED)
    with Store(str(db)) as s, monkeypatch.context() as m:
        run = resolve_run(s, rid)
        fail(m)
        with pytest.raises(StoreError, match=f"rebuilding the index of run {rid[:8]} failed, its previous index "
                                             "is kept") as err:
            keyframes.build(s, run, every=50)   # another spacing: a mixed-up index would show
        assert "\n" not in str(err.value)
        # the same open store (its caches) answers as before, too
        assert Recording(s, run).state_at(run.end_ns).to_json() == before["state"][-1]
    assert rows(db, rid) == old_rows          # what the failed build wrote is gone again
    assert answers(db, rid) == before


def test_interrupted_rebuild_keeps_the_old_index(run_db, monkeypatch):
    db, rid = run_db
    before, old_rows = answers(db, rid), rows(db, rid)

    def progress(n: int) -> None:
        raise KeyboardInterrupt

    with Store(str(db)) as s:
        with pytest.raises(KeyboardInterrupt):
            keyframes.build(s, resolve_run(s, rid), every=50, progress=progress)
    assert rows(db, rid) == old_rows
    assert answers(db, rid) == before


def test_a_killed_rebuild_is_never_read_and_the_next_one_removes_it(run_db):
    db, rid = run_db
    before = answers(db, rid)
    with Store(str(db)) as s:   # a build killed before its swap: rows of a generation nobody selects
        ix = keyframes.Indexer(s, rid, every=30, gen=keyframes._next_gen(s, rid))
        ix.finish()
        assert ix.frames > before["keyframes"]
    assert answers(db, rid) == before
    assert len(generations(db, rid)["keyframes"]) == 2
    with Store(str(db)) as s:
        n = keyframes.build(s, resolve_run(s, rid), every=100)
    assert n == before["keyframes"]
    assert_one_generation(db, rid)
    assert answers(db, rid) == before


def test_successful_rebuild_leaves_one_generation(run_db):
    db, rid = run_db
    before = answers(db, rid)
    first = generations(db, rid)
    with Store(str(db)) as s:
        run = resolve_run(s, rid)
        assert keyframes.build(s, run, every=100) == before["keyframes"]
        assert keyframes.build(s, run, every=50) > before["keyframes"]   # a different spacing, read at once
        assert len(keyframes.positions(s, run)) > before["keyframes"]
    assert_one_generation(db, rid)
    after = generations(db, rid)
    assert all(after[t] for t in DERIVED)
    assert after["keyframes"] != first["keyframes"]
    now = answers(db, rid)
    assert {k: v for k, v in now.items() if k != "keyframes"} == {k: v for k, v in before.items() if k != "keyframes"}


def test_a_store_from_before_generations_reads_and_migrates(run_db):
    db, rid = run_db
    before = answers(db, rid)
    with Store(str(db)) as s:  # the layout an older osrewind made: no gen columns, no index_builds
        for t in DERIVED:
            s.client.command(f"ALTER TABLE {t} DROP COLUMN gen")
        s.client.command("DROP TABLE index_builds")
    with Store(str(db)) as s:
        assert keyframes.layout(s) == "legacy"
    assert answers(db, rid) == before               # read as it is, nothing written
    with Store(str(db)) as s:
        assert keyframes.layout(s) == "legacy"
        keyframes.build(s, resolve_run(s, rid), every=100)
        assert keyframes.layout(s) == "gen"
    assert answers(db, rid) == before
    assert_one_generation(db, rid)


FAILING_REINDEX = """
import sys
from osrewind.queries import keyframes
def boom(*a, **k):
    raise RuntimeError("injected failure\\nsecond line")
keyframes._write_history = boom
from osrewind.cli import main
sys.argv = ["osrewind", *sys.argv[1:]]
main()
"""


def test_reindex_command_reports_a_failure_in_one_line(run_db):
    db, rid = run_db
    tree = osrewind("tree", rid, "--json", db=db)
    assert tree.returncode == 0, tree.stderr
    proc = subprocess.run([sys.executable, "-c", FAILING_REINDEX, "--db", str(db), "reindex", rid],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == StoreError.exit_code, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("osrewind: error: rebuilding the index of run")
    assert "previous index is kept" in lines[0] and "RuntimeError: injected failure" in lines[0]
    again = osrewind("tree", rid, "--json", db=db)
    assert again.returncode == 0 and json.loads(again.stdout) == json.loads(tree.stdout)
    ok = osrewind("reindex", rid, "--json", db=db)
    assert ok.returncode == 0, ok.stderr
    assert_one_generation(db, rid)
