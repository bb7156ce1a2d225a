"""The run's spool, without root: frames round-trip, a torn tail is cut, a full spool sheds the
stream lanes and keeps the state lane, and a writer that died mid-run is recovered from its spool
with every fact exactly once. Records are byte fixtures laid out as the kernel's rings lay them out."""

from __future__ import annotations

import contextlib
import os
import uuid

import numpy as np
import pyarrow as pa
import pytest
from test_decode_fixtures import buf, call, event, slot

from osrewind.ingest import recover, spool
from osrewind.ingest.store import Store
from osrewind.ingest.writer import EventWriter
from osrewind.probes import records

K = records.KIND_CODES


def _spool(tmp_path, run, **kw) -> spool.Spool:
    return spool.Spool(tmp_path / "spool", str(run), {"run_id": str(run), "name": "t", "start_ns": 1}, **kw)


def _die(sp: spool.Spool) -> None:
    """What SIGKILL does to a recorder's spool: its files stay, its lock goes."""
    sp.close()
    os.close(sp._lock_fd)


def test_frames_round_trip_and_a_torn_tail_ends_the_segment(tmp_path):
    run = uuid.uuid4()
    sp = _spool(tmp_path, run)
    a = buf(slot(event(10, K["open"], s1=b"/a", ret=3)))
    f1 = sp.append(spool.DRAIN, 5, [(spool.RING_PARTS["events"], a)])
    f2 = sp.append(spool.LOST, 6, [(spool.PART_LOST, spool.LOST_ROW.pack(6, 3, 1))])
    assert spool.read_payload(sp.path, f1)[spool.RING_PARTS["events"]].tobytes() == a.tobytes()
    seg = sp.path / spool.segment_name(1)
    with open(seg, "ab") as f:   # a frame the recorder was killed in the middle of writing
        f.write(spool._frame_bytes(spool.DRAIN, 7, [(0, 1000)]) + b"\1" * 10)
    got = list(spool.frames(sp.path))
    assert [(g.type, g.taken_ns, g.end) for g in got] == [(spool.DRAIN, 5, f1.end), (spool.LOST, 6, f2.end)]
    # a damaged header ends the segment there too
    data = bytearray(seg.read_bytes())
    data[f1.end.off + 4] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert [g.end for g in spool.frames(sp.path)] == [f1.end]
    sp.remove()
    assert not (tmp_path / "spool").exists()


def test_drains_read_back_as_one_join_each_ring_in_frame_order_across_segments(tmp_path, monkeypatch):
    """The writer reads a batch of DRAIN frames in one go: each ring's parts joined in frame order
    (also across a segment boundary), the user-space state parts kept apart, the same bytes as
    reading each frame by itself."""
    monkeypatch.setattr(spool, "SEGMENT_BYTES", 600)   # a new segment every few frames
    sp = _spool(tmp_path, uuid.uuid4())
    frames = []
    for i in range(8):
        parts = [(spool.RING_PARTS["rb_sc"], buf(slot(call(100 + i, 5, 0, [i] * 6))))]
        if i % 3 == 0:
            parts.insert(0, (spool.RING_PARTS["events"], buf(slot(event(10 + i, K["open"], s1=b"/a", ret=i)))))
        if i % 4 == 1:
            parts.append((spool.PART_STATE, np.full(records.EVENT_DTYPE.itemsize, i, dtype=np.uint8)))
        frames.append(sp.append(spool.DRAIN, i, parts))
    assert len({f.seg for f in frames}) > 1
    rings, state = spool.read_drains(sp.path, frames)
    one_by_one = [spool.read_payload(sp.path, f) for f in frames]
    for ring in ("events", "rb_sc"):
        code = spool.RING_PARTS[ring]
        assert rings[ring].tobytes() == b"".join(d[code].tobytes() for d in one_by_one if code in d)
    assert set(rings) == {"events", "rb_sc"}
    assert [s.tobytes() for s in state] == [d[spool.PART_STATE].tobytes() for d in one_by_one
                                            if spool.PART_STATE in d]
    sp.remove()


