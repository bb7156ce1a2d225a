"""The tests of a recorded pytest session (the ``tests`` table, written by ``pytest --osrewind``) and
instants named by them: ``test:NODEID``, ``test:NODEID:start``, ``test:NODEID:end``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from osrewind.errors import UsageError
from osrewind.queries import named
from osrewind.queries.runs import RunInfo

PREFIX = "test:"


@dataclass
class TestCase:
    nodeid: str
    outcome: str
    pid: int
    worker: str
    start_ns: int
    end_ns: int
    phases: dict[str, tuple[int, int]]   # setup / call / teardown -> (start, end), the ones that ran
    message: str

    @property
    def failed(self) -> bool:
        return self.outcome in ("failed", "error", "died")

    def to_json(self, run: RunInfo | None = None) -> dict:
        d = asdict(self)
        d["duration_s"] = (self.end_ns - self.start_ns) / 1e9
        if run is not None:
            d["offset_ns"] = self.start_ns - run.start_ns
        return d


def tests(store, run: RunInfo) -> list[TestCase]:
    if "tests" not in store.table_names():   # a store no pytest session was recorded into
        return []
    out = []
    for r in named.run(store, "run_tests", run=run.run_id):
        phases = {w: (int(r[6 + 2 * i]), int(r[7 + 2 * i])) for i, w in enumerate(("setup", "call", "teardown"))
                  if r[6 + 2 * i]}
        out.append(TestCase(r[0], r[1], int(r[2]), r[3], int(r[4]), int(r[5]), phases, r[12]))
    return out


def find(found: list[TestCase], nodeid: str) -> TestCase:
    """The test ``nodeid`` names: exactly, else the one whose node id ends with it (``test_y`` or
    ``test_x.py::test_y``); more than one match or none is a one-line error."""
    exact = [t for t in found if t.nodeid == nodeid]
    if exact:
        return exact[-1]
    tail = [t for t in found if t.nodeid.endswith(nodeid) and t.nodeid[: -len(nodeid)][-1:] in ("", ":", "/")]
    if len(tail) == 1:
        return tail[0]
    if not found:
        raise UsageError("this run has no tests (record a pytest session with 'pytest --osrewind')")
    if tail:
        raise UsageError(f"test {nodeid!r} matches {len(tail)} tests: {', '.join(t.nodeid for t in tail[:3])} ...")
    raise UsageError(f"no test {nodeid!r} in this run (see 'osrewind tests RUN')")


def split(spec: str) -> tuple[str, str]:
    """``test:NODEID[:start|:end]`` -> (NODEID, 'start' | 'end'); a bare test means its start."""
    body = spec[len(PREFIX):]
    for edge in ("start", "end"):
        if body.endswith(":" + edge):
            return body[: -len(edge) - 1], edge
    return body, "start"


def instant(t: TestCase, edge: str) -> int:
    """A test's start, or its end (a test that died: the last instant its process was alive)."""
    if edge == "start":
        return t.start_ns
    return t.end_ns - 1 if t.outcome == "died" else t.end_ns
