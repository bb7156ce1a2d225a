"""The writer's queue is bounded: when it is full, the stream lanes are shed (and counted as lost at
their cause) while the state lane's facts are kept. No root needed."""

from __future__ import annotations

import threading
import uuid

import numpy as np
from test_decode_fixtures import buf, event, slot

from osrewind.ingest.store import Store
from osrewind.ingest.writer import QUEUE_UNIT_BYTES, EventWriter
from osrewind.probes import records


def test_a_full_queue_sheds_the_stream_and_keeps_the_state(tmp_path):
    run = uuid.uuid4()
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        w = EventWriter(store, run)
        w._space = threading.Semaphore(1)  # room for one unit: a drain bigger than that does not fit
        n = 2 * QUEUE_UNIT_BYTES // records.slot_size("sc_enter")
        flood = np.zeros(n * records.slot_size("sc_enter"), dtype=np.uint8)
        state = buf(slot(event(100, records.KIND_CODES["open"], s1=b"/kept", ret=3)))
        w.put(records.Drained({"events": state, "rb_sc_enter": flood}), 50)
        w.close()
        assert w.shed == n
        rows = store.query("SELECT toString(kind), a0, a1, path FROM events WHERE run_id = {r:UUID} ORDER BY seq",
                           {"r": run})
    assert ("open", 0, 0, b"/kept") in [(k, a0, a1, p if isinstance(p, bytes) else p.encode()) for k, a0, a1, p in rows]
    lost = [(a0, a1) for k, a0, a1, _ in rows if k == "lost"]
    assert lost == [(n, records.DROP_CODES["queue_full"])]
