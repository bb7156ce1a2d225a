"""TUI responsiveness on a big run: how long one scrub step takes to show its new state, and what a
held scrub key does (the newest instant is shown, not a backlog).

The run is generated as bench/rewind.py makes it (build-like mix, ~200 live processes), indexed,
then the real app runs headless (Textual's Pilot, 120x40). For each sample the scrubber jumps to a
random instant, then one `right` (a 100 ms step) is pressed; the time from the key's action to the
new process tree on screen is recorded (state only: the event log and CPU lanes fill in after it;
Pilot's own key delivery, which waits for the app to go idle, is not part of it).
Then `right` is pressed 30 times without waiting, as a held key would, and the report says how
many instants were actually loaded and how long after the last key the last instant was shown.

Usage: .venv/bin/python bench/tui_scrub.py [--size 10000000] [--samples 30] [--json out.json]
No root needed. Target: p50 step <= 100 ms on a 10M-event run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from rewind import make_run  # noqa: E402

from osrewind.ingest.store import Store  # noqa: E402
from osrewind.queries import keyframes  # noqa: E402
from osrewind.queries.runs import resolve_run  # noqa: E402
from osrewind.tui.app import OsrewindApp  # noqa: E402
from osrewind.tui.run_screen import RunScreen  # noqa: E402


async def wait_shown(pilot, s: RunScreen, at: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if s.shown.at == at:
            return
        await asyncio.sleep(0.002)
    raise RuntimeError("the screen never showed the instant")


async def drive(store, run_id: str, samples: int, seed: int) -> dict:
    app = OsrewindApp(store, run=run_id)
    rng = random.Random(seed)
    steps: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        s = app.screen
        await wait_shown(pilot, s, s.at)
        await pilot.press("3")                        # step size 100 ms
        run = s.rec.run
        for _ in range(samples):
            s._request(rng.randint(run.start_ns, run.end_ns - 200_000_000))
            await wait_shown(pilot, s, s.at)
            await app.workers.wait_for_complete()
            await pilot.press("right")
            await wait_shown(pilot, s, s.at)
            steps.append((s.shown.shown_at - s.shown.requested_at) * 1000)
        # held key: 30 presses back to back
        s._request(run.start_ns + (run.end_ns - run.start_ns) // 3)
        await wait_shown(pilot, s, s.at)
        await app.workers.wait_for_complete()
        loaded = []
        original = s._show_state

        def counting(at, st, asked):
            loaded.append(at)
            original(at, st, asked)

        s._show_state = counting
        for _ in range(30):
            await pilot.press("right")
        t_last = time.perf_counter()
        await wait_shown(pilot, s, s.at)
        tail_ms = (time.perf_counter() - t_last) * 1000
        final_ok = s.shown.at == s.at
    steps.sort()
    return {"step_p50_ms": round(statistics.median(steps), 1),
            "step_p99_ms": round(steps[min(len(steps) - 1, int(round(0.99 * (len(steps) - 1))))], 1),
            "held_presses": 30, "held_instants_loaded": len(loaded), "held_last_shown_after_ms": round(tail_ms, 1),
            "held_shows_latest": final_ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10_000_000)
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="osrewind-tui-") as tmp, Store(str(Path(tmp) / "db")) as store:
        store.ensure_schema()
        t0 = time.monotonic()
        run_id = make_run(store, args.size, seed=args.size)
        keyframes.build(store, resolve_run(store, run_id))
        print(f"{args.size:,} events generated and indexed in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        report = asyncio.run(drive(store, run_id, args.samples, seed=1))
    report["events"] = args.size
    print(f"{args.size:,} events: one 100 ms scrub step shows its new state in p50 {report['step_p50_ms']} ms, "
          f"p99 {report['step_p99_ms']} ms; 30 held presses loaded {report['held_instants_loaded']} instants, "
          f"the last shown {report['held_last_shown_after_ms']} ms after the last key "
          f"({'latest instant' if report['held_shows_latest'] else 'NOT the latest instant'})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
