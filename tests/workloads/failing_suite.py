"""A suite that fails on purpose, for scripts/ci-plugin-check.sh: run under pytest --osrewind as CI
users run it (not collected by the project's own test run: its name does not start with test_)."""

import os
import subprocess


def test_writes_a_file(tmp_path):
    (tmp_path / "out.txt").write_text("ok\n")
    subprocess.run(["cat", str(tmp_path / "out.txt")], check=True, capture_output=True)


def test_reads_a_setting_that_is_not_there():
    with open(os.path.join(os.path.dirname(__file__), "no-such-settings.conf")) as f:
        assert f.read()
