"""Keyframes never change an answer: rewinding from a keyframe and from the run's start give the
same state, at many random instants, for generated runs and for real recordings."""

from __future__ import annotations

import json
import random
import sys

import pytest
from synthetic import random_run

from conftest import WORKLOADS, osrewind, record_json
from osrewind.ingest.store import Store
from osrewind.queries import keyframes
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at


def same_state_everywhere(db, run_spec: str, every: int, samples: int, seed: int) -> int:
    with Store(str(db)) as store:
        run = resolve_run(store, run_spec)
        built = keyframes.build(store, run, every=every)
        assert built > 3
        frames = [ts for (ts,) in store.query("SELECT ts FROM keyframes WHERE run_id = {r:UUID}",
                                              {"r": run.run_id})]
        rng = random.Random(seed)
        instants = [rng.randint(run.start_ns, run.end_ns) for _ in range(samples)]
        instants += [frames[0], frames[-1], frames[len(frames) // 2] - 1, run.start_ns, run.end_ns]
        for at in instants:
            fast = state_at(store, run, at).to_json()
            slow = state_at(store, run, at, use_keyframes=False).to_json()
            assert fast == slow, f"state differs at {at - run.start_ns} ns"
    return built


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_generated_runs(tmp_path, seed):
    db = tmp_path / "db"
    run_id = random_run(str(db), seed, n=2500)
    assert same_state_everywhere(db, run_id, every=97, samples=40, seed=seed) >= 10


def test_generated_run_state_is_plausible(tmp_path):
    db = tmp_path / "db"
    run_id = random_run(str(db), 7, n=1500)
    with Store(str(db)) as store:
        run = resolve_run(store, run_id)
        st = state_at(store, run, (run.start_ns + run.end_ns) // 2)
    assert any(p.pid == 100 for p in st.processes)
    assert all(set(p.fds) >= {0, 1, 2} or p.exec_ns for p in st.processes)


@pytest.mark.kernel
def test_real_recording(kernel, tmp_path):
    db = tmp_path / "db"
    summary = record_json(db, "--", sys.executable, str(WORKLOADS / "net.py"), str(tmp_path), check_exit=0)
    assert same_state_everywhere(db, summary["run_id"], every=41, samples=40, seed=11) > 10


@pytest.mark.kernel
def test_reindex_and_runs_without_keyframes(kernel, tmp_path):
    db = tmp_path / "db"
    summary = record_json(db, "--", sys.executable, str(WORKLOADS / "fdsteps.py"), str(tmp_path), check_exit=3)
    out = osrewind("reindex", summary["run_id"], "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["run_id"] == summary["run_id"]
    before = osrewind("state", "last", "--at", "-1ms", "--json", db=db).stdout
    with Store(str(db)) as store:
        store.client.command("DELETE FROM keyframes WHERE 1")  # derived data: a run still answers without
    assert osrewind("state", "last", "--at", "-1ms", "--json", db=db).stdout == before
