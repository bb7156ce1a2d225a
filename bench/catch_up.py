"""How fast the writer catches up after a flood: a spool of a `dd bs=1` flood (or of two openat+close
loops: `--workload openclose`), inserted into a fresh embedded store by the recorder's own writer
(its decode thread and inserters), as it does when the flood ends; wall time and CPU time,
min/median over rounds.

The spool is made once: `osrewind record -- FLOOD` whose writer is held (this bench patches it to
insert nothing: the recorder's own writer stores a flood while it lasts) and whose recorder is
killed (SIGKILL) as the flood ends, so its spool keeps all of it. Each round copies it (the page
cache keeps it, as it is when the recorder catches up) and replays it in a child process; with
`--rev REV` a child runs osrewind as committed at REV too, interleaved with the working tree's.

Usage: sudo .venv/bin/python bench/catch_up.py [--workload dd|openclose] [--count 2000000] [--rounds 6]
       [--rev REV] [--json out.json]
Needs root (it records). Numbers are machine-dependent: compare the two trees, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import benchlib

# `osrewind` with the writer thread held: the drain spools everything, nothing is inserted
HELD_WRITER = """
import sys, threading
from osrewind.ingest import writer
writer.EventWriter._run = lambda self: threading.Event().wait()
from osrewind.cli import main
sys.argv[0] = "osrewind"
main()
"""


def workload(name: str, count: int, where: Path) -> str:
    """The flood, as a shell command: dd (syscall records only) or two openat+close loops side by
    side (state facts with paths, and their syscall records; 2 x count/2 pairs)."""
    if name == "dd":
        return f"dd if=/dev/zero of=/dev/null bs=1 count={count} status=none"
    exe = where / "openclose"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(Path(__file__).with_name("openclose.c"))], check=True)
    return f"{exe} {count // 2} & {exe} {count // 2} & wait"


def make_spool(flood: str, where: Path) -> Path:
    """A recording of the flood, its writer held, whose recorder died as the flood ended: its spool,
    moved to WHERE/spool."""
    db = where / "store"
    subprocess.run([sys.executable, "-c", HELD_WRITER, "--db", str(db), "record", "--quiet", "--",
                    "sh", "-c", f"{flood}; kill -9 $PPID"], capture_output=True, cwd=benchlib.REPO)
    runs = [p for p in (db / "osrewind-spool").iterdir() if p.is_dir()]
    if len(runs) != 1:
        raise SystemExit(f"catch_up: expected one spool left by the killed recorder, found {len(runs)}")
    dest = where / "spool"
    shutil.move(str(runs[0]), dest)
    shutil.rmtree(db)
    return dest


def replay(spool_dir: Path) -> dict:
    """(In a child.) The spool's frames queued at once to a threaded writer over a fresh store, as the
    recorder's queue holds them when a flood ends; until the writer has inserted them all."""
    from osrewind.ingest import spool
    from osrewind.ingest.store import Store
    from osrewind.ingest.writer import EventWriter

    with tempfile.TemporaryDirectory(prefix="osrewind-catch-up-") as tmp:
        copy = Path(tmp) / spool_dir.name
        shutil.copytree(spool_dir, copy)
        (copy / spool.CHECKPOINT_NAME).unlink(missing_ok=True)
        meta = json.loads((copy / spool.META_NAME).read_text())
        frames = list(spool.frames(copy))
        with Store(str(Path(tmp) / "store")) as store:
            store.ensure_schema()
            # reopened, the spool counts its segments as not in the store yet (the backlog), as the
            # recorder's did when the flood ended: the writer catches up as it did (merges wait)
            writer = EventWriter(store, uuid.UUID(meta["run_id"]), spool.Spool.reopen(copy))
            c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            for f in frames:
                writer._queue.put(f)   # what put_rings queued during the flood
            writer.close()
            wall = time.monotonic() - t0
            c1 = resource.getrusage(resource.RUSAGE_SELF)
            rows = store.query("SELECT count() FROM events")[0][0]
    return {"events": int(rows), "wall_s": wall, "cpu_s": (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)}


def child(spool_dir: Path, tree: Path | None) -> dict:
    env = benchlib.tree_env(tree)
    out = subprocess.run([sys.executable, __file__, "--replay", str(spool_dir)], capture_output=True, text=True,
                         env=env)
    if out.returncode != 0:
        raise SystemExit(f"catch_up: replay failed: {out.stderr.strip()[-500:]}")
    return benchlib.last_json_line(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=("dd", "openclose"), default="dd",
                    help="dd (syscall records) or openclose (two openat+close loops: state facts too)")
    ap.add_argument("--count", type=int, default=2_000_000,
                    help="dd's count (2 syscalls a byte), or openat+close pairs in all")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--rev", help="also replay with osrewind as committed at this git revision, interleaved")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--replay", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.replay:
        print(json.dumps(replay(Path(args.replay))))
        return
    if os.geteuid() != 0:
        raise SystemExit("catch_up: needs root (it records with BPF)")
    with tempfile.TemporaryDirectory(prefix="osrewind-bench-catch-up-") as tmpname:
        tmp = Path(tmpname)
        flood = workload(args.workload, args.count, tmp)
        benchlib.progress(f"recording {flood} with its recorder killed as it ends")
        spool_dir = make_spool(flood, tmp)
        trees: dict[str, Path | None] = {benchlib.describe_tree(None, ["ingest", "probes"]): None}
        if args.rev:
            benchlib.export_rev(args.rev, tmp / "rev")
            trees[benchlib.describe_tree(args.rev, [])] = tmp / "rev"
        results: dict[str, list[dict]] = {name: [] for name in trees}
        for i in range(args.rounds):
            for name, tree in trees.items():
                benchlib.progress(f"round {i + 1}/{args.rounds}: {name}")
                results[name].append(child(spool_dir, tree))
        benchlib.progress_end()
    report = {}
    for name, rs in results.items():
        wall = benchlib.summarize([r["wall_s"] for r in rs])
        cpu = benchlib.summarize([r["cpu_s"] for r in rs])
        events = rs[0]["events"] if rs else 0
        report[name] = {"events": events, "wall_s": wall, "cpu_s": cpu, "rounds": rs}
        print(f"{name}: {events:,} events caught up in {benchlib.pair(wall, '.3f')} s (min/median), "
              f"{benchlib.pair(cpu, '.2f')} s of CPU, "
              f"{events / wall['median'] / 1e6 if wall['median'] else 0:.2f}M events/s at the median")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
