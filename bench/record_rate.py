"""Recorder throughput: events per second sustained without loss, and bytes per event on disk.

Workloads, compiled with gcc into a temporary directory:
- syscall-heavy: bench/openclose.c (openat + close of /dev/null), paced to target rates;
- CPU-heavy: bench/cpuhog.c (more spinning processes than CPUs: mostly context switches).
Each runs under `osrewind record` in a fresh embedded store, with the recording options of
`--mode`: `fd` (process and fd facts only: --no-syscalls --no-sched) or `full` (plus the
every-syscall stream and the scheduler, the default of `record`). The report gives, per run, the
events recorded and lost and the traced/untraced run-time ratio, the highest rate with no loss,
and the on-disk bytes per event, per column and per event kind (compressed).

Usage: sudo .venv/bin/python bench/record_rate.py [--mode full] [--events 2000000] [--json out.json]
       sudo .venv/bin/python bench/record_rate.py --dd 3000000 [--rounds 5]   (dd, untraced vs recorded)
       sudo .venv/bin/python bench/record_rate.py --dd 2000000 --rev REV  (and recorded by REV, interleaved)
Needs root (it records). Numbers are machine-dependent: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib

HERE = Path(__file__).resolve().parent


def build(tmp: Path) -> Path:
    exe = tmp / "openclose"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "openclose.c")], check=True)
    return exe


def timed(cmd: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t


MODE_FLAGS = {"fd": ["--no-syscalls", "--no-sched"], "full": []}
# facts per openat+close iteration: open + close, plus their two `syscall` facts in full mode
FACTS_PER_ITERATION = {"fd": 2, "full": 4}


def record(db: Path, cmd: list[str], mode: str, tree: Path | None = None) -> dict:
    """`osrewind record` of cmd; with ``tree`` (an export of a git revision), osrewind from there."""
    env = benchlib.tree_env(tree)
    out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                          *MODE_FLAGS[mode], "--", *cmd], capture_output=True, text=True, env=env,
                         cwd=str(tree) if tree else None)
    if out.returncode != 0:
        raise SystemExit(f"record failed: {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def side_by_side(cmd: list[str], procs: int) -> list[str]:
    """``procs`` copies of ``cmd`` at once (one process tree), or ``cmd`` itself."""
    if procs <= 1:
        return cmd
    import shlex

    one = " ".join(shlex.quote(c) for c in cmd)
    return ["/bin/sh", "-c", " & ".join([one] * procs) + " & wait"]


def workload_span(db: Path, run_id: str) -> float:
    """Seconds from the workload's exec to its last event, from the recording itself."""
    from osrewind.ingest.store import Store

    with Store(str(db)) as s:
        rows = s.query("SELECT minIf(ts, kind = 'exec'), max(ts) FROM events WHERE run_id = {r:UUID}",
                       {"r": run_id})
    first, last = rows[0]
    return (last - first) / 1e9


def bytes_by_kind(db: Path) -> dict:
    """Compressed bytes per event of each kind: each kind's rows copied into a table of their own."""
    from osrewind.ingest.store import Store

    out = {}
    with Store(str(db)) as s:
        # kinds with too few rows would measure a part's fixed overhead, not their encoding
        kinds = [k for (k,) in s.query("SELECT toString(kind) FROM events GROUP BY kind HAVING count() >= 1000")]
        for k in kinds:
            s.client.command("DROP TABLE IF EXISTS kind_probe")
            s.client.command("CREATE TABLE kind_probe AS events")
            s.client.command("INSERT INTO kind_probe SELECT * FROM events WHERE toString(kind) = {k:String}",
                             parameters={"k": k})
            s.client.command("OPTIMIZE TABLE kind_probe FINAL")
            rows = s.query("SELECT count() FROM kind_probe")[0][0]
            size = s.query("SELECT sum(data_compressed_bytes) FROM system.parts WHERE table = 'kind_probe' "
                           "AND active AND database = currentDatabase()")[0][0]
            out[k] = {"events": int(rows), "bytes_per_event": round(size / rows, 2) if rows else 0}
        s.client.command("DROP TABLE IF EXISTS kind_probe")
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["events"]))


