"""The recorded program behaves exactly as it would without osrewind, and what osrewind stores about it
is what the user allowed: signal dispositions and mask, SIGPIPE in a pipeline, stopping a command
that ignores Ctrl-C (the CLI and the live TUI), SIGHUP, the shell's 126/127 for exec failures,
``record --redact``, the JSON summary on a line of its own, ``--duration 0s`` refused."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import as_at_a_terminal, osrewind, record_json
from osrewind.ingest.store import Store

pytestmark = pytest.mark.kernel

OSREWIND = [sys.executable, "-m", "osrewind"]
SIGNAL_FIELDS = ["grep", "-E", "^Sig(Blk|Ign|Cgt):", "/proc/self/status"]


def _parent_plain() -> None:
    """A shell's child: nothing blocked. (The test process itself may have SIGPIPE blocked: an
    embedded store opened in it earlier blocks it in the thread that opened it.)"""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def _parent_nohup_and_blocked() -> None:
    """A parent such as `nohup` (SIGHUP ignored) that also blocks SIGUSR1."""
    _parent_plain()
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})


def _signal_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("Sig")]


@pytest.mark.parametrize("parent", [_parent_plain, _parent_nohup_and_blocked], ids=["plain", "nohup-blocked"])
def test_signal_dispositions_and_mask_as_without_osrewind(kernel, tmp_path, parent):
    direct = subprocess.run(SIGNAL_FIELDS, capture_output=True, text=True, preexec_fn=parent, check=True)
    recorded = subprocess.run(OSREWIND + ["--db", str(tmp_path / "db"), "record", "--quiet", "--", *SIGNAL_FIELDS],
                              capture_output=True, text=True, preexec_fn=parent, timeout=120)
    assert recorded.returncode == 0, recorded.stderr
    assert len(_signal_lines(direct.stdout)) == 3
    assert _signal_lines(recorded.stdout) == _signal_lines(direct.stdout)
    if parent is _parent_nohup_and_blocked:   # the test means something: those bits are set
        ign = int(re.search(r"SigIgn:\s*(\w+)", recorded.stdout)[1], 16)
        blk = int(re.search(r"SigBlk:\s*(\w+)", recorded.stdout)[1], 16)
        assert ign & (1 << (signal.SIGHUP - 1)) and blk & (1 << (signal.SIGUSR1 - 1))
        assert not ign & (1 << (signal.SIGPIPE - 1)) and not blk & (1 << (signal.SIGPIPE - 1))


def test_umask_as_without_osrewind(kernel, tmp_path):
    """The store makes osrewind's own umask 077; the command gets the one osrewind was started with."""
    def parent():
        os.umask(0o027)

    direct = subprocess.run(["/bin/sh", "-c", "umask"], capture_output=True, text=True, preexec_fn=parent, check=True)
    recorded = subprocess.run(OSREWIND + ["--db", str(tmp_path / "db"), "record", "--quiet", "--", "/bin/sh", "-c",
                                          "umask"], capture_output=True, text=True, preexec_fn=parent, timeout=120)
    assert recorded.returncode == 0, recorded.stderr
    assert direct.stdout.strip() == "0027" and recorded.stdout == direct.stdout