def test_ring_slots_lost_by_the_disk_are_cut_on_recovery():
    good = slot(event(10, K["close"], a=(3,)))
    raw = buf(good, good, b"\0" * len(good))
    assert len(spool.valid_prefix(raw, "event")) == 2 * len(good)


def test_a_full_spool_sheds_the_stream_and_keeps_the_state(tmp_path):
    run = uuid.uuid4()
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        sp = _spool(tmp_path, run, max_bytes=1 << 20)
        w = EventWriter(store, run, sp)
        sp.appended = 1 << 20      # as if a megabyte were waiting for the store
        n = 1000
        flood = buf(*[slot(call(200 + i, 9, 39, [0] * 6)) for i in range(n)])
        state = buf(slot(event(100, K["open"], s1=b"/kept", ret=3)))
        w.put_rings({"events": state, "rb_sc": flood}, 50)
        sp.appended = sp.consumed = 0
        w.close()
        assert w.shed == n
        rows = store.query("SELECT toString(kind), a0, a1, path FROM events WHERE run_id = {r:UUID} ORDER BY seq",
                           {"r": run})
    kinds = [(k, p if isinstance(p, bytes) else p.encode()) for k, _, _, p in rows]
    assert ("open", b"/kept") in kinds
    assert [(a0, a1) for k, a0, a1, _ in rows if k == "lost"] == [(n, records.DROP_CODES["spool_full"])]


def _fill(w: EventWriter, base: int) -> tuple[int, int]:
    """A drain of every lane's kind of record: 2 state facts, 2 syscalls."""
    state = buf(slot(event(base, K["open"], s1=b"/f%d" % base, ret=3)), slot(event(base + 1, K["close"], a=(3,))))
    sc = buf(slot(call(base + 2, 9, 39, [0] * 6, ret=9, dur=1)),
             slot(call(base + 4, 9, 0, [3, 0, 1, 0, 0, 0], ret=9, dur=1, sent=False)))
    w.put_rings({"rb_sc": sc, "events": state}, base + 7)
    return 2, 2


def _facts(store, run) -> list[tuple]:
    return store.query("SELECT seq, ts, toString(kind), ret FROM events WHERE run_id = {r:UUID} ORDER BY seq",
                       {"r": run})


@contextlib.contextmanager
def _recording(tmp_path):
    """A store whose run is 'recording', with that run's spool and a writer over it (no thread: the
    test inserts), as a recorder has them: (store, run, spool, writer)."""
    run = uuid.uuid4()
    db = str(tmp_path / "db")
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows("runs", [[run, "t", 1, 0, "recording"]], ["run_id", "name", "start_ns", "end_ns", "status"])
        sp = spool.Spool(spool.spool_root(db, True), str(run), {"run_id": str(run), "name": "t", "start_ns": 1})
        yield store, run, sp, EventWriter(store, run, sp, thread=False)


def test_a_writer_killed_mid_run_is_recovered_exactly_once(tmp_path):
    """Some frames inserted and checkpointed, one inserted after the last checkpoint (the kill came
    between), the rest only spooled: recovery deletes the unchecked rows, ingests the rest, and the
    run reads exactly as an uninterrupted one."""
    with _recording(tmp_path) as (store, run, sp, w):
        w.insert("snapshot_procs", pa.table({"run_id": pa.array([str(run)]), "ts": pa.array([1], pa.int64()),
                                             "pid": pa.array([9], pa.uint32())}))
        _fill(w, 100)
        w.lost(150, 4, 1)
        _fill(w, 200)
        # the writer's thread would have inserted this much and checkpointed:
        frames = list(spool.frames(sp.path))
        for f in frames[:1]:
            w._one(f)
        w._insert(frames[1:2])
        w._one(frames[2])
        inserted_past_checkpoint = frames[3]
        saved = spool.load_checkpoint(sp.path)
        w._insert([inserted_past_checkpoint])
        spool.save_checkpoint(sp.path, saved["pos"], saved["seq"], saved["written"], saved["held"])  # the kill
        _die(sp)
        # what a recovery has to catch up on: the bytes past the checkpoint
        assert [int(p.name[4:12]) for p in sp.path.glob("seg-*")] == [saved["pos"].seg]
        past = (sp.path / spool.segment_name(saved["pos"].seg)).stat().st_size - saved["pos"].off
        assert spool.Spool.reopen(sp.path).backlog == past > 0
        assert [o.run_id for o in recover.pending(store)] == [str(run)]
        done = recover.recover_all(store)
        assert [(r.run_id, r.from_spool) for r in done] == [(str(run), 3 + 1)]   # frame 3: 2 state + 2 syscalls
        assert recover.pending(store) == []
        got = _facts(store, run)
        status, detail, events, lost = store.query(
            "SELECT status, status_detail, events, lost FROM runs FINAL WHERE run_id = {r:UUID}", {"r": run})[0]
        procs = store.query("SELECT count() FROM snapshot_procs WHERE run_id = {r:UUID}", {"r": run})[0][0]

    # the same records through a writer that was never interrupted
    run2 = uuid.uuid4()
    with Store(str(tmp_path / "db2"), purpose="test") as store2:
        store2.ensure_schema()
        w2 = EventWriter(store2, run2, _spool(tmp_path, run2), thread=False)
        _fill(w2, 100)
        w2.lost(150, 4, 1)
        _fill(w2, 200)
        w2.replay(spool.frames(w2.spool.path))
        want = _facts(store2, run2)
    assert got == want
    assert [s for s, *_ in got] == list(range(len(got)))
    assert (status, events, lost, procs) == ("recovered", len(got) - 1, 4, 1)
    assert "recovered from its spool" in detail


