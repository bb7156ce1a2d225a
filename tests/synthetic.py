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


def rename(ts: int, tgid: int, old: bytes, new: bytes, flags: int = 0) -> np.ndarray:
    """A rename(2) fact as the probe writes it: the two paths in the two halves of its string."""
    ev = record(ts, "rename", tgid, a0=AT_FDCWD, a1=AT_FDCWD, a2=flags, path=old)
    raw = bytearray(ev["str"][0].tobytes())
    raw[STR_HALF : STR_HALF + len(new)] = new
    ev["str"], ev["len2"] = bytes(raw), len(new)
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


def random_run(db: str, seed: int, n: int = 3000, name: str = "random") -> str:
    """A generated run that behaves like a small process tree: forks, execs, opens (some failing),
    dups, pipes, close-on-exec, close_range, chdir, renames and unlinks of open files, thread
    creation and exits, exits and waits, context switches. Facts are drawn at random but stay
    plausible (fds are reused as the kernel does, processes exist before they act)."""
    import random

    rng = random.Random(seed)
    start = 50_000_000_000
    t = start
    live: dict[int, dict] = {100: {"fds": {0, 1, 2}, "threads": 1}}
    next_pid = 101
    out: list[np.ndarray] = []
    k = 0
    while k < n:
        t += rng.randint(1_000, 200_000)
        pid = rng.choice(sorted(live))
        p = live[pid]
        roll = rng.random()
        fds = p["fds"]
        low = min(set(range(len(fds) + 1)) - fds)
        if roll < 0.25:
            path = f"/data/{rng.choice('abcdef')}{rng.randint(0, 9)}".encode() if rng.random() < 0.7 else \
                f"rel/{rng.randint(0, 5)}".encode()
            ok = rng.random() < 0.8
            out.append(record(t, "open", pid, ret=low if ok else -2, a0=AT_FDCWD,
                              a2=0o2000000 if rng.random() < 0.5 else 0, path=path))
            if ok:
                fds.add(low)
        elif roll < 0.45 and len(fds) > 3:
            fd = rng.choice(sorted(fds - {0, 1, 2}))
            out.append(record(t, "close", pid, a0=fd))
            fds.discard(fd)
        elif roll < 0.50:
            out.append(record(t, "close", pid, ret=-9, a0=999))
        elif roll < 0.56 and len(fds) > 3:
            src = rng.choice(sorted(fds))
            target = rng.choice([low, rng.randint(3, 12)])
            out.append(record(t, "dup", pid, ret=target, a0=src, a1=target, a2=0o2000000 if rng.random() < 0.3 else 0))
            fds.add(target)
        elif roll < 0.60:
            r, w = low, min(set(range(len(fds) + 2)) - fds - {low})
            out.append(record(t, "pipe", pid, a0=r, a1=w, a2=0o2000000 if rng.random() < 0.5 else 0))
            fds.update((r, w))
        elif roll < 0.63:
            out.append(record(t, "setfd", pid, a0=rng.choice(sorted(fds)), a2=rng.randint(0, 1)))
        elif roll < 0.65:
            lo = rng.randint(3, 8)
            out.append(record(t, "close_range", pid, a0=lo, a1=lo + rng.randint(0, 4), a2=rng.choice([0, 4])))
        elif roll < 0.68:
            out.append(record(t, "chdir", pid, path=rng.choice([b"/data", b"rel", b"..", b"/tmp"])))
        elif roll < 0.70:
            out.append(record(t, "rename", pid, path=f"/data/a{rng.randint(0, 9)}".encode()))
            out[-1]["str"] = out[-1]["str"].tobytes()[:256] + (b"/data/z" + bytes(249))
            out[-1]["len2"] = 7
            out[-1]["a0"], out[-1]["a1"] = AT_FDCWD, AT_FDCWD
        elif roll < 0.72:
            out.append(record(t, "unlink", pid, a0=AT_FDCWD, path=f"/data/b{rng.randint(0, 9)}".encode()))
        elif roll < 0.78 and len(live) < 12:
            child = next_pid
            next_pid += 1
            thread = rng.random() < 0.3
            out.append(record(t, "fork", pid, a0=pid, a1=child, a2=0x10000 if thread else 0x1200011))
            if thread:
                p["threads"] += 1
            else:
                live[child] = {"fds": set(fds), "threads": 1}
                if rng.random() < 0.7:
                    t += 1000
                    ev = record(t, "exec_args", child)
                    blob = b"tool\0--run\0"
                    raw = bytearray(512)
                    raw[: len(blob)] = blob
                    ev["str"], ev["len1"], ev["a0"] = bytes(raw), len(blob), 2
                    out.append(ev)
                    t += 1000
                    out.append(record(t, "exec", child, a0=child, path=b"/usr/bin/tool"))
        elif roll < 0.84:
            nxt = rng.choice(sorted(live))
            out.append(record(t, "sched_switch", pid, a0=rng.choice([0, 1, 0x100]), a1=nxt, a2=nxt,
                              path=b"next"))
            out[-1]["cpu"] = rng.randint(0, 1)
        elif roll < 0.86 and pid != 100:
            out.append(record(t, "exit_call", pid, a0=rng.randint(0, 3), a1=1))
            t += 1000
            out.append(record(t, "task_exit", pid, a0=1))
            del live[pid]
            if rng.random() < 0.5:
                out.append(record(t + 500, "wait", 100, ret=pid, a0=rng.randint(0, 3) << 8))
        elif roll < 0.88 and p["threads"] > 1:
            ev = record(t, "task_exit", pid, a0=0)
            ev["tid"] = pid + 10_000
            out.append(ev)
            p["threads"] -= 1
        else:
            out.append(record(t, "socket", pid, ret=low, a0=2, a1=1))
            fds.add(low)
        k = len(out)
    return store_generated(db, out, start, t + 1, name)


def store_generated(db: str, out: list[np.ndarray], start: int, end: int, name: str) -> str:
    """A generated run's facts stored as a run of process 100 (a shell in /work with fds 0-2 on a
    terminal at the start); returns its id."""
    evs = np.concatenate(out)
    run_id = uuid.uuid4()
    with Store(db, purpose="test") as store:
        store.ensure_schema()
        store.insert_rows(
            "runs",
            [[run_id, name, "testhost", "", "6.18", ["sh", "gen"], "/work", "command", 100, start, end, 0,
              len(evs), 0, 0, "complete", "test", time.time_ns()]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"],
        )
        store.insert_rows("snapshot_procs", [[run_id, start, 100, 1, start - 5, 0, "sh", "/bin/sh", ["sh"], "/work", 1]],
                          ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
        store.insert_rows("snapshot_fds", [[run_id, start, 100, fd, "/dev/pts/0", "file", 0, 0] for fd in (0, 1, 2)],
                          ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
        store.insert_arrow("events", decode.to_arrow(evs, run_id, 0))
    return str(run_id)
