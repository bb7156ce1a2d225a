"""Which compression codecs for the events table: measured on a real recording.

Records a file-heavy workload (many processes, many distinct paths: `find | xargs cat` over
/usr/share), then copies its events into tables that differ only in codecs and compares the
compressed bytes per event of each column group, once merged (the parts that stay), and what an
insert of them costs (ns a row, min/median of ROUNDS inserts: the recorder's inserts are INSERT ...
SELECT as here). ingest/schema.py says what was chosen and why: its codecs end in Default, which
the embedded engine makes LZ4 where an insert writes a part and ZSTD(1) where a merge does
(ingest/chdb.xml); "ZSTD(1) by name" is the same table as a server is given it (and as stores were
made before), ZSTD(1) for inserts too.

Usage: sudo .venv/bin/python bench/codecs.py [--count N]   (N: dd's count for a second workload, a
       syscall flood, whose inserts are the recorder's hot path; default 500000, 0 to skip it)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROUNDS = 3
WORKLOAD = "find /usr/share -type f 2>/dev/null | head -20000 | xargs -n 40 cat > /dev/null; true"
_CODEC = re.compile(r"CODEC\(((?:[^()]|\([^()]*\))*)\)")


def _all(codec: str):
    return lambda ddl: _CODEC.sub(f"CODEC({codec})", ddl)


def _variants() -> dict:
    """Each variant: the events table's DDL, changed (a function of the schema's own DDL)."""
    from osrewind.ingest.schema import on_server

    return {
        "as in ingest/schema.py (LZ4 inserts, ZSTD(1) merges)": lambda ddl: ddl,
        "the same, ZSTD(1) by name (a server; stores before)": on_server,
        "T64 on every number (the layout before), ZSTD(1) by name": lambda ddl: on_server(re.sub(
            r"(\n    (?:tgid|tid|ret|a1|a3|a4|a5|nr) \w+) CODEC\([^\n]*\),", r"\1 CODEC(T64, Default),", ddl)),
        "DoubleDelta on ts, else ZSTD(1) by name": lambda ddl: on_server(ddl).replace(
            "ts Int64 CODEC(Delta, ZSTD(1))", "ts Int64 CODEC(DoubleDelta, ZSTD(1))"),
        "ZSTD(3) by name": lambda ddl: on_server(ddl).replace("ZSTD(1)", "ZSTD(3)"),
        "plain ZSTD(1) everywhere": _all("ZSTD(1)"),
        "plain LZ4 everywhere": _all("LZ4"),
    }


def record(db: Path, command: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                          "--", *command], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"codecs: recording failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def compare(db: Path) -> dict:
    """Every variant on the events of the store at DB: insert cost and merged size."""
    from osrewind.ingest.schema import TABLES
    from osrewind.ingest.store import Store

    report = {}
    with Store(str(db)) as s:
        cols = [c for (c,) in s.query("SELECT name FROM system.columns WHERE table = 'events' "
                                      "AND database = currentDatabase() ORDER BY position")]
        listed = ", ".join(cols)
        # the rows to insert, held in memory: what is timed is the insert, as the recorder's
        s.client.command("CREATE TABLE codec_src ENGINE = Memory AS SELECT * FROM events")
        n = s.query("SELECT count() FROM codec_src")[0][0]
        for i, (label, change) in enumerate(_variants().items()):
            table = f"codec_v{i}"
            s.client.command(change(TABLES["events"]).replace("IF NOT EXISTS events", table))
            times = []
            for _ in range(ROUNDS):
                t0 = time.perf_counter()
                s.client.command(f"INSERT INTO {table} ({listed}) SELECT {listed} FROM codec_src")
                times.append(time.perf_counter() - t0)
            s.client.command(f"OPTIMIZE TABLE {table} FINAL")
            rows = s.query(f"SELECT count() FROM {table}")[0][0]
            sizes = dict(s.query("SELECT name, data_compressed_bytes FROM system.columns WHERE table = "
                                 "{t:String} AND database = currentDatabase()", {"t": table}))
            if not any(sizes.values()):   # a compact part: one file for all columns, sizes by part
                sizes = {"all": s.query("SELECT sum(data_compressed_bytes) FROM system.parts WHERE active "
                                        "AND table = {t:String} AND database = currentDatabase()",
                                        {"t": table})[0][0]}
            total = sum(sizes.values())
            ns = sorted(t * 1e9 / n for t in times)
            report[label] = {"bytes_per_event": round(total / rows, 2), "insert_ns_per_row_min": round(ns[0]),
                             "insert_ns_per_row_median": round(statistics.median(ns))}
            print(f"  {label:54} {total / rows:6.2f} B/event merged   insert {ns[0]:5.0f}/"
                  f"{statistics.median(ns):5.0f} ns a row (min/median)")
            s.client.command(f"DROP TABLE {table}")
        s.client.command("DROP TABLE codec_src")
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500_000, help="dd's count for the syscall flood (0: skip it)")
    args = ap.parse_args()
    workloads = {"file-heavy (find | xargs cat over /usr/share)": ["/bin/sh", "-c", WORKLOAD]}
    if args.count:
        workloads[f"syscall flood (dd bs=1 count={args.count})"] = [
            "dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={args.count}", "status=none"]
    report = {}
    with tempfile.TemporaryDirectory(prefix="osrewind-codecs-") as tmp:
        for i, (name, command) in enumerate(workloads.items()):
            db = Path(tmp) / f"db{i}"
            summary = record(db, command)
            print(f"{name}: {summary['events']:,} events ({summary['lost']} lost)")
            report[name] = compare(db)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
