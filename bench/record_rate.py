"""Recorder throughput: events per second sustained without loss, and bytes per event on disk.

Workload: bench/openclose.c (openat + close of /dev/null, two recorded events per iteration),
compiled with gcc into a temporary directory. For each target rate the workload runs under
`osrewind record` in a fresh embedded store; the report gives, per rate, the events recorded and
lost and the traced/untraced run-time ratio, then the highest rate with no loss, and the on-disk
bytes per event of the events table (compressed, from system.columns).

Usage: sudo .venv/bin/python bench/record_rate.py [--events 2000000] [--json out.json]
Needs root (it records). Numbers are machine-dependent: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(tmp: Path) -> Path:
    exe = tmp / "openclose"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "openclose.c")], check=True)
    return exe


def timed(cmd: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t


def record(db: Path, cmd: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                          "--", *cmd], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"record failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def workload_span(db: Path, run_id: str) -> float:
    """Seconds from the workload's exec to its last event, from the recording itself."""
    from osrewind.ingest.store import Store

    with Store(str(db)) as s:
        rows = s.query("SELECT minIf(ts, kind = 'exec'), max(ts) FROM events WHERE run_id = {r:UUID}",
                       {"r": run_id})
    first, last = rows[0]
    return (last - first) / 1e9


def disk_usage(db: Path) -> dict:
    from osrewind.ingest.store import Store

    with Store(str(db)) as s:
        s.client.command("OPTIMIZE TABLE events FINAL")
        rows = s.query("SELECT sum(rows) FROM system.parts WHERE table = 'events' AND active "
                       "AND database = currentDatabase()")[0][0]
        cols = s.query("SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns "
                       "WHERE table = 'events' AND database = currentDatabase()")
    total = sum(c[1] for c in cols)
    return {"rows": int(rows), "compressed_bytes": int(total),
            "bytes_per_event": total / rows if rows else 0.0,
            "per_column": {c[0]: round(c[1] / rows, 2) for c in cols} if rows else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000, help="events per run (2 per iteration)")
    ap.add_argument("--rates", default="100000,200000,400000,600000,800000,0",
                    help="target events/s, comma-separated; 0 = unthrottled")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the report here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("record_rate: needs root (it records with BPF)")
    iterations = args.events // 2
    results = []
    with tempfile.TemporaryDirectory(prefix="osrewind-bench-") as tmpname:
        tmp = Path(tmpname)
        exe = build(tmp)
        base = timed([str(exe), str(iterations)])
        print(f"untraced: {iterations} openat+close in {base:.3f}s ({2 * iterations / base:,.0f} syscalls/s)")
        last_db = None
        for rate in [int(r) for r in args.rates.split(",")]:
            db = tmp / f"store-{rate}"
            cmd = [str(exe), str(iterations), "/dev/null", str(rate / 2)]
            summary = record(db, cmd)
            span = workload_span(db, summary["run_id"])
            untraced = base if rate == 0 else iterations * 2 / rate
            row = {"target_events_per_s": rate or "max", "events": summary["events"], "lost": summary["lost"],
                   "loss_pct": round(100 * summary["lost"] / max(1, summary["events"] + summary["lost"]), 3),
                   "workload_s": round(span, 3), "events_per_s": round(summary["events"] / span) if span else 0,
                   "slowdown_vs_untraced": round(span / untraced, 2) if untraced else None}
            results.append(row)
            last_db = db
            print(f"target {str(rate or 'max'):>8} ev/s: recorded {row['events']:>9,} lost {row['lost']:>8,} "
                  f"({row['loss_pct']}%), {row['events_per_s']:>9,} ev/s, workload x{row['slowdown_vs_untraced']}")
        disk = disk_usage(last_db) if last_db else {}
    lossless = [r for r in results if r["lost"] == 0]
    best = max((r["events_per_s"] for r in lossless), default=0)
    report = {"untraced_s": round(base, 3), "runs": results, "max_lossless_events_per_s": best, "disk": disk}
    print(f"highest sustained rate with no loss: {best:,} events/s")
    print(f"on disk: {disk.get('bytes_per_event', 0):.2f} bytes/event (compressed, events table)")
    print("per column (bytes/event): " + ", ".join(f"{k} {v}" for k, v in disk.get("per_column", {}).items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
