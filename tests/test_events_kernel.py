"""`osrewind events` on real recordings: failed syscalls with errno and path, signals and exits."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import WORKLOADS, osrewind, record_json

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def failing(kernel, tmp_path_factory):
    work = tmp_path_factory.mktemp("failing")
    db = tmp_path_factory.mktemp("evstore") / "db"
    summary = record_json(db, "--name", "failing", "--", sys.executable, str(WORKLOADS / "failing.py"), str(work),
                          check_exit=0)
    return db, summary, work


def jsonl(proc) -> list[dict]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_failed_syscalls_with_errno_and_path(failing):
    db, summary, work = failing
    rows = jsonl(osrewind("events", "failing", "--failed", "--json", db=db))
    assert all(r["ret"] < 0 for r in rows)
    enoent = [r for r in rows if r["kind"] == "open" and r["path"] == f"{work}/does-not-exist"]
    assert len(enoent) == 1 and enoent[0]["ret"] == -2 and enoent[0]["summary"].endswith("-> ENOENT")
    eacces = [r for r in rows if r["kind"] == "exec_fail"]
    assert [r["ret"] for r in eacces] == [-13] and eacces[0]["path"] == f"{work}/not-executable"
    ebadf = [r for r in rows if r["kind"] == "close" and r["a0"] == 987]
    assert [r["ret"] for r in ebadf] == [-9]
    # the path filter narrows to one file, whatever directory it was named from
    only = jsonl(osrewind("events", "failing", "--failed", "--path", "**/does-not-exist", "--json", db=db))
    assert [r["path"] for r in only] == [f"{work}/does-not-exist"]


def test_sigkill_from_parent_signal_sender_target_and_status(failing):
    db, summary, _work = failing
    sent = jsonl(osrewind("events", "failing", "--kind", "signal_generate", "--json", db=db))
    kills = [r for r in sent if r["a0"] == 9]
    assert len(kills) == 1
    kill = kills[0]
    sender = kill["tgid"]
    victim = kill["a1"]
    assert kill["ret"] == 0 and "send SIGKILL to" in kill["summary"]
    procs = jsonl(osrewind("events", "failing", "--kind", "exec", "--json", db=db))
    assert any(p["tgid"] == sender and "python" in p["path"] for p in procs)  # the workload itself
    waits = jsonl(osrewind("events", "failing", "--pid", str(sender), "--kind", "wait", "--json", db=db))
    reaped = [w for w in waits if w["ret"] == victim]
    assert len(reaped) == 1 and reaped[0]["a0"] & 0x7F == 9 and "killed by SIGKILL" in reaped[0]["summary"]
    end = json.loads(osrewind("state", "failing", "--at", "end", "--json", db=db).stdout)
    assert {e["pid"]: e["exit_code"] for e in end["exited"]}[victim] == 128 + 9


def test_tree_filter_and_reverse_stepping(failing):
    db, summary, work = failing
    everything = jsonl(osrewind("events", "failing", "--json", db=db))
    root = next(e["tgid"] for e in everything if e["tgid"])  # a context switch from an untracked task has none
    tree = jsonl(osrewind("events", "failing", "--pid", str(root), "--tree", "--json", db=db))
    only_root = jsonl(osrewind("events", "failing", "--pid", str(root), "--json", db=db))
    assert len(only_root) < len(tree) == len([e for e in everything if e["kind"] != "lost"])
    # the previous event touching the file before the end, then the one before that
    prev = jsonl(osrewind("events", "failing", "--before", "end", "--path", "**/not-executable", "--limit", "2",
                          "--json", db=db))
    assert [p["kind"] for p in prev] == ["exec_fail", "open"] and prev[0]["ts"] > prev[1]["ts"]
    nxt = jsonl(osrewind("events", "failing", "--after", "start", "--path", "**/not-executable", "--limit", "1",
                         "--json", db=db))
    assert nxt[0]["ts"] == prev[1]["ts"]
    human = osrewind("events", "failing", "--kind", "fork", db=db).stdout
    assert "fork -> process" in human
