"""Concurrent renames: how often the rewound cwd agrees with /proc while several processes rename
one directory back and forth at once (tests/workloads/renamers.py) and others hold it as their cwd.

Two renames of one directory racing on two CPUs can return in the other order than they took effect
(a waker preempted by the renamer it woke); the rewind engine applies them in the order they took
effect (queries/engine/files.py). This bench measures that: each holder reads /proc/self/cwd in a
loop with the instants before and after; a read with no rename syscall in flight around it must
equal the rewound cwd at its instant.

Usage: sudo .venv/bin/python bench/concurrent_renames.py [--seconds 2] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE.parent / "tests" / "workloads" / "renamers.py"
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(WORKLOAD.parent))

import renamers  # noqa: E402 - the workload, and how its reads are compared


def one_round(seconds: float) -> dict:
    from osrewind.ingest.store import Store
    from osrewind.queries.runs import resolve_run

    with tempfile.TemporaryDirectory() as tmp:
        db, work, report = Path(tmp) / "db", Path(tmp) / "w", Path(tmp) / "report.json"
        out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json", "--",
                              sys.executable, str(WORKLOAD), str(work), str(report), str(seconds)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"concurrent_renames: the recording failed ({out.returncode}): {out.stderr.strip()}")
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        with Store(str(db)) as store:
            got = renamers.compare(store, resolve_run(store, summary["run_id"]), json.loads(report.read_text()))
        return {**got, "lost": summary["lost"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rounds = [one_round(args.seconds) for _ in range(args.rounds)]
    for r in rounds:
        share = r["agree"] / r["compared"] if r["compared"] else 0
        print(f"{r['renames']:>8} renames ({r['overlapped']} overlapped another), {r['clear_reads']:>4} reads clear of them: {r['agree']:>4} agree "
              f"({share:.0%}), lost {r['lost']}")
        for w in r["disagree"]:
            print(f"    pid {w['pid']} at {w['t0']}..{w['t1']}: /proc said {w['cwd']}, rewound {w['rewound']}")
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))


if __name__ == "__main__":
    main()
