"""Hardening of the store and the CLI's error path (issue: nothing a user types can break osrewind,
its store or its host). Generated runs in real chDB stores; the CLI in child processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid

import pytest
from synthetic import write_run

from conftest import AS_NOBODY, osrewind


def one_line_error(proc: subprocess.CompletedProcess, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("osrewind: error: ") and "Traceback" not in proc.stderr, lines[0]
    return lines[0]


@pytest.fixture
def synth(tmp_path):
    db = tmp_path / "db"
    return db, write_run(str(db), name="synth")


def tree_listing(path) -> list[tuple[str, int, int]]:
    """The store's data and metadata files (not the lock, which says who holds the store)."""
    out = []
    for root, dirs, files in os.walk(path):
        if root == str(path):
            dirs[:] = [d for d in dirs if d in ("metadata", "store", "data")]
            files = []
        for name in sorted(dirs + files):
            p = os.path.join(root, name)
            st = os.lstat(p)
            out.append((os.path.relpath(p, path), st.st_size, st.st_mtime_ns))
    return sorted(out)


# ------------------------------------------------------------------ 1. sql only reads

WRITES = [
    "SELECT 1 INTO OUTFILE '{f}'",
    "SELECT 1 INTO OUTFILE '{f}' APPEND",
    "SELECT 1 INTO OUTFILE '{f}' TRUNCATE",
    "SELECT 1 INTO OUTFILE '{f}' AND STDOUT",
    "WITH 1 AS x SELECT x INTO OUTFILE '{f}'",
    "select 1 /* c */ into\n outfile '{f}'",
    "EXPLAIN SELECT 1 INTO OUTFILE '{f}'",
    "(SELECT 1) INTO OUTFILE '{f}'",
    "INSERT INTO FUNCTION file('{f}', 'CSV') SELECT 1",
    "INSERT INTO runs (name) VALUES ('x')",
    "DROP TABLE events",
    "TRUNCATE TABLE events",
    "ALTER TABLE events DELETE WHERE 1",
    "CREATE TABLE x (a Int8) ENGINE = Memory",
    "RENAME TABLE events TO e2",
    "OPTIMIZE TABLE events FINAL",
    "SYSTEM DROP MARK CACHE",
    "BACKUP TABLE events TO Disk('default', 'b.zip')",
    "KILL QUERY WHERE 1",
    "DETACH TABLE events",
    "SET readonly = 0",
    "SELECT 1; DROP TABLE events",
    "SELECT 1; SELECT 2",
    "SELECT $$'$$ INTO OUTFILE '{f}' -- '",            # heredoc literals hide a quote from a lexer
    "SELECT $x$ ' $x$ INTO OUTFILE '{f}' -- '",
    "WITH $$'$$ AS a SELECT a INTO OUTFILE '{f}' TRUNCATE -- '",
]


@pytest.mark.parametrize("query", WRITES)
def test_sql_refuses_every_write(synth, tmp_path, query):
    db, run_id = synth
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "out.txt"
    for f in (target, victim, db / "metadata" / "x.sql"):
        proc = osrewind("sql", query.format(f=f), db=db)
        one_line_error(proc, 2)
    assert not target.exists() and victim.read_text() == "precious\n"
    assert not (db / "metadata" / "x.sql").exists()
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [r["run_id"] for r in runs] == [run_id] and runs[0]["events"] == 5


def test_sql_reads_and_reading_table_functions_are_refused_by_the_engine(synth):
    db, run_id = synth
    ok = osrewind("sql", "SELECT count() AS n FROM events WHERE run_id = {r:UUID} -- INTO OUTFILE 'x'",
                  "-p", f"r={run_id}", "--json", db=db, check=True)
    assert json.loads(ok.stdout) == [{"n": 5}]
    literal = osrewind("sql", "SELECT 'INTO OUTFILE' AS s", "--json", db=db, check=True)
    assert json.loads(literal.stdout) == [{"s": "INTO OUTFILE"}]
    one_line_error(osrewind("sql", "SELECT * FROM file('/etc/hostname', 'LineAsString')", db=db), 2)


