"""The TUI on real recordings: a command recorded and watched live (the recorder on a thread of the
TUI's process, as `osrewind tui -- CMD` runs it), and the diff view on two real runs of a script
that takes another branch the second time."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

import pytest
import test_diff_kernel
from test_tui import settle

from conftest import AS_NOBODY
from osrewind.ingest.recorder import RecordOptions
from osrewind.ingest.store import Store
from osrewind.tui.app import OsrewindApp
from osrewind.tui.diff_screen import DiffScreen
from osrewind.tui.proctree import ProcessTree
from osrewind.tui.run_screen import RunScreen

pytestmark = pytest.mark.kernel
two_runs = test_diff_kernel.two_runs  # the same two real runs as the diff's own tests


def test_live_view_follows_a_running_command(kernel, tmp_path):
    from osrewind.tui.live import LiveSession

    out = tmp_path / "made.txt"
    script = f"echo started; sleep 0.6; echo data > {out}; sleep 1.5; echo done"
    log = tmp_path / "cmd.log"

    async def go():
        with Store(str(tmp_path / "db"), purpose="test") as store:
            live = LiveSession(store, RecordOptions(command=["/bin/sh", "-c", script], name="live",
                                                    output=str(log)))
            live.start()
            live.wait_started()
            app = OsrewindApp(store, live=live)
            async with app.run_test(size=(100, 30)) as pilot:
                s = app.screen
                assert isinstance(s, RunScreen) and s.live is live
                seen_sleep_while_recording = False
                seen_file_open = False
                for _ in range(200):
                    await pilot.pause(0.05)
                    if live.finished:
                        break
                    st = s.state
                    if st is not None and any(p.comm == "sleep" for p in st.processes):
                        seen_sleep_while_recording = True
                    # the shell holds made.txt open only during `echo data > made.txt`: rarely caught live,
                    # so check it below by scrubbing back
                assert seen_sleep_while_recording, "the live view never showed the running command"
                for _ in range(300):
                    await pilot.pause(0.05)
                    if live.indexed:
                        break
                assert live.indexed and live.result.status == "complete" and live.result.exit_code == 0
                await pilot.pause(0.6)                # one more live tick: the final run row
                await settle(pilot)
                assert s.rec.run.status == "complete"
                assert "complete" in live.status_text() and "exit 0" in live.status_text()
                # scrub back to when the shell wrote made.txt: the fd is there
                e = s.rec.step(s.rec.run.start_ns, path=str(out))
                assert e is not None and e["kind"] == "open"
                s._request(e["ts"])
                await settle(pilot)
                holders = [p for p in s.state.processes if any(f.target == str(out) for f in p.fds.values())]
                assert holders, [p.to_json() for p in s.state.processes]
                s.proc_tree.select_ident((holders[0].pid, holders[0].start_ns))
                await settle(pilot)
                assert str(out) in " ".join(r[2] for r in s.detail.fd_rows)
                seen_file_open = True
            assert seen_file_open
        # the command's own output went to its log, not over the screen
        assert log.read_text().split() == ["started", "done"]
        assert out.read_text() == "data\n"

    asyncio.run(go())


def test_diff_view_on_two_real_runs(two_runs):
    db, good, bad, data = two_runs

    async def go():
        with Store(str(db), purpose="test") as store:
            app = OsrewindApp(store, run=good["run_id"], diff=bad["run_id"])
            async with app.run_test(size=(120, 30)) as pilot:
                await settle(pilot)
                s = app.screen
                assert isinstance(s, DiffScreen) and s.result is not None
                only_b = [b for _d, a, b in s.rows if a is None and b is not None]
                assert [p.argv for p in only_b] == [["sleep", "0.05"]]
                summary = str(s.query_one("#diff-summary").render())
                assert f"open {data} for read: ENOENT" in summary and "1 only in B" in summary
                await pilot.press("v")
                row = s.query_one("#diff-table").cursor_row
                a = s.rows[row][1]
                assert row == s.divergence_row and a is not None and a.argv[0] == "/bin/sh"
                # open run B at the divergence: the shell is selected, the instant is its failed open
                await pilot.press("b")
                await settle(pilot)
                rs = app.screen
                assert isinstance(rs, RunScreen) and rs.rec.run.run_id == bad["run_id"]
                e = rs.rec.step(rs.at - 1, pid=rs.query_one(ProcessTree).selected[0])
                assert e["ts"] == rs.at and e["kind"] == "open" and e["ret"] == -2 and e["path"] == str(data)

    asyncio.run(go())


def test_tui_live_needs_root(tmp_path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("drops root with setpriv: runs as root")
    proc = subprocess.run([*AS_NOBODY, sys.executable, "-m", "osrewind", "--db", str(tmp_path / "db"), "tui", "--",
                           "true"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stderr.startswith("osrewind: error:") and proc.stderr.count("\n") == 1
    assert "needs root" in proc.stderr
