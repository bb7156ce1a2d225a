"""Keyframes written while a recording runs: they are in the store before the recording ends, and
they are exactly the ones a rebuild from the events gives."""

from __future__ import annotations

import random
import sys

import pytest

from osrewind.ingest.recorder import Recorder, RecordOptions
from osrewind.ingest.store import Store
from osrewind.queries import keyframes
from osrewind.queries.runs import resolve_run
from osrewind.queries.state import state_at

EVERY = 200

# about 2.5 s of opens and closes (two state facts each, a few hundred a second), then exit
WORKLOAD = """
import os, sys, time
end = time.monotonic() + 2.5
path = os.path.join(sys.argv[1], "f")
while time.monotonic() < end:
    for _ in range(20):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    time.sleep(0.01)
"""


class WatchedIndexer(keyframes.LiveIndexer):
    """Counts the run's stored keyframes when the recorder stops it, before anything finishes."""

    stored_at_stop: int | None = None

    def stop(self) -> None:
        super().stop()
        if self.stored_at_stop is None and self._ix is not None:
            self.stored_at_stop = self.store.query("SELECT count() FROM keyframes WHERE run_id = {r:UUID}",
                                                   {"r": self._ix.run_id})[0][0]


def positions(store, run_id: str) -> list[tuple]:
    return store.query("SELECT ts, seq, facts FROM keyframes WHERE run_id = {r:UUID} ORDER BY ts, seq",
                       {"r": run_id})


@pytest.mark.kernel
def test_keyframes_are_written_during_the_recording(kernel, tmp_path):
    with Store(str(tmp_path / "db"), purpose="test") as store:
        live = WatchedIndexer(store, every=EVERY, interval=0.2)
        result = Recorder(store, RecordOptions(command=[sys.executable, "-c", WORKLOAD, str(tmp_path)],
                                               handle_signals=False), indexer=live).run()
        assert result.exit_code == 0 and result.lost == 0
        assert live.error is None
        assert live.passes >= 3  # it kept up while the run went on
        assert live.stored_at_stop and live.stored_at_stop >= 5, "no keyframes before the recording ended"
        run = resolve_run(store, str(result.run_id))
        total = live.finish(run)
        assert total > live.stored_at_stop  # the tail came after
        written_live = positions(store, run.run_id)
        assert store.query("SELECT count() FROM processes WHERE run_id = {r:UUID}", {"r": run.run_id})[0][0] >= 1
        assert len(written_live) == total
        # the same facts give the same keyframes: a rebuild from the events writes exactly these
        blobs = {(ts, seq): keyframes.decode(keyframes._fetch(store, run.run_id, ts, seq)) for ts, seq, _ in written_live}
        assert keyframes.build(store, run, every=EVERY) == total
        assert positions(store, run.run_id) == written_live
        for (ts, seq), doc in blobs.items():
            assert keyframes.decode(keyframes._fetch(store, run.run_id, ts, seq)) == doc
        rng = random.Random(5)
        for at in [rng.randint(run.start_ns, run.end_ns) for _ in range(15)]:
            assert state_at(store, run, at).to_json() == state_at(store, run, at, use_keyframes=False).to_json()
