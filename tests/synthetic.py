"""Generated runs written through the real ingest path (decode.to_arrow + Store), for tests that need
a stored run but not a kernel: the records are built as the probe would emit them."""

from __future__ import annotations

import time
import uuid

import numpy as np

from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.probes.records import AT_FDCWD, EVENT_DTYPE, KIND_CODES, STR_HALF


def record(ts: int, kind: str, tgid: int, ret: int = 0, a0: int = 0, a1: int = 0, a2: int = 0,
           path: bytes = b"", comm: bytes = b"sh") -> np.ndarray:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev["ts"], ev["kind"], ev["tgid"], ev["tid"] = ts, KIND_CODES[kind], tgid, tgid
    ev["ret"], ev["a0"], ev["a1"], ev["a2"] = ret, a0, a1, a2
    ev["comm"] = comm
    raw = bytearray(512)
    raw[: len(path)] = path[:STR_HALF]
    ev["str"] = bytes(raw)
    ev["len1"] = len(path)
    return ev


def write_run(db: str, name: str = "synthetic", start_ns: int = 10_000_000_000, duration_ns: int = 2_000_000_000,
              pid: int = 4242) -> str:
    """A run: one baseline shell that opens /tmp/a at +0.5s, forks a child at +1s, exits 0 at +1.5s."""
    run_id = uuid.uuid4()
    evs = np.concatenate([
        record(start_ns + 500_000_000, "open", pid, ret=3, a0=AT_FDCWD, path=b"/tmp/a"),
        record(start_ns + 1_000_000_000, "fork", pid, a0=pid, a1=pid + 1),
        record(start_ns + 1_400_000_000, "task_exit", pid + 1, a0=1),
        record(start_ns + 1_500_000_000, "exit_call", pid, a0=0, a1=1),
        record(start_ns + 1_500_000_001, "task_exit", pid, a0=1),
    ])
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        wall = time.time_ns() - time.monotonic_ns()
        store.insert_rows(
            "runs",
            [[run_id, name, "testhost", "", "6.18", ["sh", "job.sh"], "/tmp", "command", pid, start_ns,
              start_ns + duration_ns, wall, len(evs), 0, 0, "complete", "test", time.time_ns()]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"],
        )
        store.insert_rows(
            "snapshot_procs", [[run_id, start_ns, pid, 1, start_ns - 1000, 0, "sh", "/bin/sh", ["sh", "job.sh"],
                                "/tmp", 1]],
            ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
        store.insert_rows("snapshot_fds", [[run_id, start_ns, pid, 0, "/dev/null", "file", 0, 0]],
                          ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
        store.insert_arrow("events", decode.to_arrow(evs, run_id, 0))
    return str(run_id)