def disk_usage(db: Path) -> dict:
    from osrewind.ingest.store import Store

    with Store(str(db)) as s:
        s.client.command("OPTIMIZE TABLE events FINAL")
        rows, total = s.query("SELECT sum(rows), sum(data_compressed_bytes) FROM system.parts "
                              "WHERE table = 'events' AND active AND database = currentDatabase()")[0]
        # a compact part (one file for all columns: schema.TABLE_SETTINGS) has no per-column sizes;
        # a wide copy of the same rows has them
        s.client.command("DROP TABLE IF EXISTS wide_probe")
        s.client.command("CREATE TABLE wide_probe AS events")
        s.client.command("ALTER TABLE wide_probe MODIFY SETTING min_bytes_for_wide_part = 0")
        s.client.command("INSERT INTO wide_probe SELECT * FROM events")
        s.client.command("OPTIMIZE TABLE wide_probe FINAL")
        cols = s.query("SELECT name, data_compressed_bytes, data_uncompressed_bytes FROM system.columns "
                       "WHERE table = 'wide_probe' AND database = currentDatabase()")
        s.client.command("DROP TABLE wide_probe")
    return {"rows": int(rows), "compressed_bytes": int(total),
            "bytes_per_event": total / rows if rows else 0.0,
            "per_column": {c[0]: round(c[1] / rows, 2) for c in cols} if rows else {}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=2_000_000,
                    help="events per run (per openat+close: 2 in fd mode, 4 in full mode)")
    ap.add_argument("--rates", default="100000,200000,400000,600000,800000,0",
                    help="target events/s, comma-separated; 0 = unthrottled")
    ap.add_argument("--mode", choices=sorted(MODE_FLAGS), default="full", help="what is recorded (see above)")
    ap.add_argument("--procs", type=int, default=1,
                    help="workload processes run side by side under one recording (each does --events / N)")
    ap.add_argument("--cpu-seconds", type=float, default=3.0, help="length of the CPU-heavy run (0: skip it)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the report here")
    ap.add_argument("--dd", type=int, default=0, metavar="COUNT",
                    help="only the dd comparison: `dd bs=1 count=COUNT` untraced and recorded, interleaved")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of the dd comparison")
    ap.add_argument("--rev", help="with --dd: also record with osrewind as committed at this git revision, "
                    "interleaved with the working tree in every round")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("record_rate: needs root (it records with BPF)")
    if args.dd:
        return dd_comparison(args.dd, args.rounds, args.mode, args.json_out, args.rev)
    if args.rev:
        raise SystemExit("record_rate: --rev compares the dd flood only (with --dd COUNT)")
    per_iter = FACTS_PER_ITERATION[args.mode]
    iterations = args.events // per_iter // args.procs
    results = []
    with tempfile.TemporaryDirectory(prefix="osrewind-bench-") as tmpname:
        tmp = Path(tmpname)
        exe = build(tmp)
        base = timed(side_by_side([str(exe), str(iterations)], args.procs))
        print(f"untraced: {args.procs} x {iterations} openat+close in {base:.3f}s "
              f"({2 * iterations * args.procs / base:,.0f} syscalls/s, "
              f"{per_iter * iterations * args.procs / base:,.0f} facts/s in {args.mode} mode)")
        t = time.monotonic()
        record(tmp / "store-startup", ["true"], args.mode)
        startup = time.monotonic() - t      # what `record` costs around any command: BCC compile, store
        last_db = None
        for rate in [int(r) for r in args.rates.split(",")]:
            db = tmp / f"store-{rate}"
            cmd = [str(exe), str(iterations), "/dev/null", str(rate / per_iter / args.procs)]  # pairs/s each
            summary = record(db, side_by_side(cmd, args.procs), args.mode)
            span = workload_span(db, summary["run_id"])
            untraced = base if rate == 0 else iterations * args.procs * per_iter / rate
            # end to end: from the recording's start (the command's exec is just after it) until its
            # last event was in the store, as the recorder measured both (its start-up before, and the
            # index it builds after, derived data, are reported apart: summary indexed_s)
            stored_s = max(span, summary["duration_s"] + summary["caught_up_s"])
            row = {"target_events_per_s": rate or "max", "events": summary["events"], "lost": summary["lost"],
                   "loss_pct": round(100 * summary["lost"] / max(1, summary["events"] + summary["lost"]), 3),
                   "workload_s": round(span, 3), "events_per_s": round(summary["events"] / span) if span else 0,
                   "stored_s": round(stored_s, 3), "end_to_end_events_per_s": round(summary["events"] / stored_s),
                   "caught_up_s": summary.get("caught_up_s"), "indexed_s": summary.get("indexed_s"),
                   "slowdown_vs_untraced": round(span / untraced, 2) if untraced else None}
            results.append(row)
            last_db = db
            print(f"target {str(rate or 'max'):>8} ev/s: recorded {row['events']:>9,} lost {row['lost']:>8,} "
                  f"({row['loss_pct']}%), {row['events_per_s']:>9,} ev/s while recording "
                  f"({row['end_to_end_events_per_s']:,} ev/s end to end, all stored; then indexed in "
                  f"{row['indexed_s'] or 0:.1f}s), "
                  f"workload x{row['slowdown_vs_untraced']}")
        disk = disk_usage(last_db) if last_db else {}
        if last_db:
            disk["per_kind"] = bytes_by_kind(last_db)
        cpu = None
        if args.cpu_seconds > 0:
            hog = tmp / "cpuhog"
            subprocess.run(["gcc", "-O2", "-o", str(hog), str(HERE / "cpuhog.c")], check=True)
            db = tmp / "store-cpu"
            summary = record(db, [str(hog), "4", str(args.cpu_seconds)], args.mode)
            span = workload_span(db, summary["run_id"])
            cpu = {"events": summary["events"], "lost": summary["lost"], "workload_s": round(span, 3),
                   "events_per_s": round(summary["events"] / span) if span else 0,
                   "per_kind": bytes_by_kind(db)}
            print(f"cpu-heavy (4 spinning processes, {args.cpu_seconds}s): recorded {cpu['events']:,} "
                  f"lost {cpu['lost']:,}, {cpu['events_per_s']:,} ev/s")
    lossless = [r for r in results if r["lost"] == 0]
    best = max((r["events_per_s"] for r in lossless), default=0)
    report = {"mode": args.mode, "untraced_s": round(base, 3), "runs": results, "max_lossless_events_per_s": best,
              "disk": disk, "cpu_heavy": cpu}
    best_e2e = max((r["end_to_end_events_per_s"] for r in lossless), default=0)
    report["max_lossless_end_to_end_events_per_s"] = best_e2e
    print(f"highest sustained rate with no loss: {best:,} events/s while recording; {best_e2e:,} events/s end to end "
          f"(workload start to every event stored, the recorder's start-up of {startup:.1f}s left out)")
    print(f"on disk: {disk.get('bytes_per_event', 0):.2f} bytes/event (compressed, events table)")
    print("per column (bytes/event): " + ", ".join(f"{k} {v}" for k, v in disk.get("per_column", {}).items()))
    print("per kind, syscall-heavy (bytes/event): " +
          ", ".join(f"{k} {v['bytes_per_event']} ({v['events']:,})" for k, v in disk.get("per_kind", {}).items()))
    if cpu:
        print("per kind, cpu-heavy (bytes/event): " +
              ", ".join(f"{k} {v['bytes_per_event']} ({v['events']:,})" for k, v in cpu["per_kind"].items()))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


