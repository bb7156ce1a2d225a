"""A small generated run for the TUI's tests and snapshots, written through the real ingest path,
with everything fixed (run id, clocks, pids) so what the screen shows is the same on every machine.

pid 4242 `sh job.sh` (uid 1000, in the baseline) opens /tmp/a at +0.5s and a TCP socket at +0.6s,
forks 4243 at +1.0s; 4243 fails to open /tmp/missing at +1.1s and exits 3 at +1.4s; 88 records are
lost at +1.3s; 4242 reaps it at +1.45s, closes /tmp/a at +1.5s and exits 0 at +1.9s. Both CPUs
switch between the two processes, idle and a task outside the recording."""

from __future__ import annotations

import uuid

import numpy as np
from synthetic import record

from osrewind.ingest import decode
from osrewind.ingest.store import Store
from osrewind.probes.records import AT_FDCWD, KIND_CODES

START = 10_000_000_000
WALL_OFFSET = 1_795_000_000_000_000_000 - START    # 2026-11-18, whatever the machine's clock says
RUN_A = uuid.UUID("0a0a0a0a-1111-4222-8333-444444444444")
RUN_B = uuid.UUID("0b0b0b0b-1111-4222-8333-444444444444")
MS = 1_000_000


def switch(ts: int, cpu: int, prev: int, next_tid: int, next_pid: int, comm: bytes) -> np.ndarray:
    ev = record(ts, "sched_switch", prev, a0=1, a1=next_tid, a2=next_pid, path=comm, comm=b"sh" if prev else b"")
    ev["cpu"] = cpu
    return ev


def facts(variant: str = "a") -> np.ndarray:
    S, pid, kid = START, 4242, 4243
    out = [
        switch(S + 100 * MS, 0, 0, pid, pid, b"sh"),
        switch(S + 150 * MS, 1, 0, 999, -1, b"kworker/1:0"),
        record(S + 500 * MS, "open", pid, ret=3, a0=AT_FDCWD, path=b"/tmp/a"),
        record(S + 600 * MS, "socket", pid, ret=4, a0=2, a1=1),
        switch(S + 700 * MS, 0, pid, 0, 0, b"swapper/0"),
        record(S + 1000 * MS, "fork", pid, a0=pid, a1=kid),
        switch(S + 1005 * MS, 1, 0, kid, kid, b"sh"),
        record(S + 1100 * MS, "open", kid, ret=-2, a0=AT_FDCWD, path=b"/tmp/missing"),
        record(S + 1400 * MS, "exit_call", kid, a0=3, a1=1),
        record(S + 1400 * MS + 1, "task_exit", kid, a0=1),
        switch(S + 1400 * MS + 2, 1, kid, 0, 0, b"swapper/1"),
        switch(S + 1440 * MS, 0, 0, pid, pid, b"sh"),
        record(S + 1450 * MS, "wait", pid, ret=kid, a0=3 << 8),
        record(S + 1500 * MS, "close", pid, a0=3),
        record(S + 1900 * MS, "exit_call", pid, a0=0, a1=1),
        record(S + 1900 * MS + 1, "task_exit", pid, a0=1),
    ]
    if variant == "b":  # the second run: the child also opens /tmp/b, and exits 0
        out[8] = record(S + 1400 * MS, "exit_call", kid, a0=0, a1=1)
        out[12] = record(S + 1450 * MS, "wait", pid, ret=kid, a0=0)
        out.insert(8, record(S + 1200 * MS, "open", kid, ret=3, a0=AT_FDCWD, path=b"/tmp/b"))
    for e in out:
        if e["kind"][0] == KIND_CODES["sched_switch"] and e["tgid"][0] == 0:
            e["tid"] = 0
    return np.concatenate(out)


def write(db: str, variant: str = "a", name: str = "job") -> str:
    from osrewind.queries import keyframes
    from osrewind.queries.runs import resolve_run

    run_id = RUN_A if variant == "a" else RUN_B
    evs = facts(variant)
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows(
            "runs",
            [[run_id, name, "testhost", "", "6.18", ["sh", "job.sh"], "/tmp", "command", 4242, START,
              START + 2000 * MS, WALL_OFFSET, len(evs), 88, 0 if variant == "a" else 1, "complete", "test", 1]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"])
        store.insert_rows(
            "snapshot_procs", [[run_id, START, 4242, 1, START - 1000, 1000, "sh", "/bin/sh", ["sh", "job.sh"],
                                "/tmp", 1]],
            ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
        store.insert_rows("snapshot_fds", [[run_id, START, 4242, fd, target, kind, 0, 0] for fd, target, kind in
                                           [(0, "/dev/null", "file"), (1, "pipe:[77]", "pipe"),
                                            (2, "pipe:[77]", "pipe")]],
                          ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
        store.insert_arrow("events", decode.to_arrow(evs, run_id, 0))
        store.insert_arrow("events", decode.lost_row(run_id, START + 1300 * MS, len(evs), 88))
        keyframes.build(store, resolve_run(store, str(run_id)), every=4)
    return str(run_id)
