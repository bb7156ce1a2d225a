"""Rewind latency as recordings grow: `state --at` on generated runs of 1M and 10M events.

A run is generated in the kernel's record layout and inserted through the real ingest path
(decode.to_arrow + the embedded store), then indexed (keyframes) as `record` does. The mix follows
a real build-like recording: ~40% syscall-stream records, ~25% opens, ~20% closes, ~8% context
switches, the rest forks/execs/exits, dups, pipes and chdirs, over a process tree of ~200 live
processes. The report gives `state_at` p50 and p99 (library call, store already open, as the TUI and
the CLI's warm paths use it), for each size, and the 10M/1M p50 ratio:
- cold: random instants, with what the open store remembers of keyframes forgotten before each
  (the first rewind into a keyframe interval);
- scrub: after each cold rewind, rewinds to instants within 5 ms of run time around it (a scrubbing
  UI), served by the keyframes and facts the store keeps decoded.

Usage: .venv/bin/python bench/rewind.py [--sizes 1000000,10000000] [--samples 40] [--json out.json]
No root needed. Numbers are machine-dependent: compare the ratio.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osrewind.ingest import decode  # noqa: E402
from osrewind.ingest.store import Store  # noqa: E402
from osrewind.probes import records, syscall_table  # noqa: E402
from osrewind.queries import keyframes  # noqa: E402
from osrewind.queries.runs import resolve_run  # noqa: E402
from osrewind.queries.state import state_at  # noqa: E402

K = records.KIND_CODES
PROCS = 200
CHUNK = 500_000


def generate(n: int, start: int, rng: np.random.Generator) -> np.ndarray:
    """n records: vectorised, in chunks. Processes are pids 1000..1000+PROCS (all in the baseline);
    fds per process cycle through 3..40, so opens and closes pair up like a real program's."""
    kinds = np.array([K["syscall"], K["open"], K["close"], K["sched_switch"], K["dup"], K["pipe"], K["chdir"],
                      K["fork"], K["exec"], K["task_exit"]], dtype=np.uint16)
    weights = np.array([0.40, 0.25, 0.20, 0.08, 0.03, 0.015, 0.01, 0.005, 0.005, 0.005])
    ev = np.zeros(n, dtype=records.EVENT_DTYPE)
    ev["ts"] = start + np.cumsum(rng.integers(200, 2_000, n))
    kind = rng.choice(kinds, size=n, p=weights / weights.sum())
    pid = 1000 + rng.integers(0, PROCS, n)
    fd = 3 + rng.integers(0, 38, n)
    ev["kind"], ev["tgid"], ev["tid"] = kind, pid, pid
    kind = ev["kind"]  # a view: exits placed below show in it
    ev["ret"] = np.where(kind == K["open"], np.where(rng.random(n) < 0.85, fd, -2), 0)
    ev["ret"] = np.where(kind == K["dup"], fd, ev["ret"])
    ev["ret"] = np.where(kind == K["syscall"], 1, ev["ret"])
    ev["nr"] = np.where(kind == K["syscall"], syscall_table.number("getppid") or 110, 0)
    ev["a0"] = np.where(kind == K["open"], records.AT_FDCWD, fd)
    ev["a0"] = np.where(kind == K["dup"], 3 + rng.integers(0, 38, n), ev["a0"])
    ev["a1"] = np.where(kind == K["pipe"], fd + 1, np.where(kind == K["sched_switch"], pid, 0))
    ev["a2"] = np.where(kind == K["sched_switch"], pid, np.where(kind == K["open"], 0o2000000, 0))
    # a fork makes a short-lived child (a fresh pid) that exits a little later
    ev["a0"] = np.where(kind == K["task_exit"], 0, ev["a0"])  # drawn task exits are thread exits
    forks = np.flatnonzero(kind == K["fork"])
    children = 100_000 + forks + int(start % 1_000_000) * 10
    ev["a1"][forks] = children
    ends = np.minimum(n - 1, forks + rng.integers(50, 3_000, len(forks)))
    ev["kind"][ends], ev["tgid"][ends], ev["tid"][ends], ev["a0"][ends] = K["task_exit"], children, children, 1
    ev["cpu"] = rng.integers(0, 2, n)
    paths = np.array([f"/src/module{i}/file{j}.c".encode() for i in range(50) for j in range(20)])
    pick = paths[rng.integers(0, len(paths), n)]
    raw = np.zeros((n, records.STR_LEN), dtype=np.uint8)
    lens = np.array([len(p) for p in pick], dtype=np.uint16)
    has = np.isin(kind, [K["open"], K["chdir"], K["exec"]])
    buf = np.frombuffer(pick.astype(f"S{records.STR_HALF}").tobytes(), dtype=np.uint8).reshape(n, records.STR_HALF)
    raw[:, : records.STR_HALF] = buf
    ev["str"] = raw.view(f"V{records.STR_LEN}").reshape(n)
    ev["len1"] = np.where(has, lens, 0)
    ev["comm"] = b"cc1"
    return ev