def test_a_live_recorders_spool_is_not_recovered(tmp_path):
    run = uuid.uuid4()
    db = str(tmp_path / "db")
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        sp = spool.Spool(spool.spool_root(db, True), str(run), {"run_id": str(run)})
        assert recover.pending(store) == []
        sp.remove()


def test_checkpoint_keeps_the_syscall_lanes_task_names(tmp_path):
    held = {"tid_comm": np.array([(9, b"dd"), (12, b"\xffname")], dtype=records.TID_COMM_DTYPE)}
    spool.save_checkpoint(tmp_path, spool.Pos(2, 40), 17, 12, held)
    cp = spool.load_checkpoint(tmp_path)
    assert (cp["pos"], cp["seq"], cp["written"]) == (spool.Pos(2, 40), 17, 12)
    assert cp["held"]["tid_comm"].tobytes() == held["tid_comm"].tobytes()


def test_merges_wait_while_the_writer_catches_up_and_run_again_after(tmp_path, monkeypatch):
    """Far behind (spool backlog over CATCH_UP_BYTES), the embedded store's merges wait, for at most
    PAUSED_MERGES_INSERTS inserts, then run until the writer has caught up; caught up, they run: the
    engine merges the parts made meanwhile (OPTIMIZE refuses while they wait)."""
    from osrewind.ingest import writer

    monkeypatch.setattr(writer, "PAUSED_MERGES_INSERTS", 3)
    run = uuid.uuid4()
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        calls = []
        real = store.pause_merges
        monkeypatch.setattr(store, "pause_merges", lambda t, p: calls.append(p) or real(t, p))
        sp = _spool(tmp_path, run)
        w = EventWriter(store, run, sp, thread=False)
        for i in range(6):
            _fill(w, 100 * (i + 1))
        frames = [f for f in spool.frames(sp.path) if f.type == spool.DRAIN]
        sp.appended = sp.consumed + writer.CATCH_UP_BYTES     # far behind
        w._insert(frames[:1])
        with pytest.raises(Exception, match="(?i)cancel|abort|merg"):
            store.client.command("OPTIMIZE TABLE events FINAL")
        for f in frames[1:5]:
            w._insert([f])
        assert calls == [True, False]     # paused, then (after 3 more inserts) running to the end
        sp.appended = sp.consumed = 0     # caught up
        w._insert(frames[5:])
        w.close()
        assert calls == [True, False]
        store.client.command("OPTIMIZE TABLE events FINAL")
        parts = store.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                            "AND table = 'events' AND active")[0][0]
        assert parts == 1 and len(_facts(store, run)) == 6 * 4


