"""Which compression codecs for the events table: measured on a real recording.

Records a file-heavy workload (many processes, many distinct paths: `find | xargs cat` over
/usr/share), then copies its events into tables that differ only in codecs and compares the
compressed bytes per event of each column group. The schema in ingest/schema.py uses the winner.

Usage: sudo .venv/bin/python bench/codecs.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

VARIANTS = {
    "as in ingest/schema.py": None,  # the table as the store creates it
    "DoubleDelta ts, T64 ints, ZSTD1": {"ts": "DoubleDelta, ZSTD(1)", "seq": "Delta, ZSTD(1)",
                                        "int": "T64, ZSTD(1)", "str": "ZSTD(1)"},
    "plain LZ4 everywhere": {"ts": "LZ4", "seq": "LZ4", "int": "LZ4", "str": "LZ4"},
    "plain ZSTD1 everywhere": {"ts": "ZSTD(1)", "seq": "ZSTD(1)", "int": "ZSTD(1)", "str": "ZSTD(1)"},
    "Delta ts/seq, T64 ints, ZSTD1": {"ts": "Delta, ZSTD(1)", "seq": "Delta, ZSTD(1)", "int": "T64, ZSTD(1)",
                                      "str": "ZSTD(1)"},
    "Delta ts + ZSTD3": {"ts": "Delta, ZSTD(3)", "seq": "Delta, ZSTD(3)", "int": "T64, ZSTD(3)",
                         "str": "ZSTD(3)"},
}
WORKLOAD = "find /usr/share -type f 2>/dev/null | head -20000 | xargs -n 40 cat > /dev/null; true"


def main() -> None:
    from osrewind.ingest.schema import KIND_TYPE
    from osrewind.ingest.store import Store

    with tempfile.TemporaryDirectory(prefix="osrewind-codecs-") as tmp:
        db = Path(tmp) / "db"
        out = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                              "--", "/bin/sh", "-c", WORKLOAD], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(out.stderr.strip())
        summary = json.loads(out.stdout)
        print(f"recorded {summary['events']:,} events ({summary['lost']} lost)")
        with Store(str(db)) as s:
            report = {}
            for label, v in VARIANTS.items():
                table = "events"
                if v is not None:
                    table = "events_" + str(abs(hash(label)))
                    ints = ", ".join(f"{c} {t} CODEC({v['int']})" for c, t in
                                     [("tgid", "UInt32"), ("tid", "UInt32"), ("ret", "Int64"), ("a0", "Int64"),
                                      ("a1", "Int64"), ("a2", "Int64"), ("a3", "Int64")])
                    s.client.command(
                        f"CREATE TABLE {table} (run_id UUID, ts Int64 CODEC({v['ts']}), seq UInt64 CODEC({v['seq']}),"
                        f" kind {KIND_TYPE}, {ints}, comm LowCardinality(String), path String CODEC({v['str']}),"
                        f" path2 String CODEC({v['str']}), argv Array(String) CODEC({v['str']}))"
                        " ENGINE = MergeTree ORDER BY (run_id, ts, seq)")
                    s.client.command(f"INSERT INTO {table} SELECT * FROM events")
                s.client.command(f"OPTIMIZE TABLE {table} FINAL")
                rows = s.query(f"SELECT count() FROM {table}")[0][0]
                cols = dict(s.query("SELECT name, data_compressed_bytes FROM system.columns WHERE table = "
                                    "{t:String} AND database = currentDatabase()", {"t": table}))
                groups = {"ts+seq": cols["ts"] + cols["seq"],
                          "ints": sum(cols[c] for c in ("tgid", "tid", "ret", "a0", "a1", "a2", "a3")),
                          "strings": cols["path"] + cols["path2"] + cols["argv"] + cols["comm"]}
                total = sum(cols.values())
                report[label] = {"bytes_per_event": round(total / rows, 2),
                                 **{k: round(b / rows, 2) for k, b in groups.items()}}
                print(f"{label:42} {total / rows:6.2f} B/event   " +
                      "  ".join(f"{k} {b / rows:.2f}" for k, b in groups.items()))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
