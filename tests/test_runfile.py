"""Run files (.osr): export -> import is exact, every table and row; reading commands take a file in
place of a run; truncated, corrupt and newer-format files are refused with one line and write nothing."""

from __future__ import annotations

import json
import zipfile

from synthetic import random_run

from conftest import osrewind
from osrewind.ingest import marks, runfile
from osrewind.ingest.store import Store

TABLES = ("runs", "events", "snapshot_procs", "snapshot_fds", "tests")


def _rows(db, run_id: str, table: str) -> list[tuple]:
    src = "runs FINAL" if table == "runs" else table
    with Store(str(db), mode="read") as s:
        cols = [c for (c,) in s.query("SELECT name FROM system.columns WHERE database = currentDatabase() "
                                      "AND table = {t:String} AND name NOT IN ('updated_ns') ORDER BY position",
                                      {"t": table})]
        return sorted(s.query(f"SELECT {', '.join(cols)} FROM {src} WHERE run_id = {{r:UUID}}", {"r": run_id}),
                      key=repr)


def test_export_then_import_is_exact_and_a_file_reads_in_place(tmp_path):
    src, dst, out = tmp_path / "src", tmp_path / "dst", tmp_path / "run.osr"
    rid = random_run(str(src), seed=7, n=2000)
    osrewind("reindex", rid, db=src, check=True)
    with Store(str(src), purpose="test") as store:   # tests, as pytest --osrewind files them
        store.ensure_schema()
        found = marks.tests([{"t": 10_050_000_000 + i, "pid": 4242, "nodeid": f"t.py::test_{i // 2}", "when": "call",
                              "ev": "end" if i % 2 else "start", "outcome": "failed"} for i in range(6)])
        store.insert_arrow("tests", marks.table(rid, found, lambda pid: 0))
    got = osrewind("export", rid, "-o", str(out), "--json", db=src, check=True)
    manifest = json.loads(got.stdout)
    assert manifest["format"] == runfile.FORMAT and manifest["run_id"] == rid and manifest["window"] is None
    assert manifest["tables"]["events"]["rows"] == len(_rows(src, rid, "events")) > 1000
    osrewind("import", str(out), db=dst, check=True)
    for table in TABLES:
        assert _rows(dst, rid, table) == _rows(src, rid, table), table
    # the same answers from the store and from the file in place
    for args in (["state", "--at", "+0.1s", "--json"], ["tree", "--json"], ["events", "--limit", "50", "--json"]):
        a = osrewind(args[0], rid, *args[1:], db=src, check=True).stdout
        b = osrewind(args[0], str(out), *args[1:], env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, check=True).stdout
        assert a == b, args
    # importing it again is refused; --as brings it in as a new run
    again = osrewind("import", str(out), db=dst)
    assert again.returncode == 2 and "already in this store" in again.stderr and again.stderr.count("\n") == 1
    copy = json.loads(osrewind("import", str(out), "--as", "copy", "--json", db=dst, check=True).stdout)
    assert copy["name"] == "copy" and copy["run_id"] != rid
    assert len(_rows(dst, copy["run_id"], "events")) == len(_rows(src, rid, "events"))


def test_bad_run_files_are_refused_in_one_line_and_write_nothing(tmp_path):
    src, dst, good = tmp_path / "src", tmp_path / "dst", tmp_path / "run.osr"
    rid = random_run(str(src), seed=3, n=500)
    osrewind("export", rid, "-o", str(good), db=src, check=True)
    blob = good.read_bytes()
    truncated = tmp_path / "truncated.osr"
    truncated.write_bytes(blob[: len(blob) // 2])
    corrupt = tmp_path / "corrupt.osr"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(corrupt, "w") as w:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == "events.parquet":
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            w.writestr(item, data)
    newer = tmp_path / "newer.osr"
    with zipfile.ZipFile(good) as z, zipfile.ZipFile(newer, "w") as w:
        for item in z.infolist():
            data = z.read(item)
            if item.filename == "manifest.json":
                data = json.dumps({**json.loads(data), "format": runfile.FORMAT + 1, "osrewind": "99.0"}).encode()
            w.writestr(item, data)
    text = tmp_path / "notes.osr"
    text.write_text("hello\n")
    for bad, says in ((truncated, "truncated or corrupt"), (corrupt, "corrupt"), (newer, "newer osrewind"),
                      (text, "not an osrewind run file")):
        for args in (["import", str(bad)], ["state", str(bad)]):
            got = osrewind(*args, db=dst, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})
            assert got.returncode == 2 and says in got.stderr and got.stderr.count("\n") == 1, (bad, got.stderr)
            assert "Traceback" not in got.stderr
    assert not dst.exists() or not _rows(dst, rid, "events")