def test_a_large_spool_is_recovered_as_a_catch_up(tmp_path, monkeypatch):
    """A dead recorder's spool counts as the writer's backlog (its segments' bytes), so recovering
    one larger than CATCH_UP_BYTES makes merges wait, as a catch-up after a flood does, and run again
    once it is in: the engine merges the parts it made (OPTIMIZE refuses while merges wait)."""
    from osrewind.ingest import writer

    with _recording(tmp_path) as (store, run, sp, w):
        for i in range(4):
            _fill(w, 100 * (i + 1))
        _die(sp)
        on_disk = sum(p.stat().st_size for p in sp.path.glob("seg-*"))
        assert spool.Spool.reopen(sp.path).backlog == on_disk > 0
        monkeypatch.setattr(writer, "CATCH_UP_BYTES", 1)   # behind by any of it: catching up
        monkeypatch.setattr(writer, "CATCH_UP_RECORDS", 4)   # a part per frame
        calls, refused = [], []
        real_pause, real_insert = store.pause_merges, store.insert_arrow
        monkeypatch.setattr(store, "pause_merges", lambda t, p: calls.append(p) or real_pause(t, p))

        def insert(table, data):
            real_insert(table, data)
            if table == "events" and calls[-1:] == [True]:   # while merges wait, the engine will not merge
                with pytest.raises(Exception, match="(?i)cancel|abort|merg"):
                    store.client.command("OPTIMIZE TABLE events FINAL")
                refused.append(len(data))

        monkeypatch.setattr(store, "insert_arrow", insert)
        done = recover.recover_all(store)
        assert [(r.run_id, r.from_spool) for r in done] == [(str(run), 16)]
        assert calls == [True, False] and refused == [4, 4, 4, 4]
        store.client.command("OPTIMIZE TABLE events FINAL")
        parts = store.query("SELECT count() FROM system.parts WHERE database = currentDatabase() "
                            "AND table = 'events' AND active")[0][0]
        assert parts == 1 and len(_facts(store, run)) == 16


def _two_batches_first_slow(tmp_path, monkeypatch, fail: bool):
    """A writer whose first batch's insert is slow (and fails, with ``fail``) while its second
    inserter puts the second batch in at once. Returns (rows stored, checkpoints, error)."""
    import threading
    import time

    run = uuid.uuid4()
    checkpoints = []
    store = Store(str(tmp_path / "db"), purpose="test")
    store.ensure_schema()
    real_insert = Store.insert_arrow
    second_in = threading.Event()

    def insert_arrow(self, table, data):
        if table == "events" and data.column("seq")[0].as_py() == 0:
            assert second_in.wait(10)          # the second batch went in first
            time.sleep(0.2)
            if fail:
                raise OSError(28, "No space left on device")
        real_insert(self, table, data)
        if table == "events" and data.column("seq")[0].as_py() > 0:
            second_in.set()

    monkeypatch.setattr(Store, "insert_arrow", insert_arrow)
    sp = _spool(tmp_path, run)
    real_checkpoint = sp.checkpoint
    monkeypatch.setattr(sp, "checkpoint", lambda pos, seq, *a: checkpoints.append(seq) or real_checkpoint(pos, seq, *a))
    w = EventWriter(store, run, sp, batch_rows=1, batch_seconds=0.01)
    assert len(w._inserters) == 2
    _fill(w, 100)
    time.sleep(0.1)
    _fill(w, 200)
    error = None
    try:
        w.close()
    except Exception as exc:  # noqa: BLE001
        error = exc
    rows = _facts(store, run)
    store.close()
    return rows, checkpoints, error, w


def test_two_inserters_commit_in_spool_order(tmp_path, monkeypatch):
    rows, checkpoints, error, w = _two_batches_first_slow(tmp_path, monkeypatch, fail=False)
    assert error is None
    assert checkpoints == [4, 8]                  # the second batch's checkpoint waited for the first's
    assert [r[0] for r in rows] == list(range(8)) and w.written == 8


def test_a_failed_insert_takes_out_the_batch_that_went_in_after_it(tmp_path, monkeypatch):
    rows, checkpoints, error, w = _two_batches_first_slow(tmp_path, monkeypatch, fail=True)
    assert isinstance(error, OSError) and error.errno == 28
    assert checkpoints == [] and w.written == 0
    assert rows == []                             # the second batch was in, and is out again
