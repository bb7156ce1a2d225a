"""Bytes, not text, end to end (issue 9, point 5).

Linux paths, argv, comm, socket paths, a run's name and cwd are bytes: a recorded program may use
any. A recording full of bytes that are not UTF-8 must record, read back through every command
exactly (JSON: a byte 0xff is the lone surrogate U+DCFF, written ``\\udcff``; ``json.loads`` and
``os.fsencode`` give the bytes back), and show them to people as a visible ``\\xff``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import osrewind, record_json

pytestmark = pytest.mark.kernel

# In $1 (the work dir): a file whose name is not UTF-8, written through fd 7 and read by cat; a
# program whose name is not UTF-8 (so is its comm) run with such an argument; unix sockets (path and
# abstract) bound to such names; the file renamed to another such name. $2 is a python, $3 a suffix
# for the file's name (two runs differ by it).
SCRIPT = r"""
cd "$1" && rm -f sock* moved*
f=$(printf 'bad\377name%s' "$3")
exec 7> "$f"
echo x >&7
cat "$f" > /dev/null
cp /bin/true "$(printf 't\377rue')"
"./$(printf 't\377rue')" "$(printf 'a\377b')"
"$2" -I -c 'import socket; s = socket.socket(socket.AF_UNIX); s.bind(b"sock\xffet"); a = socket.socket(socket.AF_UNIX); a.bind(b"\0abs\xff")'
exec 7>&-
mv "$f" "$(printf 'moved\376')"
"""

B = os.fsencode


def strings(obj) -> list[str]:
    """Every string in a JSON document (keys too)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (k, *strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in strings(v)]
    return []


def bytes_in(obj) -> list[bytes]:
    return [B(s) for s in strings(obj)]


def human(*args: str, db: Path) -> str:
    """A command's output for people: it decodes as UTF-8 (no raw byte reaches the terminal) and
    shows the bytes as escapes."""
    out = osrewind(*args, db=db)
    assert out.returncode == 0, out.stderr
    assert "\udcff" not in out.stdout and "\ufffd" not in out.stdout
    return out.stdout


