"""Test marks: the phases of each test of a recorded pytest session, as the ``tests`` table keeps them.

The pytest plugin (``osrewind.pytest_plugin``) appends one JSON line per phase start and end to a
marks file outside the test process, with ``os.write`` on an ``O_APPEND`` fd (whole lines, well under
PIPE_BUF: processes of one session, xdist workers included, never interleave): a test process that
dies hard (``os._exit``, SIGKILL, pytest-timeout) leaves every mark written before. Times are
CLOCK_MONOTONIC ns, the recording's clock. A line is
``{"t": ns, "pid": N, "worker": "gw0" or "", "nodeid": "...", "when": "setup|call|teardown",
"ev": "start|end", "outcome": "passed|failed|skipped" (end), "message": "..." (end, failed)}``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

PHASES = ("setup", "call", "teardown")
MESSAGE_MAX = 2000


def write(fd: int, **mark: object) -> None:
    """One mark, as one ``write`` of one line."""
    os.write(fd, (json.dumps(mark, separators=(",", ":")) + "\n").encode())


def read(path: str | Path) -> list[dict]:
    """The marks of a file; a torn last line (the writer killed mid-write) is left out."""
    out = []
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    for line in data.splitlines():
        try:
            m = json.loads(line)
        except ValueError:
            continue
        if isinstance(m, dict) and isinstance(m.get("nodeid"), str) and m.get("when") in PHASES:
            out.append(m)
    return out


@dataclass
class Test:
    nodeid: str
    pid: int
    worker: str
    starts: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, str] = field(default_factory=dict)
    message: str = ""

    @property
    def died(self) -> bool:
        return any(w not in self.ends for w in self.starts)

    def outcome(self) -> str:
        if self.died:
            return "died"
        if self.outcomes.get("call") == "failed":
            return "failed"
        if "failed" in self.outcomes.values():
            return "error"   # in setup or teardown, as pytest says
        if "skipped" in self.outcomes.values():
            return "skipped"
        return "passed"


def tests(marks: list[dict]) -> list[Test]:
    """Each test's phases, in the order the tests started (a test run again: its later run)."""
    by: dict[tuple[str, str], Test] = {}
    for m in sorted(marks, key=lambda m: int(m.get("t", 0))):
        key = (str(m.get("worker", "")), m["nodeid"])
        t = by.get(key)
        if t is None or (m["ev"] == "start" and m["when"] == "setup" and "setup" in t.starts):
            by.pop(key, None)
            t = by[key] = Test(m["nodeid"], int(m.get("pid", 0)), key[0])
        if m["ev"] == "start":
            t.starts[m["when"]] = int(m["t"])
            t.pid = int(m.get("pid", t.pid))
        else:
            t.ends[m["when"]] = int(m["t"])
            t.outcomes[m["when"]] = str(m.get("outcome", ""))
            if m.get("message") and not t.message:
                t.message = str(m["message"])[:MESSAGE_MAX]
    return sorted(by.values(), key=lambda t: min(t.starts.values(), default=0))


def table(run_id: str | uuid.UUID, found: list[Test], died_at: Callable[[int], int]) -> pa.Table:
    """The ``tests`` rows of a run. ``died_at(pid)``: when a process that died inside a test ended
    (from the recording)."""
    rows: dict[str, list] = {k: [] for k in ("nodeid", "outcome", "pid", "worker", "start_ns", "end_ns",
                                             "message")}
    phases: dict[str, list[int]] = {f"{w}_{e}_ns": [] for w in PHASES for e in ("start", "end")}
    for t in found:
        outcome = t.outcome()
        start = min(t.starts.values(), default=0)
        end = died_at(t.pid) if outcome == "died" else max(t.ends.values(), default=start)
        for k, v in (("nodeid", t.nodeid), ("outcome", outcome), ("pid", t.pid), ("worker", t.worker),
                     ("start_ns", start), ("end_ns", max(end, start)), ("message", t.message)):
            rows[k].append(v)
        for w in PHASES:
            phases[f"{w}_start_ns"].append(t.starts.get(w, 0))
            phases[f"{w}_end_ns"].append(t.ends.get(w, 0) or (max(end, start) if w in t.starts else 0))
    n = len(found)
    return pa.table({
        "run_id": pa.array([str(run_id)] * n),
        "nodeid": pa.array(rows["nodeid"], type=pa.string()),
        "outcome": pa.array(rows["outcome"], type=pa.string()),
        "pid": pa.array(rows["pid"], type=pa.uint32()),
        "worker": pa.array(rows["worker"], type=pa.string()),
        "start_ns": pa.array(rows["start_ns"], type=pa.int64()),
        "end_ns": pa.array(rows["end_ns"], type=pa.int64()),
        **{k: pa.array(v, type=pa.int64()) for k, v in phases.items()},
        "message": pa.array(rows["message"], type=pa.string()),
    })


# ------------------------------------------------------------------ filing a session's tests

# the run row, every column as it was but the note of what happened to it
_NOTE_SQL = """
INSERT INTO runs
SELECT * REPLACE ({detail:String} AS status_detail, {now:Int64} AS updated_ns)
FROM (SELECT * FROM runs FINAL WHERE run_id = {run:UUID})
"""


def drop_trace(store, run_id: str, why: str) -> None:
    """Keep only a run's summary (its run row, saying ``why``, and its tests): a session with no
    failing test under ``--osrewind-keep=failed``."""
    store.delete_run(run_id, keep=("runs", "tests"))
    store.client.command(_NOTE_SQL, parameters={"run": run_id, "detail": why, "now": time.time_ns()})