def test_command_killed_by_sigpipe_in_a_pipeline(kernel, tmp_path):
    """`osrewind record -- seq 10000000 | head -1`: seq dies of SIGPIPE, record exits 141 (128 + 13)."""
    db = tmp_path / "db"
    proc = subprocess.Popen(OSREWIND + ["--db", str(db), "record", "--quiet", "--name", "seqhead", "--",
                                        "seq", "10000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_parent_plain)
    assert proc.stdout.readline() == b"1\n"
    proc.stdout.close()                       # what `head -1` does after its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Broken pipe" not in err and "write error" not in err
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [(r["name"], r["status"], r["exit_code"]) for r in runs] == [("seqhead", "complete", 141)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for_file(path: Path, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


@pytest.mark.parametrize("sig,again,code", [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)],
                         ids=["ctrl-c", "sigterm"])
def test_stop_twice_leaves_a_command_that_ignores_it_running(kernel, tmp_path, sig, again, code):
    """Ctrl-C (to the terminal's whole group) or `kill` (to osrewind) twice: the second stops recording."""
    send = (lambda rec: os.killpg(rec.pid, sig)) if sig == signal.SIGINT else (lambda rec: rec.send_signal(sig))
    trap = "INT" if sig == signal.SIGINT else "TERM"
    db, pidfile = tmp_path / "db", tmp_path / "cmd.pid"
    out, err = tmp_path / "out", tmp_path / "err"   # files, not pipes: the command left running holds them
    with open(out, "w") as o, open(err, "w") as e:
        rec = subprocess.Popen(OSREWIND + ["--db", str(db), "record", "--quiet", "--json", "--name", "stubborn", "--",
                                           "/bin/sh", "-c", f'trap "" {trap}; echo $$ > {pidfile}; sleep 60'],
                               stdout=o, stderr=e, start_new_session=True, preexec_fn=as_at_a_terminal)
    try:
        pid = int(_wait_for_file(pidfile))
        time.sleep(0.3)
        send(rec)
        time.sleep(1.0)
        assert rec.poll() is None, "record gave up on the first signal"
        assert (f"osrewind: waiting for sh (pid {pid}) to exit; {again} again to stop recording and leave it "
                "running") in err.read_text()
        t0 = time.monotonic()
        send(rec)
        assert rec.wait(timeout=30) == code, err.read_text()
        assert time.monotonic() - t0 < 15      # promptly: no waiting for the command
        assert _alive(pid), "the command should have been left running"
        summary = json.loads(out.read_text().strip().splitlines()[-1])
        assert summary["status"] == "interrupted" and summary["exit_code"] is None and summary["events"] > 0
        runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
        assert [(r["status"], r["exit_code"]) for r in runs] == [("interrupted", None)]
    finally:
        try:
            os.killpg(rec.pid, signal.SIGKILL)   # the command and its sleep are in record's group
        except ProcessLookupError:
            pass
        rec.wait(timeout=30)


def test_sighup_ends_the_recording_as_sigterm_does(kernel, tmp_path):
    db, mark = tmp_path / "db", tmp_path / "started"
    rec = subprocess.Popen(OSREWIND + ["--db", str(db), "record", "--quiet", "--name", "hup", "--", "/bin/sh", "-c",
                                       f"touch {mark}; exec sleep 60"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                           preexec_fn=as_at_a_terminal)
    try:
        deadline = time.monotonic() + 60
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        rec.send_signal(signal.SIGHUP)        # the terminal closed
        rc = rec.wait(timeout=60)
        err = rec.stderr.read().decode()
        assert rc == 128 + signal.SIGHUP, err   # the command got the hang-up too, and died of it
    finally:
        try:
            os.killpg(rec.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rec.wait(timeout=30)
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [(r["name"], r["status"], r["exit_code"]) for r in runs] == [("hup", "interrupted", 128 + signal.SIGHUP)]
    assert runs[0]["events"] > 0


@pytest.mark.parametrize("what,code", [("missing-path", 127), ("missing-name", 127), ("not-executable", 126),
                                       ("directory", 126)])
def test_exec_failures_exit_as_a_shell_would(kernel, tmp_path, what, code):
    db = tmp_path / "db"
    plain = tmp_path / "plain.txt"
    plain.write_text("not a program\n")
    plain.chmod(0o644)
    argv = {"missing-path": str(tmp_path / "nonexistent"), "missing-name": "osrewind-no-such-command",
            "not-executable": str(plain), "directory": str(tmp_path)}[what]
    shell = subprocess.run(["/bin/sh", "-c", '"$0"', argv], capture_output=True)
    assert shell.returncode == code           # what a shell says: the reference
    proc = osrewind("record", "--quiet", "--json", "--", argv, db=db)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"osrewind: error: cannot run '{argv}': "), proc.stderr
    if what == "missing-name":                # found nowhere: no recording was started
        assert proc.stdout == ""
        return
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and summary["exit_code"] == code
    runs = json.loads(osrewind("runs", "--json", db=db, check=True).stdout)
    assert [(r["status"], r["exit_code"]) for r in runs] == [("failed", code)]


def _rows_text(store: Store, table: str, run_id: str) -> str:
    rows = store.query(f"SELECT * FROM {table} WHERE run_id = {{r:UUID}}", {"r": run_id})
    return repr(rows)


def test_redact_keeps_secrets_out_of_the_store(kernel, tmp_path):
    db, target = tmp_path / "db", tmp_path / "x-pass=hunter2"
    script = f"echo pass=hunter2 > {target}; cat {target} > /dev/null"
    summary = record_json(db, "--redact", r"pass=\S+", "--redact", "nomatch-[0-9]+", "--", "/bin/sh", "-c", script,
                          check_exit=0)
    assert target.read_text() == "pass=hunter2\n"   # the command itself ran as typed
    rid = summary["run_id"]
    osrewind("reindex", rid, db=db, check=True)
    with Store(str(db)) as store:
        tables = [t for (t,) in store.query("SHOW TABLES") if t not in ("meta", "index_builds")]
        assert {"runs", "events", "snapshot_procs", "snapshot_fds", "processes", "file_access"} <= set(tables)
        for table in tables:
            assert "hunter2" not in _rows_text(store, table, rid), table
        cmd, cwd = store.query("SELECT command, cwd FROM runs FINAL WHERE run_id = {r:UUID}", {"r": rid})[0]
        paths = {p for (p,) in store.query("SELECT path FROM events WHERE run_id = {r:UUID} AND kind = 'open'",
                                           {"r": rid})}
    assert cmd == ["/bin/sh", "-c", re.sub(r"pass=\S+", "***", script)]
    assert cwd == os.getcwd()
    assert any(p.endswith("/x-***") for p in (x.decode() if isinstance(x, bytes) else x for x in paths)), paths
    # and what every command shows of it
    for args in (["events", rid, "--json"], ["state", rid, "--at", "end", "--json"], ["tree", rid, "--json"],
                 ["runs", "--json"], ["sql", "SELECT * FROM events"]):
        out = osrewind(*args, db=db, check=True).stdout
        assert "hunter2" not in out, args
    assert "***" in osrewind("events", rid, "--json", db=db, check=True).stdout


def test_redact_pattern_errors_are_bad_input(tmp_path):
    for pattern in ["(", ".*"]:
        proc = osrewind("record", "--redact", pattern, "--", "true", db=tmp_path / "db")
        assert proc.returncode == 2 and proc.stderr.startswith("osrewind: error: ") and "--redact" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "db").exists()


def test_duration_zero_is_refused(tmp_path):
    for value in ["0s", "0ms", "0.0s"]:
        proc = osrewind("record", "--duration", value, "--system", db=tmp_path / "db")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"osrewind: error: --duration {value}: must be more than 0")
    assert not (tmp_path / "db").exists()


@pytest.mark.parametrize("output,sep", [("abc", "\n"), ("abc\n", ""), ("", "")], ids=["no-newline", "newline",
                                                                                      "nothing"])
def test_json_summary_on_its_own_line_in_a_file(kernel, tmp_path, output, sep):
    db, out = tmp_path / "db", tmp_path / "out.txt"
    with open(out, "w") as f:
        rc = subprocess.run(OSREWIND + ["--db", str(db), "record", "--quiet", "--json", "--", "printf", output],
                            stdout=f, timeout=120).returncode
    assert rc == 0
    text = out.read_text()
    head, summary = text[: text.index("{")], text[text.index("{"):]
    assert head == output + sep                  # exactly: no empty line when none is needed
    assert summary.endswith("}\n") and json.loads(summary)["status"] == "complete"


def test_json_summary_on_its_own_line_in_an_appended_file(kernel, tmp_path):
    db, out = tmp_path / "db", tmp_path / "out.txt"
    out.write_text("earlier\n")
    with open(out, "a") as f:
        subprocess.run(OSREWIND + ["--db", str(db), "record", "--quiet", "--json", "--", "printf", "x"], stdout=f,
                       timeout=120, check=True)
    lines = out.read_text().splitlines()
    assert lines[:2] == ["earlier", "x"] and json.loads(lines[2])["status"] == "complete" and len(lines) == 3


def test_json_summary_on_its_own_line_in_a_pipe(kernel, tmp_path):
    """A pipe shows osrewind nothing of what the command wrote: the summary always starts a line."""
    proc = osrewind("record", "--quiet", "--json", "--", "printf", "abc", db=tmp_path / "db")
    assert proc.returncode == 0
    assert proc.stdout.startswith("abc\n{") and json.loads(proc.stdout.splitlines()[-1])["exit_code"] == 0


def test_live_tui_second_q_leaves_a_command_that_will_not_exit_running(kernel, tmp_path):
    from osrewind.ingest.recorder import RecordOptions
    from osrewind.tui.app import OsrewindApp
    from osrewind.tui.live import LiveSession

    pidfile = tmp_path / "cmd.pid"
    script = f'trap "" TERM; echo $$ > {pidfile}; sleep 60'
    notes: list[str] = []

    async def go():
        with Store(str(tmp_path / "db"), purpose="test") as store:
            live = LiveSession(store, RecordOptions(command=["/bin/sh", "-c", script], name="stubborn",
                                                    output=str(tmp_path / "cmd.log")))
            live.start()
            live.wait_started()
            app = OsrewindApp(store, live=live)
            original = app.notify
            app.notify = lambda message, **kw: (notes.append(str(message)), original(message, **kw))[1]
            async with app.run_test(size=(100, 30)) as pilot:
                pid = int(await asyncio.to_thread(_wait_for_file, pidfile))
                await pilot.pause(0.3)
                await pilot.press("q")
                for _ in range(100):
                    await pilot.pause(0.05)
                    if any(n.startswith("waiting for") for n in notes):
                        break
                assert not live.finished and _alive(pid)
                assert f"waiting for sh (pid {pid}) to exit; q again to stop recording and leave it running" in notes
                await pilot.press("q")
                for _ in range(300):
                    await pilot.pause(0.05)
                    if live.finished:
                        break
                assert live.finished
            live.join(60)
            return pid, live.result

    pid = None
    try:
        pid, result = asyncio.run(go())
        assert result.status == "interrupted" and result.exit_code is None
        assert _alive(pid)
    finally:
        if pid is None and pidfile.exists():
            pid = int(pidfile.read_text())
        if pid is not None:
            subprocess.run(["pkill", "-KILL", "-P", str(pid)])   # its sleep
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)   # the recorder forked it from this process: reap it
            except (ProcessLookupError, ChildProcessError):
                pass