@pytest.mark.parametrize("args,needle", [
    (["sql", "SELECT 1 +"], "in the query"),
    (["sql", "SELEC 1"], "only reading queries"),
    (["sql", "SELECT nosuch FROM runs"], "nosuch"),
    (["sql", "SELECT {x:UInt8}"], "in the query"),
    (["sql", "SELECT {x:UInt8}", "-p", "x=notanumber"], "in the query"),
    (["sql", "SELECT 'unterminated"], "unterminated"),
])
def test_sql_mistakes_are_the_users(synth, args, needle):
    db, _ = synth
    assert needle in one_line_error(osrewind(*args, db=db), 2)


def test_sql_has_limits(synth):
    db, _ = synth
    line = one_line_error(osrewind("sql", "SELECT * FROM system.numbers", db=db, timeout=120), 2)
    assert "asks too much" in line and "LIMIT" in line


def test_sql_text_that_is_not_utf8(synth):
    db, _ = synth
    assert "not UTF-8" in one_line_error(osrewind("sql", "SELECT 'a\udcffb'", db=db), 2)
    ok = osrewind("sql", "SELECT {p:String} AS p", "-p", "p=a\udcffb", "--json", db=db, check=True)
    assert json.loads(ok.stdout) == [{"p": "a\udcffb"}]


def test_sql_list_json():
    items = json.loads(osrewind("sql", "--list", "--json", check=True).stdout)
    assert items and all(set(i) == {"name", "header"} for i in items)
    assert "runs_list" in {i["name"] for i in items}


# ------------------------------------------------------------------ 2. the lock never follows a link


def test_symlinked_lock_is_refused_and_the_target_untouched(synth, tmp_path):
    db, _ = synth
    victim = tmp_path / "root-file"
    victim.write_text("do not truncate\n")
    lock = db / ".osrewind.lock"
    lock.unlink(missing_ok=True)
    lock.symlink_to(victim)
    for args in (["runs"], ["state", "last"], ["reindex", "last"], ["sql", "SELECT 1"]):
        line = one_line_error(osrewind(*args, db=db), 4)
        assert "symbolic link" in line
    assert victim.read_text() == "do not truncate\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make a store owned by another user")
def test_store_another_user_can_write_is_refused_for_writing(synth):
    db, run_id = synth
    os.chmod(db, 0o777)
    line = one_line_error(osrewind("reindex", "last", db=db), 4)
    assert "can be written by another user" in line and "0777" in line
    os.chmod(db, 0o700)
    os.chown(db, 65534, 65534)
    assert "uid 65534" in one_line_error(osrewind("reindex", "last", db=db), 4)
    # reading it goes through a private read-only view: nothing of the store is written
    before = tree_listing(db)
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [r["run_id"] for r in runs] == [run_id]
    assert tree_listing(db) == before


# ------------------------------------------------------------------ 3. stores are private


def test_new_store_is_private(tmp_path):
    db = tmp_path / "new"
    write_run(str(db))
    assert stat.S_IMODE(db.stat().st_mode) == 0o700
    loose = []
    for root, dirs, files in os.walk(db):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
                loose.append(name)
    assert loose == []


def test_open_store_is_made_private_with_a_warning(synth):
    db, _ = synth
    os.chmod(db, 0o755)
    for root, _dirs, files in os.walk(db):
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    proc = osrewind("runs", db=db, check=True)
    assert "warning: store" in proc.stderr and "made it private" in proc.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o700
    assert stat.S_IMODE((db / "osrewind-store.json").stat().st_mode) == 0o600
    assert "warning" not in osrewind("runs", db=db, check=True).stderr


# ------------------------------------------------------------------ 7. damage is noticed


def test_store_missing_a_table_is_refused_and_left_untouched(synth):
    db, _ = synth
    metas = [p for p in (db / "metadata").rglob("snapshot_fds.sql")] or \
            [p for p in (db / "store").rglob("snapshot_fds.sql")]
    assert metas, list(db.rglob("*.sql"))
    for m in metas:
        m.unlink()
    before = tree_listing(db)
    for args in (["runs"], ["state", "last"], ["reindex", "last"]):
        line = one_line_error(osrewind(*args, db=db), 4)
        assert "damaged" in line and "snapshot_fds" in line and "backup" in line
    assert tree_listing(db) == before