def make_run(store: Store, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    run_id = uuid.uuid4()
    start = 10**12
    seq = 0
    end = start
    for offset in range(0, n, CHUNK):
        ev = generate(min(CHUNK, n - offset), end, rng)
        end = int(ev["ts"][-1])
        store.insert_arrow("events", decode.to_arrow(ev, run_id, seq))
        seq += len(ev)
    store.insert_rows(
        "runs",
        [[run_id, f"synthetic-{n}", "bench", "", "", ["make"], "/src", "command", 1000, start, end + 1, 0, n, 0, 0,
          "complete", "bench", time.time_ns()]],
        ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns", "end_ns",
         "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"])
    store.insert_rows(
        "snapshot_procs",
        [[run_id, start, 1000 + i, 1, start - 1, 0, "cc1", "/usr/bin/cc1", ["cc1", f"f{i}.c"], "/src", 1]
         for i in range(PROCS)],
        ["run_id", "ts", "pid", "ppid", "start_ns", "uid", "comm", "exe", "argv", "cwd", "threads"])
    store.insert_rows(
        "snapshot_fds",
        [[run_id, start, 1000 + i, fd, "/dev/null", "file", 0, 0] for i in range(PROCS) for fd in (0, 1, 2)],
        ["run_id", "ts", "pid", "fd", "target", "kind", "flags", "pos"])
    return str(run_id)


def _pct(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    return statistics.median(lat), lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    report = {}
    with tempfile.TemporaryDirectory(prefix="osrewind-rewind-") as tmp, Store(str(Path(tmp) / "db")) as store:
        store.ensure_schema()
        for n in [int(x) for x in args.sizes.split(",")]:
            t0 = time.monotonic()
            run_id = make_run(store, n, seed=n)
            t1 = time.monotonic()
            run = resolve_run(store, run_id)
            frames = keyframes.build(store, run)
            t2 = time.monotonic()
            rng = random.Random(n)
            state_at(store, run, run.end_ns)  # warm: first query pays one-time costs
            lat, scrub = [], []
            for _ in range(args.samples):
                at = rng.randint(run.start_ns, run.end_ns)
                keyframes.forget(store, run)
                keyframes.positions(store, run)  # kept for the store's life: not part of a rewind
                t = time.perf_counter()
                st = state_at(store, run, at)
                lat.append((time.perf_counter() - t) * 1000)
                for _ in range(5):
                    near = min(run.end_ns, max(run.start_ns, at + rng.randint(-5_000_000, 5_000_000)))
                    t = time.perf_counter()
                    state_at(store, run, near)
                    scrub.append((time.perf_counter() - t) * 1000)
            p50, p99 = _pct(lat)
            s50, s99 = _pct(scrub)
            report[n] = {"insert_s": round(t1 - t0, 1), "index_s": round(t2 - t1, 1), "keyframes": frames,
                         "p50_ms": round(p50, 1), "p99_ms": round(p99, 1), "scrub_p50_ms": round(s50, 1),
                         "scrub_p99_ms": round(s99, 1), "processes_at_last_sample": len(st.processes)}
            print(f"{n:>10,} events: inserted in {t1 - t0:.1f}s, {frames} keyframes in {t2 - t1:.1f}s, "
                  f"state_at cold p50 {p50:.1f} ms, p99 {p99:.1f} ms; scrub p50 {s50:.1f} ms, p99 {s99:.1f} ms")
    sizes = sorted(report)
    if len(sizes) > 1:
        ratio = report[sizes[-1]]["p50_ms"] / report[sizes[0]]["p50_ms"]
        print(f"p50 ratio {sizes[-1]:,} / {sizes[0]:,} events: {ratio:.2f}x")
        report["p50_ratio"] = round(ratio, 2)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
