"""The Python API on a generated run: the same answers as the CLI gives."""

from __future__ import annotations

import pytest
from synthetic import write_run

from osrewind.errors import UsageError
from osrewind.queries import keyframes
from osrewind.queries.api import Recording, runs


def test_recording_api(tmp_path):
    db = str(tmp_path / "db")
    run_id = write_run(db, name="api")
    assert [r.run_id for r in runs(db)] == [run_id]
    with Recording.open("api", db=db) as rec:
        keyframes.build(rec.store, rec.run, every=2)
        st = rec.state_at("+1.2s")
        assert sorted(p.pid for p in st.processes) == [4242, 4243]
        assert rec.state_at(rec.run.start_ns + 1_200_000_000).to_json() == st.to_json()
        opens = list(rec.events(kinds=["open"]))
        assert [e["path"] for e in opens] == ["/tmp/a"]
        assert list(rec.events(t_from="+0.6s", kinds=["open"])) == []
        assert rec.process(4243).ppid == 4242
        (root,) = rec.tree()
        assert root.pid == 4242 and [c.pid for c in root.children] == [4243]
        lin = rec.lineage("/tmp/a")
        assert lin["path"] == "/tmp/a" and lin["events"] == []  # only read, never written
        assert rec.top()["files"][0]["path"] == "/tmp/a"
        assert rec.diff(run_id)["differences"] == []
        with pytest.raises(UsageError):
            rec.state_at("+9s")
        with pytest.raises(UsageError):
            rec.process(1)