# ------------------------------------------------------------------ 8. reading never creates


def test_reading_never_creates_a_store(tmp_path):
    deep = tmp_path / "a" / "b" / "c"
    # the default store not made yet: none yet; a --db the user typed: say it is not there (a typo)
    home = {"HOME": str(tmp_path / "home"), "XDG_DATA_HOME": ""}
    proc = osrewind("runs", env=home)
    assert proc.returncode == 0 and "no runs yet" in proc.stderr
    assert json.loads(osrewind("runs", "--json", env=home).stdout) == []
    assert not (tmp_path / "home").exists()
    for args in (["runs"], ["state", "last"], ["events", "last"], ["sql", "SELECT 1"], ["tree", "last"]):
        assert "no store at" in one_line_error(osrewind(*args, db=deep), 4)
    assert not (tmp_path / "a").exists()


def test_unrelated_directory_is_not_a_store(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"\xff\xd8")
    for args in (["runs"], ["reindex", "last"]):
        assert "is not an osrewind store" in one_line_error(osrewind(*args, db=other), 4)
    assert sorted(os.listdir(other)) == ["cat.jpg"]


@pytest.mark.parametrize("db,needle", [
    ("", "--db is empty"),
    ("ftp://x/y", "unknown store scheme ftp://"),
    ("http://[::1", "bad store URL"),
    ("http://h:port/db", "bad store URL"),
    ("https://", "no host"),
])
def test_bad_store_locations(tmp_path, db, needle):
    proc = subprocess.run([sys.executable, "-m", "osrewind", "--db", db, "runs"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert needle in one_line_error(proc, 2)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ 9. reading needs only read access


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")
def test_store_on_a_read_only_filesystem_reads(synth, tmp_path):
    db, run_id = synth
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "--bind", str(db), str(mnt)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(mnt)], check=True)
        runs = json.loads(osrewind("runs", "--json", db=mnt, check=True).stdout)
        assert [r["run_id"] for r in runs] == [run_id]
        st = json.loads(osrewind("state", "last", "--at", "+1.2s", "--json", db=mnt, check=True).stdout)
        assert {p["pid"] for p in st["processes"]} == {4242, 4243}
        n = json.loads(osrewind("sql", "SELECT count() AS n FROM events", "--json", db=mnt, check=True).stdout)
        assert n == [{"n": 5}]
        osrewind("sql", "runs_list", "-p", "limit=3", db=mnt, check=True)
        assert "read-only filesystem" in one_line_error(osrewind("reindex", "last", db=mnt), 4)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_store_readable_but_not_writable_by_the_user(synth, tmp_path):
    db, run_id = synth
    before = tree_listing(db)
    os.chmod(db, 0o755)  # the owner shares it read-only (the next open by the owner makes it private again)
    for root, dirs, files in os.walk(db):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)
    # nobody, with read access kept (dac_read_search) and no way to write
    cmd = [*AS_NOBODY, sys.executable, "-m", "osrewind", "--db", str(db), "runs", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in json.loads(proc.stdout)] == [run_id]
    assert [p for p, *_ in tree_listing(db)] == [p for p, *_ in before]


# ------------------------------------------------------------------ 13. one-line errors, right codes

NINES = "+" + "9" * 400 + "s"


@pytest.mark.parametrize("args,needle", [
    (["state", "synth", "--at", "+"], "bad --at"),
    (["state", "synth", "--at", NINES], "too large"),
    (["events", "synth", "--before", NINES], "too large"),
    (["top", "synth", "--at", "+1s", "--window", NINES], "too large"),
    (["events", "synth", "--pid", "-1"], "--pid"),
    (["events", "synth", "--pid", str(4242 + 2**32)], "--pid"),
    (["events", "synth", "--path", "/tmp/[z-a]"], "bad --path glob"),
    (["state"], "Missing argument"),
    (["stat", "last"], "No such command"),
    (["events", "synth", "--no-such-option"], "No such option"),
])
def test_user_input_errors_are_one_line_exit_2(synth, args, needle):
    db, _ = synth
    assert needle in one_line_error(osrewind(*args, db=db), 2)


def test_broken_pipe_exits_quietly(tmp_path):
    db = tmp_path / "db"
    for i in range(3):
        write_run(str(db), name=f"r{i}")
    code = ("import sys; from osrewind.cli import main; "
            f"sys.argv = ['osrewind', '--db', {str(db)!r}, 'sql', 'SELECT number FROM numbers(200000)']; main()")
    proc = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True, text=True,
                          executable="/bin/bash")
    assert proc.stdout == "number\n"
    assert proc.stderr == ""
    status = subprocess.run(f"set -o pipefail; {sys.executable} -c \"{code}\" | head -1 >/dev/null",
                            shell=True, executable="/bin/bash")
    assert status.returncode == 141


# ------------------------------------------------------------------ 14. a server that never answers


def test_server_that_never_answers_times_out():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])  # accept, read nothing, answer nothing
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        began = time.monotonic()
        proc = osrewind("--timeout", "1", "runs", db=f"http://127.0.0.1:{srv.getsockname()[1]}/osrewind", timeout=60)
        took = time.monotonic() - began
    finally:
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()
    line = one_line_error(proc, 4)
    assert "cannot reach ClickHouse" in line or "timed out" in line
    assert took < 30


# ------------------------------------------------------------------ 15. small ones


def test_newline_in_a_name_keeps_the_runs_table_one_line_per_run(tmp_path):
    db = tmp_path / "db"
    write_run(str(db), name="two\nlines\x1b[2J")
    out = osrewind("runs", db=db, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 2 and "two\\nlines\\x1b[" in lines[1]  # cut to 16 between escapes
    assert "\x1b" not in out
    assert json.loads(osrewind("runs", "--json", db=db, check=True).stdout)[0]["name"] == "two\nlines\x1b[2J"


def test_aborted_run_ends_at_its_last_fact(tmp_path):
    from osrewind.ingest.store import Store

    db = tmp_path / "db"
    run_id = write_run(str(db), name="died")
    with Store(str(db), purpose="test") as store:  # a recorder killed outright: end 0, still 'recording'
        store.insert_rows("runs", [[uuid.UUID(run_id), "died", "h", "", "6.18", ["sh"], "/", "command", 4242,
                                    10_000_000_000, 0, 0, 5, 0, None, "recording", "test", time.time_ns()]],
                          ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid",
                           "start_ns", "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status",
                           "version", "updated_ns"])
    run = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)[0]
    assert run["status"] == "aborted" and run["end_ns"] == 11_500_000_001
    st = json.loads(osrewind("state", "died", "--at", "+0s", "--json", db=db, check=True).stdout)
    assert st["at_ns"] == 10_000_000_000
    osrewind("state", "died", "--at", "end", db=db, check=True)


def _died_before_its_first_fact(db, name: str) -> None:
    """A run row as a recorder killed before its first fact leaves it: 'recording', end 0, no events."""
    from osrewind.ingest.store import Store

    with Store(str(db), purpose="test") as store:
        store.ensure_schema()
        store.insert_rows("runs", [[uuid.uuid4(), name, "h", "", "6.18", ["true"], "/", "command", 1,
                                    20_000_000_000, 0, 0, 0, 0, None, "recording", "test", time.time_ns()]],
                          ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid",
                           "start_ns", "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status",
                           "version", "updated_ns"])


def test_aborted_run_with_no_events_opens_at_its_start(tmp_path):
    db = tmp_path / "db"
    _died_before_its_first_fact(db, "empty")
    run = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)[0]
    assert run["status"] == "aborted" and run["end_ns"] == run["start_ns"] == 20_000_000_000
    st = json.loads(osrewind("state", "empty", "--at", "+0s", "--json", db=db, check=True).stdout)
    assert st["processes"] == []


