"""``pytest --osrewind``: keep the OS-level trace of the tests that fail.

Installed with osrewind (the ``pytest11`` entry point ``osrewind``). With ``--osrewind`` the session
runs again as the command of ``osrewind record`` (so the recorder is outside the test processes and
sees the whole tree: xdist workers and every subprocess), and each test's setup, call and teardown
start and end are written as marks to a file outside the test processes (``osrewind.ingest.marks``):
a test process that dies hard (``os._exit``, SIGKILL, pytest-timeout) loses none, and its test is
kept as ``died``. When the session ends, the marks become the run's ``tests`` table and the
terminal says how to open each failing test. The session's exit code is pytest's own, whatever
happens to the recording. Without root (or BCC, or kernel headers) one line says so and the session
runs unrecorded.

Options: ``--osrewind-keep=failed|all`` (failed: a session with no failing test keeps only its
summary, the run row and its tests), ``--osrewind-export DIR`` (one run file per failing test, for CI
artifacts; ``--junitxml`` then names it in ``osrewind.trace`` and a ``[[ATTACHMENT|path]]`` line),
``--osrewind-hunt N`` (the session again until it has passed and failed, as ``osrewind hunt``),
``--osrewind-db PATH|URL`` (the store). With xdist
(``-p xdist -n 2``) the workers are children of the recorded session and are recorded with it;
each test's marks name its worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

MARKS_ENV = "OSREWIND_PYTEST_MARKS"   # set for the recorded session: where its marks go
RUN_ENV = "OSREWIND_PYTEST_RUN"       # and the name of its run
EXPORT_ENV = "OSREWIND_PYTEST_EXPORT"  # and where failing tests' run files go (--osrewind-export)
FAILING = ("failed", "error", "died")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("osrewind", "osrewind: keep the OS-level trace of failing tests")
    group.addoption("--osrewind", action="store_true", default=False,
                    help="Record the session with osrewind (needs root): every process, file, socket and "
                         "syscall of its process tree, with each test's window.")
    group.addoption("--osrewind-keep", choices=("failed", "all"), default="failed",
                    help="failed (default): a session with no failing test keeps only its summary; "
                         "all: keep every session's trace.")
    group.addoption("--osrewind-export", default=None, metavar="DIR",
                    help="Write one run file (.osr) per failing test here (for CI artifacts): what rewinding "
                         "its window needs; 'osrewind state FILE --test NODEID' opens it anywhere.")
    group.addoption("--osrewind-hunt", type=int, default=0, metavar="N",
                    help="Run the session again, recorded, up to N times until it has both passed and failed; keep "
                         "one of each and show their first divergence (a flaky test's hunt).")
    group.addoption("--osrewind-db", default=None, metavar="PATH|URL",
                    help="The osrewind store (default: $OSREWIND_DB, else osrewind's default store).")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """The session, run again under ``osrewind record``; its exit code is this one's."""
    if not config.getoption("osrewind") or os.environ.get(MARKS_ENV):
        return None
    opt = config.option
    if any(getattr(opt, name, False) for name in ("help", "version", "collectonly", "showfixtures", "markers")):
        return None   # nothing runs: nothing to record
    from osrewind.errors import OsrewindError
    from osrewind.probes.loader import check_environment

    try:
        check_environment()
    except OsrewindError as exc:
        sys.stderr.write(f"osrewind: warning: {exc}; this session runs unrecorded\n")
        return None
    return _RecordedSession(config).run()


def pytest_configure(config: pytest.Config) -> None:
    path = os.environ.get(MARKS_ENV)
    if path and config.getoption("osrewind"):
        config.pluginmanager.register(_Marks(path), "osrewind-marks")


