"""The CLI on a generated run (no root needed): answers, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from synthetic import write_run

from conftest import AS_NOBODY, osrewind
from osrewind.cli import cli


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    db = tmp_path_factory.mktemp("cli") / "db"
    run_id = write_run(str(db), name="synth")
    return db, run_id


def one_line_error(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    assert proc.returncode != 0, proc.stdout
    if code is not None:
        assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("osrewind: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_runs_and_state(synth):
    db, run_id = synth
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [r["run_id"] for r in runs] == [run_id] and runs[0]["events"] == 5
    for spec in (run_id, run_id[:6], "synth", "last", run_id.upper()):
        st = json.loads(osrewind("state", spec, "--at", "+1.2s", "--json", db=db, check=True).stdout)
        procs = {p["pid"]: p for p in st["processes"]}
        assert set(procs) == {4242, 4243}
        assert procs[4242]["fds"] == [
            {"fd": 0, "kind": "file", "target": "/dev/null", "cloexec": False, "flags": 0, "since_ns": 0, "inode": None},
            {"fd": 3, "kind": "file", "target": "/tmp/a", "cloexec": False, "flags": 0, "since_ns": 10_500_000_000, "inode": None},
        ]
        assert procs[4243]["ppid"] == 4242 and [f["fd"] for f in procs[4243]["fds"]] == [0, 3]
    before = json.loads(osrewind("state", "synth", "--at", "+0.4s", "--json", db=db, check=True).stdout)
    assert [[f["fd"] for f in p["fds"]] for p in before["processes"]] == [[0]]
    end = json.loads(osrewind("state", "synth", "--at", "end", "--json", db=db, check=True).stdout)
    assert end["processes"] == [] and {e["pid"]: e["exit_code"] for e in end["exited"]}[4242] == 0
    human = osrewind("state", "synth", "--at", "+1.2s", db=db, check=True).stdout
    assert "4242 sh job.sh" in human and "fd 3   /tmp/a" in human and "└─ 4243" in human


@pytest.mark.parametrize("args,needle", [
    (["state", "nosuchrun", "--at", "+1s"], "unknown run 'nosuchrun'"),
    (["state", "synth", "--at", "soon"], "bad --at 'soon'"),
    (["state", "synth", "--at", "+9s"], "outside the run"),
    (["state", "synth", "--at", "-3s"], "outside the run"),
    (["state", "synth", "--at", "1"], "outside the run"),
])
def test_bad_input_is_one_line(synth, args, needle):
    db, _ = synth
    line = one_line_error(osrewind(*args, db=db), 2)
    assert needle in line


def test_empty_store_says_how_to_start(tmp_path):
    line = one_line_error(osrewind("state", "last", db=tmp_path / "empty"), 4)
    assert "no store at" in line and "osrewind record -- CMD" in line
    assert not (tmp_path / "empty").exists()
    assert "no store at" in one_line_error(osrewind("runs", db=tmp_path / "empty2"), 4)


def test_store_path_that_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a store")
    assert "is not a directory" in one_line_error(osrewind("runs", db=f), 4)


def test_corrupt_store_is_one_line_and_keeps_the_files(tmp_path, synth):
    db, _ = synth
    bad = tmp_path / "bad"
    shutil.copytree(db, bad)
    for meta in bad.rglob("*.sql"):
        meta.write_text("this is not SQL")
    before = sorted(p.name for p in bad.rglob("*"))
    one_line_error(osrewind("runs", db=bad), 4)
    assert sorted(p.name for p in bad.rglob("*")) == before


def test_not_root(tmp_path):
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("setpriv missing")
        cmd = [*AS_NOBODY, sys.executable, "-m", "osrewind",
               "--db", str(tmp_path / "db"), "record", "--", "true"]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)})
    else:
        proc = osrewind("record", "--", "true", db=tmp_path / "db")
    assert "recording needs root" in one_line_error(proc, 3)


def test_missing_bcc(tmp_path):
    code = ("import sys; sys.modules['bcc'] = None; from osrewind.cli import main; "
            f"sys.argv = ['osrewind', '--db', {str(tmp_path / 'db')!r}, 'record', '--', 'true']; main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    line = one_line_error(proc, 3)
    assert "BCC is not importable" in line or "needs root" in line


def test_missing_kernel_headers(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("the headers check comes after the root check")
    proc = osrewind("record", "--", "true", db=tmp_path / "db", env={"OSREWIND_MODULES_DIR": str(tmp_path)})
    assert "kernel headers not found" in one_line_error(proc, 3)


def test_record_needs_a_scope(tmp_path):
    assert "nothing to record" in one_line_error(osrewind("record", db=tmp_path / "db"), 2)
    assert "choose one of" in one_line_error(osrewind("record", "--system", "--pid", "1", db=tmp_path / "db"), 2)


def test_every_command_has_help_with_example_and_json():
    import click

    commands = [([name], c) for name, c in cli.commands.items()]
    while commands:
        path, command = commands.pop()
        text = command.help or ""
        assert "Example" in text, path
        if isinstance(command, click.Group):   # its subcommands, each with its own options
            commands += [([*path, n], c) for n, c in command.commands.items()]
        else:
            assert any(p.name == "as_json" for p in command.params), path
        out = osrewind(*path, "--help")
        assert out.returncode == 0 and "Usage:" in out.stdout


def test_unreachable_server_is_one_line():
    line = one_line_error(osrewind("runs", db="http://reader:secret@127.0.0.1:9/osrewind"), 4)
    assert "cannot reach ClickHouse at http://reader@127.0.0.1:9/osrewind" in line
    assert "secret" not in line


def test_unknown_command_is_one_line_and_records_nothing(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("record checks root first")
    db = tmp_path / "db"
    line = one_line_error(osrewind("record", "--", "no-such-command-osrewind", db=db), 127)   # as a shell
    assert line == "osrewind: error: cannot run 'no-such-command-osrewind': command not found"
    assert json.loads(osrewind("runs", "--json", db=db).stdout or "[]") == []
