"""The project's own promises: layering, setup script, CI entry point, Vagrantfile, README."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import AS_NOBODY, ROOT

# A stage may import itself, the stages before it, and the shared root modules (errors, __init__).
STAGES = {"probes": 0, "ingest": 1, "queries": 2, "tui": 3, "cli": 4}  # the CLI launches the TUI
FOLDERS = {"probes": "probes", "ingest": "ingest", "queries": "queries", "tui": "tui"}


def _stage_of_module(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "osrewind" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in STAGES else None


def _imports(path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def stage_files():
    for stage, folder in FOLDERS.items():
        for f in (ROOT / folder).rglob("*.py"):
            yield stage, f
    yield "cli", ROOT / "osrewind" / "cli.py"


def test_stages_import_only_downstream():
    bad = []
    for stage, f in stage_files():
        for mod in _imports(f):
            other = _stage_of_module(mod)
            if other and other != stage and STAGES[other] >= STAGES[stage]:
                bad.append(f"{f.relative_to(ROOT)} ({stage}) imports {mod} ({other})")
            top = mod.split(".")[0]
            if top == "bcc" and f.name != "loader.py":
                bad.append(f"{f.relative_to(ROOT)} imports bcc: only probes/loader.py may")
            if top == "textual" and stage != "tui":
                bad.append(f"{f.relative_to(ROOT)} imports textual: only tui/ may")
    assert bad == []


def test_the_layering_check_catches_a_violation(tmp_path):
    f = tmp_path / "x.py"
    f.write_text("from osrewind.queries.state import Machine\nimport bcc\n")
    mods = _imports(f)
    assert _stage_of_module(mods[0]) == "queries" and STAGES["queries"] > STAGES["ingest"]
    assert "bcc" in mods


def test_only_the_loader_imports_bcc_and_no_stage_is_a_global_package():
    code = ("import sys, osrewind.cli, osrewind.queries.state, osrewind.ingest.recorder; "
            "print('bcc' in sys.modules, 'textual' in sys.modules, 'probes' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_setup_script_parses_and_refuses_non_root():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts/setup.sh")]).returncode == 0
    if os.geteuid() == 0 and shutil.which("setpriv"):
        proc = subprocess.run([*AS_NOBODY, "bash", str(ROOT / "scripts/setup.sh")], capture_output=True, text=True)
        assert proc.returncode == 1 and "run as root" in proc.stderr


def test_ci_runs_readme_test_command():
    ci = (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^((?:sudo )?make \w+)$", quick, re.M)
    assert commands == ["make demo", "make test"]
    assert "set -euo pipefail" in ci and "scripts/setup.sh" in ci and re.search(r"^make test$", ci, re.M)


def test_vagrantfile_validates():
    if not shutil.which("vagrant"):
        if os.environ.get("CI"):
            pytest.fail("vagrant must be installed in CI (scripts/setup.sh --dev)")
        pytest.skip("vagrant not installed (scripts/setup.sh --dev installs it)")
    env = {**os.environ, "VAGRANT_CWD": str(ROOT / "vagrant"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    proc = subprocess.run(["vagrant", "validate", "--ignore-provider"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout
