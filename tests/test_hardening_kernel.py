"""Hardening with real recordings: recorded text never acts on the reader's terminal (the umask and
signal side is in test_recorded_program_kernel.py)."""

from __future__ import annotations

import json

import pytest

from conftest import osrewind, record_json

pytestmark = pytest.mark.kernel

EVIL = "\x1b]0;PWNED\x07\x1b[2J[bold]x[/]"
SHOWN = "\\x1b]0;PWNED\\x07\\x1b[2J[bold]x[/]"


@pytest.fixture(scope="module")
def evil_run(kernel, tmp_path_factory):
    db = tmp_path_factory.mktemp("evil") / "db"
    summary = record_json(db, "--name", "evil\x1b[2Jname", "--", "/bin/sh", "-c", "sleep 0.4", EVIL,
                          check_exit=0)
    return db, summary["run_id"]


def no_raw_controls(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, text


@pytest.mark.parametrize("args", [
    ["runs"],
    ["tree", "last"],
    ["state", "last", "--at", "+0.2s"],
    ["tree", "last", "--at", "+0.2s"],
    ["events", "last", "--kind", "exec"],
    ["top", "last"],
])
def test_escape_sequences_in_argv_are_shown_escaped(evil_run, args):
    db, _ = evil_run
    proc = osrewind(*args, db=db, check=True)
    no_raw_controls(proc.stdout + proc.stderr)
    if args[0] in ("tree", "state"):
        assert SHOWN in proc.stdout, proc.stdout
    if args[0] == "runs":
        assert "evil\\x1b[2Jname" in proc.stdout and "\\x1b]0;PWNED\\x07" in proc.stdout


def test_json_keeps_the_argv_exact(evil_run):
    db, run_id = evil_run
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert runs[0]["command"][-1] == EVIL and runs[0]["name"] == "evil\x1b[2Jname"
    st = json.loads(osrewind("state", run_id, "--at", "+0.2s", "--json", db=db, check=True).stdout)
    assert [p["argv"][-1] for p in st["processes"] if p["argv"][:2] == ["/bin/sh", "-c"]] == [EVIL]
    lines = osrewind("events", run_id, "--json", db=db, check=True).stdout.splitlines()
    assert any((json.loads(line).get("argv") or [None])[-1] == EVIL for line in lines)


def test_errors_quote_user_text_escaped(evil_run):
    db, _ = evil_run
    proc = osrewind("state", "no\x1b[2Jrun", db=db)
    assert proc.returncode == 2
    no_raw_controls(proc.stderr)
