"""Diff time for two generated runs of 1M events each (the issue's target: 2 s on the embedded store).

The two runs come from bench/rewind.py's generator with different seeds, so their process trees
align only in part and their file operations differ: a diff with plenty to report. Both are indexed
first, as `record` does; the time measured is `osrewind.queries.diff.diff` alone, store open.

Usage: .venv/bin/python bench/diff_runs.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rewind import make_run  # noqa: E402

from osrewind.ingest.store import Store  # noqa: E402
from osrewind.queries import keyframes  # noqa: E402
from osrewind.queries.diff import diff  # noqa: E402
from osrewind.queries.runs import resolve_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="osrewind-diff-") as tmp, Store(str(Path(tmp) / "db")) as store:
        store.ensure_schema()
        runs = []
        for seed in (1, 2):
            run = resolve_run(store, make_run(store, args.events, seed))
            keyframes.build(store, run)
            runs.append(run)
        diff(store, runs[0], runs[0])  # warm
        t = time.perf_counter()
        result = diff(store, runs[0], runs[1])
        took = time.perf_counter() - t
    print(f"diff of two {args.events:,}-event runs: {took:.2f} s, {len(result['differences'])} differences, "
          f"{result['aligned']} processes aligned, {result['only_a']} only in a, {result['only_b']} only in b")


if __name__ == "__main__":
    main()
