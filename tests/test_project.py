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


def _queries_module(path) -> str:
    rel = path.relative_to(ROOT / "queries").with_suffix("")
    return ".".join(["osrewind", "queries", *[p for p in rel.parts if p != "__init__"]])


def test_the_rewind_engine_is_pure_and_the_queries_have_no_import_cycle():
    """queries/engine knows no store, no cache, no SQL; and no two query modules import each other
    (directly or around a loop), not even from inside a function."""
    files = {_queries_module(f): f for f in (ROOT / "queries").rglob("*.py")}
    graph = {}
    for mod, f in files.items():
        deps = set()
        tree = ast.parse(f.read_text(), str(f))
        typing_only = {id(n) for top in ast.walk(tree) if isinstance(top, ast.If)
                       and isinstance(top.test, ast.Name) and top.test.id == "TYPE_CHECKING"
                       for stmt in top.body for n in ast.walk(stmt)}   # annotations only: not run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                # `from pkg import submodule` depends on the submodule (and not on pkg's __init__)
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in files]
                names = subs if len(subs) == len(node.names) else [node.module, *subs]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != mod:
                    deps.add(name)
        graph[mod] = deps
    for mod in (m for m in graph if m.startswith("osrewind.queries.engine")):
        outside = {d for d in graph[mod] if not d.startswith("osrewind.queries.engine")}
        assert not outside, f"{mod} imports {outside}"
        imported = {n for n in _imports(files[mod]) if n.startswith("osrewind.ingest")}
        assert not imported, f"{mod} imports {imported}"
    seen: dict[str, int] = {}

    def visit(mod: str, path: list[str]) -> None:
        seen[mod] = 1
        for dep in sorted(graph[mod]):
            if seen.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, mod, dep]))
            if dep not in seen:
                visit(dep, [*path, mod])
        seen[mod] = 2

    for mod in sorted(graph):
        if mod not in seen:
            visit(mod, [])