class _Marks:
    """In the recorded session (and each xdist worker): a mark at each phase's start and end."""

    def __init__(self, path: str) -> None:
        from osrewind.ingest import marks

        self.write = marks.write
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "")
        self.run = os.environ.get(RUN_ENV, "")
        self.export = os.environ.get(EXPORT_ENV, "")
        self.ended: dict[tuple[str, str], int] = {}

    def _mark(self, nodeid: str, when: str, ev: str, t: int, **more: object) -> None:
        self.write(self.fd, t=t, pid=os.getpid(), worker=self.worker, nodeid=nodeid, when=when, ev=ev, **more)

    def _phase(self, item: pytest.Item, when: str):
        self._mark(item.nodeid, when, "start", time.monotonic_ns())
        yield
        self.ended[(item.nodeid, when)] = time.monotonic_ns()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        yield from self._phase(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item):
        yield from self._phase(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item):
        yield from self._phase(item, "teardown")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report = outcome.get_result()
        if report.failed and self.run and not any(k == "osrewind.run" for k, _v in item.user_properties):
            item.user_properties.append(("osrewind.run", self.run))   # in --junitxml, per failing test
            if self.export:
                item.user_properties.append(("osrewind.trace", trace_path(self.export, item.nodeid)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        t = self.ended.pop((report.nodeid, report.when), None)
        if t is None:   # not run here (an xdist controller hears its workers' reports)
            return
        message = ""
        if report.failed:   # what failed, in a line: the crash's message, else the report's last line
            crash = getattr(report.longrepr, "reprcrash", None)
            message = getattr(crash, "message", "") or (str(report.longrepr).strip().splitlines() or [""])[-1]
        self._mark(report.nodeid, report.when, "end", t, outcome=report.outcome, message=message)


def _walk(nodes):
    """Every process of a tree (``Recording.tree``), parents before children, in birth order."""
    for n in nodes:
        yield n
        yield from _walk(n.children)


def trace_path(directory: str, nodeid: str) -> str:
    """Where ``--osrewind-export`` puts a failing test's run file: its node id made a file name."""
    import hashlib
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", nodeid).strip("_")[:120]
    return os.path.join(os.path.abspath(directory), f"{stem}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}.osr")


class _RecordedSession:
    """The outer pytest: runs the session under ``osrewind record``, then files its tests."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.db = config.getoption("osrewind_db") or os.environ.get("OSREWIND_DB")
        self.keep = config.getoption("osrewind_keep")
        self.hunt = config.getoption("osrewind_hunt")
        self.export = config.getoption("osrewind_export")
        xml = getattr(config.option, "xmlpath", None)
        self.junit = os.path.join(str(config.invocation_params.dir), xml) if xml else None
        self.name = f"pytest-{uuid.uuid4().hex[:8]}"

    def run(self) -> int:
        if self.hunt:
            return self.run_hunt()
        with tempfile.TemporaryDirectory(prefix="osrewind-pytest-") as tmp:
            return self.attempt(self.name, os.path.join(tmp, "marks.jsonl"), keep_passing=self.keep == "all")

    def attempt(self, name: str, marks_path: str, keep_passing: bool) -> int:
        """The session once, recorded as run ``name``, its tests filed; pytest's exit code."""
        args = [str(a) for a in self.config.invocation_params.args]
        cmd = [sys.executable, "-m", "osrewind", *(["--db", self.db] if self.db else []), "record", "--quiet",
               "--name", name, "--", sys.executable, "-m", "pytest", *args]
        env = {**os.environ, MARKS_ENV: marks_path, RUN_ENV: name}
        if self.export:
            os.makedirs(self.export, exist_ok=True)
            env[EXPORT_ENV] = os.path.abspath(self.export)
        sys.stderr.write(f"osrewind: recording this session as run '{name}' (the recorder takes a few "
                         "seconds to start)\n")
        sys.stderr.flush()
        proc = subprocess.Popen(cmd, env=env, cwd=str(self.config.invocation_params.dir))
        # Ctrl-C reaches the whole foreground group: the recorder stops when the session has
        # exited, and this process waits for it (a handler, not SIG_IGN, which the child would keep)
        old = signal.signal(signal.SIGINT, lambda *_a: None)
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, old)
        try:
            self.file_tests(name, marks_path, keep_passing)
        except Exception as exc:  # noqa: BLE001 - the session's outcome stands whatever the store says
            sys.stderr.write(f"osrewind: warning: the session was recorded as run '{name}', but its "
                             f"tests could not be filed: {exc}\n")
        return code

    def run_hunt(self) -> int:
        """``--osrewind-hunt N``: the session again and again (N times at most) until it has both passed
        and failed; one run of each is kept, the others deleted, and their first divergence shown. The
        exit code is the failing session's (0 if it never failed)."""
        from osrewind.ingest.store import Store
        from osrewind.queries.api import Recording

        kept: dict[bool, tuple[str, int]] = {}   # passed? -> (run name, exit code)
        with tempfile.TemporaryDirectory(prefix="osrewind-pytest-") as tmp:
            for i in range(self.hunt):
                name = f"{self.name}-{i + 1}"
                code = self.attempt(name, os.path.join(tmp, f"marks-{i + 1}.jsonl"), keep_passing=True)
                passed = code == 0
                sys.stderr.write(f"osrewind: hunt: session {i + 1}/{self.hunt}: exit {code}\n")
                if passed in kept or code not in (0, 1):   # a repeat, or not a test outcome (interrupted, usage)
                    with Store(self.db, purpose="pytest --osrewind-hunt", mode="write") as store:
                        store.delete_run(Recording.of(store, name).run.run_id)
                    if code not in (0, 1):
                        return code
                    continue
                kept[passed] = (name, code)
                if len(kept) == 2:
                    break
        if len(kept) < 2:
            sys.stdout.write(f"osrewind: hunt: {self.hunt} sessions, all {'passed' if True in kept else 'failed'}\n")
            return kept.get(False, ("", 0))[1]
        with Store(self.db, purpose="pytest --osrewind-hunt", mode="read") as store:
            a, b = Recording.of(store, kept[True][0]), Recording.of(store, kept[False][0])
            result = a.diff(b)
            from osrewind import render
            from osrewind.text import safe

            sys.stdout.write("osrewind: hunt: a passing and a failing session:\n")
            for line in render.diff(a.run, b.run, result):
                sys.stdout.write(safe(line) + "\n")   # recorded paths: escaped, as the CLI shows them
        return kept[False][1]

    def file_tests(self, name: str, marks_path: str, keep_passing: bool) -> None:
        from osrewind.ingest import marks
        from osrewind.ingest.store import Store
        from osrewind.queries.api import Recording

        found = marks.tests(marks.read(marks_path))
        with Store(self.db, purpose="pytest --osrewind", mode="write") as store:
            rec = Recording.of(store, name)
            run = rec.run
            ended = {p.pid: p.end_ns for p in _walk(rec.tree()) if p.end_ns}   # (the latest of a pid last)
            store.insert_arrow("tests", marks.table(run.run_id, found, lambda pid: ended.get(pid, run.end_ns)))
            failing = [t for t in found if t.outcome() in FAILING]
            if not failing and not keep_passing:
                marks.drop_trace(store, run.run_id, "trace not kept: no test failed (--osrewind-keep=failed)")
            exported = {}
            if failing and self.export:
                for t in failing:
                    exported[t.nodeid] = trace_path(self.export, t.nodeid)
                    rec.export(exported[t.nodeid], test=t.nodeid)
        if self.junit and exported:
            attach(self.junit, exported)
        self.summary(run, found, failing, exported, keep_passing)

    def summary(self, run, found: list, failing: list, exported: dict[str, str], keep_passing: bool) -> None:
        me = "osrewind"
        out = sys.stdout
        rid = run.run_id[:8]
        if not failing:
            kept = "kept" if keep_passing else "not kept (no test failed)"
            out.write(f"osrewind: run {rid} '{run.name}': {len(found)} tests recorded, trace {kept}\n")
            return
        out.write(f"osrewind: run {rid} '{run.name}': {len(failing)} of {len(found)} tests failed; to open one:\n")
        for t in failing:
            quoted = "'" + t.nodeid.replace("'", "'\\''") + "'"
            out.write(f"  {t.outcome().upper():7} {me} tui {rid} --test {quoted}\n")
            if t.nodeid in exported:
                out.write(f"          {me} tui {exported[t.nodeid]} --test {quoted}\n")
        out.flush()


def attach(junit: str, exported: dict[str, str]) -> None:
    """Each exported failing test's run file, as a ``[[ATTACHMENT|path]]`` line in its testcase's
    system-out (the convention Jenkins, GitLab and Azure read); the recorded session named the file
    in the ``osrewind.trace`` property."""
    import xml.etree.ElementTree as ET

    try:
        tree = ET.parse(junit)
    except (OSError, ET.ParseError):
        return   # the session died before writing it
    files = set(exported.values())
    for case in tree.getroot().iter("testcase"):
        trace = next((p.get("value") for p in case.iter("property") if p.get("name") == "osrewind.trace"), None)
        if trace in files:
            out = case.find("system-out")
            if out is None:
                out = ET.SubElement(case, "system-out")
            out.text = (out.text or "") + f"\n[[ATTACHMENT|{trace}]]\n"
    tree.write(junit, encoding="utf-8", xml_declaration=True)