def test_another_users_private_store_is_one_line(synth):
    """nobody (no capabilities) cannot read root's 0700 store: one line, exit 4, no traceback."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become nobody")
    db, _ = synth
    code = ("import os, sys, pickle, numpy, pyarrow, clickhouse_connect, chdb, osrewind.queries.runs, "
            "osrewind.ingest.store; "
            "from osrewind.cli import main; "
            "os.setgroups([]); os.setegid(65534); os.seteuid(65534); "
            f"sys.argv = ['osrewind', '--db', {str(db)!r}, 'runs']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "Permission denied" in one_line_error(proc, 4)


@pytest.mark.parametrize("name", [".osrewind.lock", "osrewind-store.json"])
def test_fifo_or_device_in_the_store_never_hangs(synth, name):
    db, run_id = synth
    target = db / name
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    proc = osrewind("runs", "--json", db=db, timeout=60)
    if name == ".osrewind.lock":
        assert "not a regular file" in one_line_error(proc, 4)
    else:
        assert proc.returncode == 0 and json.loads(proc.stdout)[0]["run_id"] == run_id
    target.unlink()
    target.symlink_to("/dev/zero")
    proc = osrewind("runs", "--json", db=db, timeout=60)
    assert proc.returncode in (0, 4) and "Traceback" not in proc.stderr


def test_top_has_no_escaped_blank_lines(synth):
    db, _ = synth
    out = osrewind("top", "synth", db=db, check=True).stdout
    assert "\\n" not in out and "\nPROCESSES" in out


def test_aborted_run_with_no_events_reindexes_to_an_empty_tree(tmp_path):
    db = tmp_path / "db"
    _died_before_its_first_fact(db, "nothing")
    assert "reindex" in one_line_error(osrewind("tree", "nothing", db=db), 2)
    osrewind("reindex", "nothing", db=db, check=True)
    tree = json.loads(osrewind("tree", "nothing", "--json", db=db, check=True).stdout)
    assert tree["processes"] == []


def test_unusable_store_paths(tmp_path):
    bad = str(tmp_path).encode() + b"/st\xffore"
    proc = subprocess.run([sys.executable.encode(), b"-m", b"osrewind", b"--db", bad, b"runs"], capture_output=True,
                          text=True)
    assert "not UTF-8" in one_line_error(proc, 2)
    assert "--timeout" in one_line_error(osrewind("--timeout", "nan", "runs", db=tmp_path / "x"), 2)



def test_inserts_keep_every_byte_and_read_nulls_as_the_columns_allow(tmp_path):
    """The embedded store's two ways in (the Arrow table read in place; a table with nulls, as a
    stream) store the same thing: bytes that are not UTF-8 as they were, empty arrays, and a null
    as the column's default where it is not Nullable, as a null where it is."""
    import pyarrow as pa

    from osrewind.ingest import decode
    from osrewind.ingest.store import Store

    run = str(uuid.uuid4())
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        cols = {"ts": [1, 2], "seq": [0, 1], "path": [b"/a\xffb", b""], "argv": [[b"x", b"\x80"], []]}
        t = decode.table({"ts": cols["ts"], "kind": [decode.records.KIND_CODES["open"]] * 2}, run, 0)
        t = t.set_column(t.schema.get_field_index("path"), "path", pa.array(cols["path"], pa.binary()))
        t = t.set_column(t.schema.get_field_index("argv"), "argv", pa.array(cols["argv"], pa.list_(pa.binary())))
        store.insert_arrow("events", t)
        got = store.query("SELECT ts, path, argv FROM events WHERE run_id = {r:UUID} ORDER BY ts", {"r": run})
        store.insert_rows("runs", [[uuid.UUID(run), "n", None, None, 5]], ["run_id", "name", "command", "exit_code",
                                                                          "updated_ns"])
        row = store.query("SELECT command, exit_code FROM runs WHERE run_id = {r:UUID}", {"r": run})
    assert [(ts, p, list(a)) for ts, p, a in got] == [(1, "/a\udcffb", ["x", "\udc80"]), (2, "", [])]
    assert row == [([], None)]


