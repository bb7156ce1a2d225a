"""A recording started right after another: how long `osrewind record -- true` takes then, and after
the machine was left alone for a while (the previous recording's hooks all released).

When `record` returns, a helper process releases its tracepoint hooks in the background; each
release holds the kernel's event_mutex through RCU grace periods, for 2-4 s in all. A recording
that starts meanwhile and reads tracefs format files (BCC's compile does, for every tracepoint
probe, unless the structs come from osrewind's cache: probes/tpstructs.py) waits for it.

Each round: one `record -- true`, then at once a second (timed: "back to back"), then after
--gap seconds a third (timed: "idle"). With `--rev REV` the same with osrewind as committed at REV,
interleaved. Runs from a temporary directory so that PYTHONPATH selects the tree.

Usage: sudo .venv/bin/python bench/back_to_back.py [--rounds 3] [--gap 7] [--rev REV]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib


def timed_record(db: Path, env: dict, cwd: str) -> float:
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--", "true"],
                          capture_output=True, text=True, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise SystemExit(f"back_to_back: record failed: {proc.stderr.strip()[-300:]}")
    return time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gap", type=float, default=7.0, help="seconds left alone before the idle run")
    ap.add_argument("--rev", help="also time osrewind as committed at this git revision, interleaved")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("back_to_back: needs root (it records with BPF)")
    with tempfile.TemporaryDirectory(prefix="osrewind-bench-b2b-") as tmpname:
        tmp = Path(tmpname)
        trees: dict[str, Path | None] = {benchlib.describe_tree(None, ["probes", "ingest"]): None}
        if args.rev:
            benchlib.export_rev(args.rev, tmp / "rev")
            trees[benchlib.describe_tree(args.rev, [])] = tmp / "rev"
        results: dict[str, dict[str, list[float]]] = {name: {"back to back": [], "idle": []} for name in trees}
        for i in range(args.rounds):
            for name, tree in trees.items():
                benchlib.progress(f"round {i + 1}/{args.rounds}: {name}")
                env = benchlib.tree_env(tree)
                db = tmp / f"db-{i}-{abs(hash(name))}"
                timed_record(db, env, tmpname)
                results[name]["back to back"].append(timed_record(db, env, tmpname))
                time.sleep(args.gap)
                results[name]["idle"].append(timed_record(db, env, tmpname))
                time.sleep(args.gap)
        benchlib.progress_end()
    for name, r in results.items():
        b2b, idle = benchlib.summarize(r["back to back"]), benchlib.summarize(r["idle"])
        print(f"{name}: `record -- true` back to back {benchlib.pair(b2b, '.2f')} s, after {args.gap:g} s "
              f"idle {benchlib.pair(idle, '.2f')} s (min/median)")


if __name__ == "__main__":
    main()
