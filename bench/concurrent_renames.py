"""Concurrent renames: how often the rewound cwd agrees with /proc while several processes rename
one directory back and forth at once (bench/renamers_workload.py) and others hold it as their cwd.

Renames are applied in the order their syscalls returned; two renames of one directory racing on
two CPUs can return in the other order than they took effect (a waker preempted by the renamer it
woke), and the rewound state then goes wrong from there on. This bench measures that: each holder
reads /proc/self/cwd in a loop with the instants before and after; a read with no rename syscall in
flight around it must equal the rewound cwd at its instant.

Usage: sudo .venv/bin/python bench/concurrent_renames.py [--seconds 2] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import bisect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def one_round(seconds: float) -> dict:
    from osrewind.ingest.store import Store
    from osrewind.probes import syscall_table
    from osrewind.queries.runs import resolve_run
    from osrewind.queries.state import state_at

    with tempfile.TemporaryDirectory() as tmp:
        db, work, report = Path(tmp) / "db", Path(tmp) / "w", Path(tmp) / "report.json"
        out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json", "--",
                              sys.executable, str(HERE / "renamers_workload.py"), str(work), str(report), str(seconds)],
                             capture_output=True, text=True, check=True)
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        reads = json.loads(report.read_text())
        nrs = [n for n in (syscall_table.number(s) for s in ("rename", "renameat", "renameat2")) if n is not None]
        with Store(str(db)) as store:
            run = resolve_run(store, summary["run_id"])
            rows = store.query("SELECT ts, ts + dur FROM events WHERE run_id = {r:UUID} AND kind = 'syscall' "
                               "AND has({nrs:Array(UInt16)}, nr) ORDER BY ts", {"r": run.run_id, "nrs": nrs})
            starts = [a for a, _b in rows]
            agree = clear = 0
            for r in reads:
                i = bisect.bisect_right(starts, r["t1"])
                if any(b >= r["t0"] for _a, b in rows[max(0, i - 64):i]):
                    continue  # a rename in flight around the read: either answer could be right
                clear += 1
                procs = {p.pid: p for p in state_at(store, run, r["t1"]).processes}
                agree += procs.get(r["pid"]) is not None and procs[r["pid"]].cwd == r["cwd"]
        return {"renames": len(rows), "reads": len(reads), "clear_reads": clear, "agree": agree,
                "lost": summary["lost"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rounds = [one_round(args.seconds) for _ in range(args.rounds)]
    for r in rounds:
        share = r["agree"] / r["clear_reads"] if r["clear_reads"] else 0
        print(f"{r['renames']:>8} renames, {r['clear_reads']:>4} reads clear of them: {r['agree']:>4} agree "
              f"({share:.0%}), lost {r['lost']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
