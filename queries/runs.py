"""Runs: listing them, and turning what a user types (id, id prefix, name, ``last``) into one run."""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass

from osrewind.errors import UsageError
from osrewind.queries import named


@dataclass
class RunInfo:
    run_id: str
    name: str
    host: str
    kernel: str
    command: list[str]
    cwd: str
    scope: str
    root_pid: int
    start_ns: int
    end_ns: int
    wall_offset_ns: int
    events: int
    lost: int
    exit_code: int | None
    status: str

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)

    @property
    def start_wall_ns(self) -> int:
        return self.start_ns + self.wall_offset_ns

    def to_json(self) -> dict:
        d = asdict(self)
        d["duration_s"] = self.duration_ns / 1e9
        d["start_wall_ns"] = self.start_wall_ns
        return d


def list_runs(store, limit: int = 1000) -> list[RunInfo]:
    if not store.has_schema():
        return []
    rows = named.run(store, "runs_list", limit=limit)
    out = []
    for r in rows:
        (run_id, name, host, kernel, command, cwd, scope, root_pid, start_ns, end_ns, wall_offset, events, lost,
         exit_code, status) = r
        if status == "recording" and getattr(store, "embedded", False):
            # we hold the embedded store's lock, so no recorder is writing it: that one died
            status = "aborted"
        if status != "recording" and end_ns < start_ns:
            # a recorder that died never wrote its end: the run ends at its last stored fact
            last = store.query("SELECT max(ts) FROM events WHERE run_id = {r:UUID}", {"r": str(run_id)})
            end_ns = max(start_ns, int(last[0][0] or 0)) if last else start_ns
        out.append(RunInfo(str(run_id), name, host, kernel, list(command), cwd, scope, int(root_pid), int(start_ns),
                           int(end_ns), int(wall_offset), int(events), int(lost),
                           None if exit_code is None else int(exit_code), status))
    return out


_HEX = re.compile(r"^[0-9a-f-]+$")


def resolve_run(store, spec: str) -> RunInfo:
    """A run id, a unique id prefix (4+ hex digits), a run name (newest of that name), or ``last``."""
    spec = spec.strip()
    if not spec:
        raise UsageError("empty run: give a run id, id prefix, name or 'last' (see 'osrewind runs')")
    runs = list_runs(store)
    if not runs:
        raise UsageError(f"no runs recorded in store {store.location}: record one with 'osrewind record -- CMD'")
    if spec == "last":
        return runs[0]
    low = spec.lower()
    try:
        full = str(uuid.UUID(low))
    except ValueError:
        full = None
    if full:
        for r in runs:
            if r.run_id == full:
                return r
    if len(low) >= 4 and _HEX.match(low):
        hits = [r for r in runs if r.run_id.startswith(low) or r.run_id.replace("-", "").startswith(low.replace("-", ""))]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UsageError(f"run prefix {spec!r} is ambiguous: {', '.join(h.run_id[:12] for h in hits[:5])}")
    by_name = [r for r in runs if r.name == spec]
    if by_name:
        return by_name[0]
    raise UsageError(f"unknown run {spec!r}: see 'osrewind runs' for ids and names")
