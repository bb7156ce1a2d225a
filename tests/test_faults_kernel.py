"""Faults while recording (issue 10): recording trouble never changes the outcome of the recorded
command. With the store on a disk that fills up mid-run, or the store deleted mid-run, ``record``
keeps waiting for the command, exits with its exit code and says in one line what happened; on a
full disk the run reads back ``failed`` with why and when, and its facts up to then are queryable
once there is space again. The writer's error path and the reasons are checked without a kernel."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import osrewind
from osrewind.errors import StoreError
from osrewind.ingest.recorder import RecordingFailure, RunResult, StoreGone, failure_line, failure_reason
from osrewind.ingest.spool import SPOOL_DIR_NAME, Spool
from osrewind.ingest.store import Store
from osrewind.ingest.writer import EventWriter

pytestmark = pytest.mark.kernel

OSREWIND = [sys.executable, "-m", "osrewind"]
CHDB_FULL = ("writing events to store /x failed: Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not "
             "enough space. (NOT_ENOUGH_SPACE)")


def _plain() -> None:
    import signal

    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def workload(work: Path) -> list[str]:
    """Some file activity, then it waits for ``go`` (the test makes the fault first), one more
    file, exit 3. Its files are outside the store's filesystem."""
    return ["/bin/sh", "-c",
            f"echo one > {work}/before; cat {work}/before > /dev/null; "
            f"while [ ! -e {work}/go ]; do sleep 0.05; done; "
            f"echo two > {work}/after; exit 3"]


