"""osquery's tables in SQL: how long a question takes on a big run, and across many runs.

Records bench/openclose.c (openat + close of /dev/null in a loop, every syscall recorded: 4 facts an
iteration) into one embedded store: one big run of --events facts, then --runs - 1 smaller ones of
--small-events each. Then times, each --repeat times (min/median, seconds):
- `process_open_files` at an instant of the big run (random instants), as `sql --at` asks it;
- the same through `state --at` (the rewind engine: keyframe + replay), for comparison;
- a whole-history question over every run: which runs had /dev/null open, and for how long in all.

Usage: sudo .venv/bin/python bench/sql_views.py [--events 10000000] [--runs 10] [--small-events 1000000]
Needs root (it records). Compare the figures with each other, not across machines.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUESTION_AT = "SELECT pid, fd, path FROM process_open_files WHERE path LIKE '/dev/%'"
QUESTION_HISTORY = ("SELECT run_id, count() AS lives, sum(least(valid_to_ns, r.end_ns) - valid_from_ns) AS held_ns "
                    "FROM process_open_files AS f JOIN (SELECT run_id, max(end_ns) AS end_ns FROM runs GROUP BY run_id) "
                    "AS r USING (run_id) WHERE path = '/dev/null' GROUP BY run_id ORDER BY run_id")


def record(db: Path, exe: Path, iterations: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json", "--",
                          str(exe), str(iterations)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"record failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=10_000_000, help="facts in the big run")
    ap.add_argument("--runs", type=int, default=10, help="runs in the store, the big one included")
    ap.add_argument("--small-events", type=int, default=1_000_000, help="facts in each other run")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--db", default=None, help="record into this store, or reuse it if it exists already")
    args = ap.parse_args()
    from osrewind.ingest.store import Store
    from osrewind.queries import usersql
    from osrewind.queries.api import Recording
    from osrewind.queries.runs import list_runs
    from osrewind.queries.state import state_at

    with tempfile.TemporaryDirectory(prefix="osrewind-bench-sql-") as tmpname:
        tmp = Path(tmpname)
        db = Path(args.db) if args.db else tmp / "store"
        if not db.exists():
            exe = tmp / "openclose"
            subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "openclose.c")], check=True)
            big = record(db, exe, args.events // 4)
            print(f"big run: {big['events']:,} events, {big['lost']} lost, indexed in {big['indexed_s']:.1f}s")
            for _ in range(args.runs - 1):
                small = record(db, exe, args.small_events // 4)
                print(f"run: {small['events']:,} events, {small['lost']} lost")
        with Store(str(db)) as store:
            runs = list_runs(store)
            big_run = max(runs, key=lambda r: r.events)
            rec = Recording(store, big_run)
            rows = store.query("SELECT count() FROM fd_intervals")[0][0]
            print(f"store: {len(runs)} runs, {sum(r.events for r in runs):,} events, {rows:,} fd interval rows")
            rng = random.Random(1)
            instants = [rng.randint(big_run.start_ns, big_run.end_ns) for _ in range(args.repeat)]
            it = iter(instants * 2)
            lo, med, res = timed(lambda: rec.sql(QUESTION_AT, at=next(it)), args.repeat)
            print(f"process_open_files at an instant of the big run ({big_run.events:,} events): "
                  f"min {lo:.3f}s median {med:.3f}s ({len(res[1])} rows the last time)")
            it = iter(instants * 2)
            lo, med, _ = timed(lambda: state_at(store, big_run, next(it)), args.repeat)
            print(f"state --at the same instants (keyframe + replay): min {lo:.3f}s median {med:.3f}s")
            lo, med, res = timed(lambda: usersql.run(store, QUESTION_HISTORY, {}, views=(None, None)), args.repeat)
            print(f"whole history over {len(runs)} runs ({QUESTION_HISTORY[:60]}...): min {lo:.3f}s median {med:.3f}s, "
                  f"{len(res[1])} runs answered")


if __name__ == "__main__":
    main()