def dd_comparison(count: int, rounds: int, mode: str, json_out: str | None, rev: str | None = None) -> None:
    """`dd if=/dev/zero of=/dev/null bs=1 count=COUNT`: untraced and under `osrewind record`,
    interleaved (the machine may be shared and noisy), dd's own elapsed time each (from its
    recorded exec to its last fact when recorded, so the recorder's start-up is not in the ratio).
    With ``rev``, each round records it with both trees, in an order alternated per round."""
    import statistics

    dd = ["/usr/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={count}", "status=none"]
    untraced: list[float] = []
    with tempfile.TemporaryDirectory(prefix="osrewind-bench-dd-") as tmpname:
        trees: dict[str, Path | None] = {benchlib.describe_tree(None, ["ingest", "probes", "osrewind"]): None}
        if rev:
            benchlib.export_rev(rev, Path(tmpname) / "rev")
            trees[benchlib.describe_tree(rev, [])] = Path(tmpname) / "rev"
        per: dict[str, dict[str, list]] = {name: {"recorded": [], "lost": [], "events": [], "e2e": [], "caught_up": []}
                                          for name in trees}
        for i in range(rounds):
            untraced.append(timed(dd))
            order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
            for j, (name, tree) in enumerate(order):
                db = Path(tmpname) / f"store-{i}-{j}"
                t = time.monotonic()
                summary = record(db, dd, mode, tree)
                total = time.monotonic() - t
                span = workload_span(db, summary["run_id"])
                shutil.rmtree(db, ignore_errors=True)
                # end to end: the recording's start until its last event was in the store (as the
                # recorder measured both; its start-up before and the index it builds after are apart)
                e2e = summary["events"] / (summary["duration_s"] + summary["caught_up_s"])
                r = per[name]
                r["recorded"].append(span)
                r["lost"].append(summary["lost"])
                r["events"].append(summary["events"])
                r["e2e"].append(e2e)
                r["caught_up"].append(summary["caught_up_s"])
                label = f" [{name}]" if rev else ""
                print(f"round {i + 1}{label}: untraced {untraced[-1]:.3f}s, recorded {span:.3f}s "
                      f"(x{span / untraced[-1]:.2f}), {summary['events']:,} events, {summary['lost']:,} lost, "
                      f"all stored {summary['caught_up_s']:.2f}s after dd ended: {e2e:,.0f} events/s end to end, "
                      f"record took {total:.1f}s in all", flush=True)
    report: dict = {"count": count, "mode": mode, "untraced_s": untraced,
                    "untraced_min": min(untraced), "untraced_median": statistics.median(untraced), "trees": {}}
    for name, r in per.items():
        rec, e2e = r["recorded"], r["e2e"]
        t = {"recorded_s": rec, "lost": r["lost"], "events": r["events"],
             "end_to_end_events_per_s": [round(x) for x in e2e], "caught_up_s": r["caught_up"],
             "end_to_end_min": round(min(e2e)), "end_to_end_median": round(statistics.median(e2e)),
             "end_to_end_max": round(max(e2e)), "caught_up_median": statistics.median(r["caught_up"]),
             "recorded_min": min(rec), "recorded_median": statistics.median(rec),
             "ratio_of_medians": round(statistics.median(rec) / statistics.median(untraced), 2),
             "ratio_of_mins": round(min(rec) / min(untraced), 2)}
        report["trees"][name] = t
        if not rev:
            report.update(t)   # one tree: its figures at the top level too, as before
        print(f"dd bs=1 count={count} ({mode}){' ' + name if rev else ''}: untraced min {report['untraced_min']:.3f}s "
              f"median {report['untraced_median']:.3f}s; recorded min {t['recorded_min']:.3f}s median "
              f"{t['recorded_median']:.3f}s; x{t['ratio_of_mins']} (mins), x{t['ratio_of_medians']} "
              f"(medians); lost {r['lost']}")
        print(f"end to end (recording start to every event stored): min {t['end_to_end_min']:,} median "
              f"{t['end_to_end_median']:,} max {t['end_to_end_max']:,} events/s; all stored a median "
              f"{t['caught_up_median']:.2f}s after dd ended")
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
