"""Renames racing on two CPUs: three processes rename one directory back and forth (d1 <-> d2) at
the same time, in bursts of a few ms with rests between, while two others hold it (or a directory
inside it) as their cwd and read /proc/self/cwd in a loop. Each read is reported with the
CLOCK_MONOTONIC instants just before and just after it.

Recorded by tests/test_groundtruth_kernel.py and bench/concurrent_renames.py, which compare each read
made while no rename was in flight (``clear_reads``) with the rewound cwd at its instant.

Usage: renamers.py WORKDIR REPORT SECONDS
"""

from __future__ import annotations

import bisect
import json
import os
import sys
import time

PHASE_MS = 4        # the renamers race for PHASE_MS, then all rest for PHASE_MS, and so on
FACT_LAG_NS = 50_000  # a rename's fact is taken a moment after its syscall's return: in flight until then


def clear_reads(reads: list[dict], renames: list[tuple[int, int]]) -> list[dict]:
    """The reads no rename was in flight around: ``renames`` are the (entry, return) instants of every
    rename syscall, in entry order. Around such a read every rename has either returned (and its fact
    is in) or not yet entered, so /proc's answer is the only right one."""
    starts = [a for a, _b in renames]
    latest, top = [], 0   # the latest return among the renames entered up to each one
    for _a, b in renames:
        top = max(top, b + FACT_LAG_NS)
        latest.append(top)
    out = []
    for r in reads:
        i = bisect.bisect_right(starts, r["t1"])
        if not i or latest[i - 1] < r["t0"]:
            out.append(r)
    return out


def compare(store, run, reads: list[dict], most: int = 0) -> dict:
    """The recorded run against its reads: renames (syscalls recorded), how many overlapped another,
    the clear reads, how many of them (``most`` of them at most, evenly spread; 0: all) were compared
    and agree with the rewound cwd, and the first that disagree."""
    from osrewind.probes import syscall_table
    from osrewind.queries.state import state_at

    nrs = [n for n in (syscall_table.number(s) for s in ("rename", "renameat", "renameat2")) if n is not None]
    where = {"r": run.run_id, "nrs": nrs}
    renames = store.query("SELECT ts, ts + dur FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' "
                          "AND has({nrs:Array(UInt16)}, nr) ORDER BY ts", where)
    # a rename fact numbered a3 in entry order returned when a4 renames had entered
    overlapped = store.query("SELECT countIf(a4 > a3) FROM events WHERE run_id = {r:UUID} AND kind = 'rename'",
                             where)[0][0]
    clear = clear_reads(reads, renames)
    compared = clear[:: -(-len(clear) // most)] if most and clear else clear
    wrong = []
    for r in compared:
        procs = {p.pid: p for p in state_at(store, run, r["t1"]).processes}
        got = procs[r["pid"]].cwd if r["pid"] in procs else None
        if got != r["cwd"]:
            wrong.append({**r, "rewound": got})
    return {"renames": len(renames), "overlapped": overlapped, "reads": len(reads), "clear_reads": len(clear),
            "compared": len(compared), "agree": len(compared) - len(wrong), "disagree": wrong[:20]}


def main(work: str, report: str, seconds: float) -> None:
    os.makedirs(os.path.join(work, "d1", "inner"))
    end = time.monotonic() + seconds
    kids = []
    ready_r, ready_w = os.pipe()
    for i in range(2):  # the holders: one in the directory, one in a directory inside it
        pid = os.fork()
        if pid == 0:
            os.chdir(os.path.join(work, "d1", "inner") if i else os.path.join(work, "d1"))
            os.write(ready_w, b"x")
            out = []
            while time.monotonic() < end:
                t0 = time.monotonic_ns()
                cwd = os.readlink("/proc/self/cwd")
                t1 = time.monotonic_ns()
                out.append({"pid": os.getpid(), "t0": t0, "t1": t1, "cwd": cwd})
                time.sleep(0.002)
            with open(f"{report}.{i}", "w") as part:   # (one file each: pipe writes this big interleave)
                json.dump(out, part)
            os._exit(0)
        kids.append(pid)
    os.read(ready_r, 1)
    os.read(ready_r, 1)
    for _ in range(3):  # the renamers
        pid = os.fork()
        if pid == 0:
            a, b = (os.path.join(work, "d1"), os.path.join(work, "d2"))
            while time.monotonic() < end:
                if int(time.monotonic() * 1000 / PHASE_MS) % 2:   # all rest in the same slots
                    time.sleep(PHASE_MS / 4000)
                    continue
                for src, dst in ((a, b), (b, a)):
                    try:
                        os.rename(src, dst)
                    except OSError:
                        pass
            os._exit(0)
        kids.append(pid)
    for pid in kids:
        os.waitpid(pid, 0)
    reads = []
    for i in range(2):
        with open(f"{report}.{i}") as part:
            reads += json.load(part)
    with open(report, "w") as f:
        json.dump(reads, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