def test_a_batch_of_one_run_and_of_several_runs_keep_each_rows_run(tmp_path):
    """A batch's run id goes in as one constant when every row has it (``_constant_uuid``), as
    itself otherwise (two runs in one table, or a dictionary of two values)."""
    import pyarrow as pa

    from osrewind.ingest import decode
    from osrewind.ingest.store import Store, _constant_uuid

    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    def rows(ts: list[int], run: str, seq: int) -> pa.Table:
        return decode.table({"ts": ts, "kind": [decode.records.KIND_CODES["open"]] * len(ts)}, run, seq)

    one = rows([1, 2, 3], a, 0)
    two = pa.concat_tables([rows([4], a, 3), rows([5, 6], b, 4)])
    mixed = one.set_column(0, "run_id", pa.DictionaryArray.from_arrays(pa.array([0, 1, 0], pa.int8()),
                                                                       pa.array([b, a])))
    assert _constant_uuid(one.column("run_id")) == a
    assert _constant_uuid(two.column("run_id")) is None and _constant_uuid(mixed.column("run_id")) is None
    assert _constant_uuid(pa.chunked_array([pa.array(["not a uuid"]).dictionary_encode()])) is None
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        for t in (one, two, mixed):
            store.insert_arrow("events", t)
        got = store.query("SELECT toString(run_id), ts FROM events")
    assert sorted(got) == sorted([(a, 1), (a, 2), (a, 3), (a, 4), (b, 5), (b, 6), (b, 1), (a, 2), (b, 3)])


def test_a_recorders_batch_is_a_compact_part_in_new_and_older_stores(tmp_path):
    """The events table's settings (schema.TABLE_SETTINGS) hold in a new store and are set on one
    made before them; a batch of syscall rows then makes one compact part, read back whole."""
    from osrewind.ingest import decode
    from osrewind.ingest.schema import TABLE_SETTINGS
    from osrewind.ingest.store import Store

    run = str(uuid.uuid4())
    n = 20000
    with Store(str(tmp_path / "db"), purpose="test") as store:
        store.ensure_schema()
        store.client.command("ALTER TABLE events MODIFY SETTING min_bytes_for_wide_part = 0")   # as before
        store.ensure_schema()
        engine = store.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                             "AND name = 'events'")[0][0]
        batch = decode.without_empty_columns(decode.table(
            {"ts": list(range(n)), "kind": [decode.records.KIND_CODES["syscall"]] * n, "nr": [1] * n}, run, 0))
        store.insert_arrow("events", batch)
        parts = store.query("SELECT part_type, rows FROM system.parts WHERE database = currentDatabase() "
                            "AND table = 'events' AND active")
        got = store.query("SELECT count(), countIf(path = '' AND path2 = '' AND empty(argv)), sum(nr) "
                          "FROM events WHERE run_id = {r:UUID}", {"r": run})
    for key, value in TABLE_SETTINGS["events"].items():
        assert f"{key} = {value}" in engine
    assert parts == [("Compact", n)]
    assert got == [(n, n, n)]


HOLDER = r"""
import os, sys
from osrewind.ingest.store import Store
store = Store(sys.argv[1], purpose="recording run 3f2a0000-0000-0000-0000-00000000000a (held)")
store.ensure_schema()
rows = store.query("SELECT data_paths[1] FROM system.tables WHERE database = currentDatabase() AND name = 'events'")
tmp = os.path.join(rows[0][0], "tmp_insert_all_9_9_0")
os.makedirs(tmp)
open(os.path.join(tmp, "count.txt"), "w").close()
print(tmp, flush=True)
sys.stdin.read()
store.close()
"""


def test_reading_a_store_being_recorded_leaves_its_inserts_alone(tmp_path):
    """A reader of a store a recording writes opens a mirror of it made of hard links: the engine,
    even read-only, deletes the tmp_* part directories of a table it loads, and through links to
    the store's own directories that was the recording's insert in progress (which then failed and
    ended the recording). The insert's directory is still there after the read, and the reader's
    mirror is gone."""
    db = tmp_path / "db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        tmp = holder.stdout.readline().strip()
        assert tmp and os.path.isdir(tmp)
        out = osrewind("runs", "--json", db=db)
        assert out.returncode == 0, out.stderr
        assert os.path.isfile(os.path.join(tmp, "count.txt"))
        assert not list(db.glob(".osrewind-view-*"))
    finally:
        holder.communicate("", timeout=60)