def start_record(db: Path, work: Path, name: str) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(OSREWIND + ["--db", str(db), "record", "--json", "--name", name, "--",
                                        *workload(work)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_plain)


def wait_started(db: Path, work: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until the recorder's scope is live and the command's first file is written; then long
    enough for the writer to store that (it inserts at least every 0.5 s)."""
    lock = db / ".osrewind.lock"
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if "recording run" in (lock.read_text() if lock.exists() else "") and (work / "before").exists():
            break
        time.sleep(0.05)
    else:
        pytest.fail("the recording did not start")
    time.sleep(1.5)


def summary(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def small_fs(kernel, tmp_path):
    """A 40 MiB tmpfs: a disk that can be filled in a moment."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path) -> Path:
    """Write until the filesystem says ENOSPC."""
    path = mnt / "filler"
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    try:  # and the last few blocks
        with open(path, "ab", buffering=0) as f:
            while True:
                f.write(b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    return path


def test_disk_full_mid_run(small_fs, tmp_path):
    db, work = small_fs / "db", tmp_path / "work"
    proc = start_record(db, work, "diskfull")
    wait_started(db, work, proc)
    filled_at = time.monotonic_ns()
    filler = fill(small_fs)
    time.sleep(1.5)                       # the writer's next batches meet the full disk
    (work / "go").touch()
    out, err = proc.communicate(timeout=120)

    # the command's outcome is its own; one line says what happened to the recording
    assert proc.returncode == 3, err
    lines = [ln for ln in err.splitlines() if "recording failed at +" in ln and "ran to the end" in ln]
    assert len(lines) == 1, err
    assert "disk full (ENOSPC)" in lines[0] and "events kept" in lines[0]
    assert lines[0].endswith("the command ran to the end (exit 3)"), err
    assert "complete" not in err and "Traceback" not in err
    s = summary(out)
    assert s["status"] == "failed" and s["exit_code"] == 3 and s["events"] > 0
    assert s["status_detail"].startswith("disk full (ENOSPC) at +"), s
    at_s = float(s["status_detail"].rsplit("+", 1)[1].rstrip("s"))
    assert 0 < at_s < s["duration_s"]
    assert not (db / "osrewind-reserve").exists()   # the space set aside was given back

    # with space again, the run reads back failed, and its facts up to then are all there
    filler.unlink()
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    run = next(r for r in runs if r["run_id"] == s["run_id"])
    assert run["status"] == "failed" and run["exit_code"] == 3
    assert run.get("status_detail", s["status_detail"]) == s["status_detail"]
    human = osrewind("runs", db=db, check=True).stdout
    assert "failed" in human and "disk full (ENOSPC) at +" in human
    with Store(str(db), mode="read") as store:
        rid = {"r": s["run_id"]}
        assert store.query("SELECT status, status_detail FROM runs FINAL WHERE run_id = {r:UUID}", rid) == \
            [("failed", s["status_detail"])]
        kept = store.query("SELECT count() FROM events WHERE run_id = {r:UUID} AND kind != 'lost'", rid)[0][0]
        paths = {p for (p,) in store.query("SELECT DISTINCT path FROM events WHERE run_id = {r:UUID} "
                                           "AND kind = 'open'", rid)}
        last = store.query("SELECT max(ts) FROM events WHERE run_id = {r:UUID}", rid)[0][0]
    assert kept == s["events"]
    assert f"{work}/before" in paths            # recorded before the disk filled
    assert f"{work}/after" not in paths         # the command wrote it after: not recorded
    assert last < filled_at + 2_000_000_000
    ev = osrewind("events", s["run_id"], "--json", db=db)
    assert ev.returncode == 0 and f"{work}/before" in ev.stdout, ev.stderr
    st = osrewind("state", s["run_id"], "--at", "+0.2s", "--json", db=db)
    assert st.returncode == 0, st.stderr


def remove_while_written(path: Path) -> None:
    """`rm -rf` of a directory the engine is still writing into: again while files appear in it."""
    for _ in range(100):
        try:
            shutil.rmtree(path)
            return
        except OSError:
            time.sleep(0.05)
    shutil.rmtree(path)


@pytest.mark.parametrize("order", ["all", "spool first"])
def test_store_deleted_mid_run(kernel, tmp_path, order):
    """``spool first``: `rm -rf` reached the run's spool (inside the store) and the writer failed on a
    vanished segment before the store's directory itself was gone; the run still says the store was
    deleted, not "no such file"."""
    db, work = tmp_path / "db", tmp_path / "work"
    proc = start_record(db, work, "deleted")
    wait_started(db, work, proc)
    if order == "spool first":
        remove_while_written(db / SPOOL_DIR_NAME)
        time.sleep(1.5)   # the workload's loop goes on: the writer reads a segment that is gone
    remove_while_written(db)
    time.sleep(1.0)
    (work / "go").touch()
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == 3, err
    lines = [ln for ln in err.splitlines() if "recording failed at +" in ln and "ran to the end" in ln]
    assert len(lines) == 1, err
    assert f"store {db} was deleted" in lines[0] and "nothing kept" in lines[0], err
    assert lines[0].endswith("the command ran to the end (exit 3)"), err
    assert "complete" not in err and "Traceback" not in err
    s = summary(out)
    assert s["status"] == "failed" and s["exit_code"] == 3 and s["events"] == 0
    assert s["status_detail"].startswith(f"store {db} was deleted at +")


def test_live_tui_session_store_deleted(kernel, tmp_path):
    """The live TUI's recorder thread: the same outcome, and its status line says it."""
    from osrewind.ingest.recorder import RecordOptions
    from osrewind.tui.live import LiveSession

    db, work = tmp_path / "db", tmp_path / "work"
    work.mkdir()
    with Store(str(db), purpose="test") as store:
        live = LiveSession(store, RecordOptions(command=workload(work), name="live-deleted"))
        live.start()
        live.wait_started()
        assert live.run_info() is not None   # what the app's first screen reads
        deadline = time.time() + 60
        while not (work / "before").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
        remove_while_written(db)
        time.sleep(1.0)
        (work / "go").touch()
        live.join(120)
        assert live.error is None, live.error
        r = live.result
        assert r is not None and r.status == "failed" and r.exit_code == 3
        assert r.failure is not None and r.failure.store_gone
        assert live.indexed and live.status_text().startswith("recording failed at +")
        assert live.status_text().endswith("the command ran to the end (exit 3)")
        assert live.run_info().status == "failed"


# ---------------------------------------------------------------------- without a kernel


@pytest.mark.parametrize("exc,reason", [
    (StoreError(CHDB_FULL), "disk full (ENOSPC)"),
    (OSError(errno.ENOSPC, "No space left on device"), "disk full (ENOSPC)"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded (EDQUOT)"),
    (StoreGone("store /x was deleted"), "store /x was deleted"),
    (StoreError("writing events to store /x failed: Code: 1. something else\nmore"),
     "writing events to store /x failed: Code: 1. something else"),
])
def test_failure_reason(exc, reason):
    assert failure_reason(exc) == reason


def test_failure_reason_from_the_cause():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise StoreError("writing runs failed") from inner
    except StoreError as exc:
        assert failure_reason(exc) == "disk full (ENOSPC)"


def _result(failure: RecordingFailure, exit_code: int | None = 3, scope: str = "command") -> RunResult:
    return RunResult(uuid.uuid4(), "x", "failed", exit_code, 120, 0, 0, 1, extra={"scope": scope},
                     status_detail=failure.detail, failure=failure)


def test_failure_line():
    f = RecordingFailure("disk full (ENOSPC)", 12_345_000_000)
    assert f.detail == "disk full (ENOSPC) at +12.3s"
    assert failure_line(_result(f)) == ("recording failed at +12.3s: disk full (ENOSPC); 120 events kept; "
                                        "the command ran to the end (exit 3)")
    f.row_saved = False
    assert "it will read as aborted" in failure_line(_result(f))
    assert failure_line(_result(f, None)).endswith("the command was left running, unrecorded")
    assert failure_line(_result(RecordingFailure("x", 0), scope="system")) == \
        "recording failed at +0.0s: x; 120 events kept"


class FlakyStore:
    """Takes inserts until told the disk is full."""

    def __init__(self) -> None:
        self.full = False
        self.tables: list[str] = []
        self.lock = threading.Lock()

    def insert_arrow(self, table: str, data) -> None:
        if self.full:
            raise StoreError(CHDB_FULL)
        self.tables.append(table)


def _small_table():
    return pa.table({"x": pa.array([1, 2, 3])})


def _spool(tmp_path) -> Spool:
    run = uuid.uuid4()
    return Spool(tmp_path / "spool", str(run), {"run_id": str(run)})


def test_writer_stops_for_good_on_a_store_error(tmp_path):
    store = FlakyStore()
    w = EventWriter(store, uuid.uuid4(), _spool(tmp_path), batch_seconds=0.05)
    w.insert("snapshot_procs", _small_table())
    time.sleep(0.2)
    assert store.tables == ["snapshot_procs"] and w.error is None and w.failed_ns is None
    store.full = True
    before = time.monotonic_ns()
    w.insert("snapshot_fds", _small_table())
    deadline = time.time() + 5
    while w.error is None and time.time() < deadline:
        time.sleep(0.01)
    assert isinstance(w.error, StoreError) and w.failed_ns is not None and w.failed_ns >= before
    store.full = False
    w.insert("snapshot_fds", _small_table())   # nothing more is written after a failure
    with pytest.raises(StoreError):
        w.check()
    with pytest.raises(StoreError) as raised:
        w.close()
    assert raised.value is w.error and store.tables == ["snapshot_procs"]


def test_decoded_batches_go_in_in_order_and_the_checkpoint_stops_at_the_first_that_failed(tmp_path):
    """Decoding runs ahead of the inserter thread: the store still gets the batches once each, in
    spool order; no checkpoint ever says more is stored than is (what a recovery replays from); a
    failed insert stops the writer with the checkpoint at the last batch that went in."""
    from osrewind.ingest import decode
    from osrewind.ingest.spool import load_checkpoint

    class Keeping(FlakyStore):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[tuple[int, int]] = []
            self.go = threading.Event()

        def insert_arrow(self, table: str, data) -> None:
            self.go.wait(10)
            if self.full:
                raise StoreError(CHDB_FULL)
            self.rows += zip(data.column("seq").to_pylist(), data.column("a1").to_pylist(), strict=True)

    store = Keeping()
    sp = _spool(tmp_path)
    stored_at_checkpoints: list[tuple[int, int]] = []
    real_checkpoint = sp.checkpoint

    def checkpoint(pos, seq, written, held, consumed) -> None:
        stored_at_checkpoints.append((seq, len(store.rows)))
        real_checkpoint(pos, seq, written, held, consumed)

    sp.checkpoint = checkpoint
    w = EventWriter(store, uuid.uuid4(), sp, batch_rows=1, batch_seconds=0.01)
    for i in range(20):
        w.put(decode.io_records([(7, 3, i, 0, 1)], 1000 + i))
    deadline = time.time() + 10
    while w._decoded < 2 and time.time() < deadline:   # the first insert waits: decoding goes on
        time.sleep(0.01)
    assert w._decoded >= 2 and store.rows == [] and w.written == 0
    store.go.set()
    while not (sp.backlog == 0 and w.written == 20) and time.time() < deadline:
        time.sleep(0.01)
    assert store.rows == [(i, i) for i in range(20)]        # every batch once, in order
    assert load_checkpoint(sp.path)["seq"] == 20 and sp.backlog == 0
    assert stored_at_checkpoints and all(seq <= stored for seq, stored in stored_at_checkpoints)
    store.full = True
    w.put(decode.io_records([(7, 3, 99, 0, 1)], 2000))
    while w.error is None and time.time() < deadline:
        time.sleep(0.01)
    assert isinstance(w.error, StoreError) and w.failed_ns is not None
    assert load_checkpoint(sp.path)["seq"] == 20 and w.written == 20 and sp.backlog > 0
    with pytest.raises(StoreError):
        w.close()


def test_writer_guard_is_checked_while_idle(tmp_path):
    """A store deleted while nothing is being written is noticed within IDLE_CHECK_SECONDS."""
    gone = threading.Event()

    def guard() -> None:
        if gone.is_set():
            raise StoreGone("store /x was deleted")

    w = EventWriter(FlakyStore(), uuid.uuid4(), _spool(tmp_path), guard=guard)
    time.sleep(0.3)
    assert w.error is None
    gone.set()
    deadline = time.time() + 2
    while w.error is None and time.time() < deadline:
        time.sleep(0.01)
    assert isinstance(w.error, StoreGone)
    with pytest.raises(StoreGone):
        w.close()


def test_no_reserve_left_behind_by_a_normal_run(kernel, tmp_path):
    db = tmp_path / "db"
    proc = osrewind("record", "--quiet", "--json", "--", "true", db=db)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc.stdout)["status"] == "complete" and summary(proc.stdout)["status_detail"] == ""
    assert not (db / "osrewind-reserve").exists()
    assert os.listdir(db)


def test_pid_scope_store_deleted_ends_the_recording(kernel, tmp_path):
    """No command of its own to wait for: the recording ends at once, exit 4, the target untouched."""
    db = tmp_path / "db"
    target = subprocess.Popen(["sleep", "60"])
    try:
        rec = subprocess.Popen(OSREWIND + ["--db", str(db), "record", "--json", "--pid", str(target.pid)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_plain)
        lock = db / ".osrewind.lock"
        deadline = time.time() + 90
        while "recording run" not in (lock.read_text() if lock.exists() else "") and time.time() < deadline:
            assert rec.poll() is None, rec.communicate()
            time.sleep(0.05)
        time.sleep(0.5)
        remove_while_written(db)
        out, err = rec.communicate(timeout=60)
        assert rec.returncode == 4, err
        # "was deleted" and, when the engine has recreated the path as it wrote, "(another directory
        # is there now)"; either way nothing is kept (as in the command-scope test above)
        assert f"store {db} was deleted" in err and "nothing kept" in err and "ran to the end" not in err, err
        assert summary(out)["status"] == "failed"
        assert target.poll() is None   # recording trouble is not the target's
    finally:
        target.kill()
        target.wait()


def test_an_insert_failing_because_the_store_went_is_the_store_gone(tmp_path):
    """The engine's "file not found" from an insert racing `rm -rf` of the store: the writer reports
    the store as deleted (what the user did), not the engine's message."""
    gone = threading.Event()

    def guard() -> None:
        if gone.is_set():
            raise StoreGone("store /x was deleted")

    store = FlakyStore()
    w = EventWriter(store, uuid.uuid4(), _spool(tmp_path), guard=guard)
    w.insert("snapshot_procs", _small_table())
    time.sleep(0.2)

    def insert_after_removal(table, data):
        gone.set()   # the directory goes between the guard's check and the engine's write
        raise StoreError("writing events to store /x failed: Code: 107. DB::Exception: File /x/store not found")

    store.insert_arrow = insert_after_removal
    w.insert("snapshot_fds", _small_table())
    with pytest.raises(StoreGone):
        w.close()
    assert isinstance(w.error, StoreGone)