def as_json(*args: str, db: Path):
    out = osrewind(*args, "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert out.stdout.isascii()  # ensure_ascii: bytes that are not UTF-8 appear as \udcXX escapes
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def runs(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("bytes") / "work"
    work.mkdir()
    db = tmp_path_factory.mktemp("bytes-store") / "db"
    a = record_json(db, "--", "/bin/sh", "-c", SCRIPT, "sh", str(work), sys.executable, "", check_exit=0)
    b = record_json(db, "--", "/bin/sh", "-c", SCRIPT, "sh", str(work), sys.executable, "2", check_exit=0)
    assert sorted(os.listdir(os.fsencode(work))) == [b"moved\xfe", b"sock\xffet", b"t\xffrue"]
    return db, a["run_id"], b["run_id"], work


def test_events_keep_every_kind_of_bytes(runs):
    db, run, _b, _work = runs
    out = osrewind("events", run, "--json", db=db)
    assert out.returncode == 0, out.stderr and out.stdout.isascii()
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    opens = {B(r["path"]) for r in rows if r["kind"] == "open"}
    assert b"bad\xffname" in opens and b"t\xffrue" in opens
    argvs = [[B(a) for a in r["argv"]] for r in rows if r["kind"] == "exec_args"]
    assert [b"./t\xffrue", b"a\xffb"] in argvs and [b"cat", b"bad\xffname"] in argvs
    assert b"t\xffrue" in {B(r["comm"]) for r in rows}  # comm is the exec'd file's name
    assert {b"unix:sock\xffet", b"unix:@abs\xff"} <= {B(r["path"]) for r in rows if r["kind"] == "bind"}
    (mv,) = [r for r in rows if r["kind"] == "rename"]
    assert (B(mv["path"]), B(mv["path2"])) == (b"bad\xffname", b"moved\xfe")
    assert '"path": "bad\\udcffname"' in out.stdout  # the documented JSON form

    text = human("events", run, "--kind", "rename", "--kind", "bind", "--kind", "exec_args", db=db)
    for shown in ("bad\\xffname", "moved\\xfe", "unix:sock\\xffet", "unix:@abs\\xff", "a\\xffb"):
        assert shown in text, shown


@pytest.mark.parametrize(("glob", "paths"), [("bad\udcffname", {b"bad\xffname"}), ("*name", {b"bad\xffname"}),
                                            ("b*", {b"bad\xffname"}), ("*\udcff*", {b"bad\xffname", b"t\xffrue"})])
def test_events_path_glob_crosses_bytes(runs, glob, paths):
    db, run, _b, _work = runs
    out = osrewind("events", run, "--path", glob, "--kind", "open", "--json", db=db)
    assert out.returncode == 0, out.stderr
    assert {B(json.loads(line)["path"]) for line in out.stdout.splitlines()} == paths


def test_state_at_an_instant(runs):
    db, run, _b, work = runs
    events = [json.loads(line) for line in osrewind("events", run, "--kind", "bind", "--json", db=db,
                                                    check=True).stdout.splitlines()]
    at = f"+{events[0]['offset_ns'] / 1e9:.9f}s"
    st = as_json("state", run, "--at", at, db=db)
    fds = {B(f["target"]) for p in st["processes"] for f in p["fds"]}
    assert B(str(work)) + b"/bad\xffname" in fds or b"bad\xffname" in fds  # the shell's fd 7
    exited = [[B(a) for a in p["argv"]] for p in st["exited"]]
    assert [b"./t\xffrue", b"a\xffb"] in exited
    assert B(str(work)) in {B(p["cwd"]) for p in st["processes"]}
    text = human("state", run, "--at", at, db=db)
    assert "bad\\xffname" in text


def test_tree_and_reindex(runs):
    db, run, _b, _work = runs
    tree = as_json("tree", run, db=db)
    assert [b"./t\xffrue", b"a\xffb"] in [[B(a) for a in p["argv"]] for p in _walk(tree["processes"])]
    before = human("tree", run, db=db)
    assert "t\\xffrue a\\xffb" in before or "'./t\\xffrue' 'a\\xffb'" in before
    out = osrewind("reindex", run, db=db)
    assert out.returncode == 0, out.stderr
    assert as_json("tree", run, db=db) == tree
    assert human("tree", run, db=db) == before


def _walk(procs):
    for p in procs:
        yield p
        yield from _walk(p.get("children", []))


def test_lineage_of_a_path_that_is_not_utf8(runs):
    db, run, _b, work = runs
    path = os.fsdecode(B(str(work)) + b"/moved\xfe")
    data = as_json("lineage", run, path, db=db)
    assert B(data["path"]) == B(str(work)) + b"/moved\xfe"
    (moved,) = [e for e in data["events"] if e["op"] == "renamed here"]
    assert B(moved["from"]) == B(str(work)) + b"/bad\xffname"
    assert [B(a) for a in moved["chain"][0]["argv"]] == [b"mv", b"bad\xffname", b"moved\xfe"]
    text = human("lineage", run, path, db=db)
    assert "moved\\xfe" in text and "bad\\xffname" in text


def test_top(runs):
    db, run, _b, _work = runs
    top = as_json("top", run, "--limit", "100", db=db)
    assert any(B(f["path"]).endswith(b"bad\xffname") for f in top["files"])
    assert b"unix:sock\xffet" in {B(e["endpoint"]) for e in top["endpoints"]}
    assert "bad\\xffname" in human("top", run, "--limit", "100", db=db)


def test_diff(runs):
    db, a, b, _work = runs
    data = as_json("diff", a, b, db=db)
    found = [s for s in bytes_in(data) if b"bad\xffname2" in s]
    assert found, data
    assert "bad\\xffname2" in human("diff", a, b, db=db)


def test_sql_with_a_parameter_that_is_not_utf8(runs):
    db, run, _b, _work = runs
    query = ("SELECT path, argv FROM events WHERE run_id = {r:UUID} AND kind = 'exec_args' "
             "AND has(argv, {p:String})")
    rows = as_json("sql", query, "-p", f"r={run}", "-p", "p=a\udcffb", db=db)
    assert [[B(a) for a in r["argv"]] for r in rows] == [[b"./t\xffrue", b"a\xffb"]]
    assert "a\\xffb" in human("sql", query, "-p", f"r={run}", "-p", "p=a\udcffb", db=db)


def test_runs_name_argv_and_cwd_that_are_not_utf8(kernel, tmp_path):
    """What the user types (name, argv) and where (cwd) are bytes too."""
    cwd = os.path.join(os.fsencode(str(tmp_path)), b"cw\xffd")
    os.mkdir(cwd)
    db = tmp_path / "db"
    env = {k: v for k, v in os.environ.items() if k != "OSREWIND_DB"}
    proc = subprocess.run([sys.executable, "-m", "osrewind", "--db", str(db), "record", "--quiet", "--json",
                           "--name", "n\udcff", "--", "/bin/true", "a\udcffb"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert B(summary["name"]) == b"n\xff"
    (run,) = as_json("runs", db=db)
    assert (B(run["name"]), [B(a) for a in run["command"]], B(run["cwd"])) == (b"n\xff", [b"/bin/true", b"a\xffb"], cwd)
    text = human("runs", db=db)
    assert "n\\xff" in text and "a\\xffb" in text
    # the run found by its name as typed; the baseline (osrewind's own child, before the exec) kept too
    st = as_json("state", "n\udcff", "--at", "+0s", db=db)
    assert cwd in {B(p["cwd"]) for p in st["processes"]}
    assert b"a\xffb" in bytes_in(as_json("tree", "n\udcff", db=db))
    args = [[B(a) for a in json.loads(line)["argv"]] for line in
            osrewind("events", "n\udcff", "--kind", "exec_args", "--json", db=db, check=True).stdout.splitlines()]
    assert args == [[b"/bin/true", b"a\xffb"]]
    assert osrewind("reindex", "n\udcff", db=db).returncode == 0
