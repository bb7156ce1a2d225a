"""Shared fixtures. Kernel tests need root, BCC and kernel headers: locally they are skipped with the
reason when those are missing; under CI (CI=true) they fail instead, because CI must run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = Path(__file__).resolve().parent / "workloads"


def as_at_a_terminal() -> None:
    """preexec_fn for a command a test stops with signals, as a user at a terminal would: Ctrl-C,
    SIGTERM and the hang-up at their defaults and nothing blocked, however the suite itself was
    started (a background job ignores SIGINT, `nohup` ignores SIGHUP, and children inherit both)."""
    import signal

    for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def kernel_problem() -> str | None:
    from osrewind.errors import EnvironmentProblem
    from osrewind.probes.loader import check_environment

    try:
        check_environment()
    except EnvironmentProblem as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def kernel() -> None:
    problem = kernel_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"kernel tests must run in CI: {problem}")
        pytest.skip(problem)


# Drop root as a test of "not root": uid nobody, but still able to read the checkout wherever it
# lies (a clone under a private temporary directory is unreadable to nobody otherwise).
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+dac_read_search",
             "--ambient-caps=+dac_read_search"]


def osrewind(*args: str, db: Path | str | None = None, check: bool = False, timeout: float = 120,
             env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI in a child process (as a user would), capturing its output."""
    cmd = [sys.executable, "-m", "osrewind"]
    if db is not None:
        cmd += ["--db", str(db)]
    full_env = dict(os.environ)
    full_env.pop("OSREWIND_DB", None)
    full_env.update(env or {})
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=timeout, env=full_env,
                          input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"osrewind {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def record_json(db: Path, *args: str, check_exit: int | None = None) -> dict:
    proc = osrewind("record", "--quiet", "--json", *args, db=db)
    if check_exit is not None:
        assert proc.returncode == check_exit, proc.stderr
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def store_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("store") / "db"


def pytest_collection_modifyitems(config, items):
    """Under ``make test`` (pytest -n 2 --dist loadgroup): the tests that load BPF programs run one
    after another on one worker (they record for real, and some measure losses on a 2-core machine),
    while the others share the second worker. Without xdist the mark changes nothing."""
    for item in items:
        if item.get_closest_marker("kernel") or "kernel" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("kernel"))
