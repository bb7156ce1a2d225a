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
    status_detail: str = ""         # why it ended so, when it failed: 'disk full (ENOSPC) at +12.3s'
    identity: str = ""              # files identified by what the kernel opened ('kernel', through its
                                    # BTF) or by the paths passed ('path'); '' in runs made before

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


# The run row of a run whose recorder died, completed once from ``run_totals`` (its counts, its end at
# its last fact, status ``aborted``); every other column is copied as it is. A write, so not a named
# (reading) query.
FINALISE_SQL = """
INSERT INTO runs
SELECT * REPLACE (
    {end_ns:Int64} AS end_ns, {events:UInt64} AS events, {lost:UInt64} AS lost,
    'aborted' AS status, {now:Int64} AS updated_ns)
FROM (SELECT * FROM runs FINAL WHERE run_id = {run:UUID} AND status = 'recording')
"""


def list_runs(store, limit: int = 1000, host: str = "") -> list[RunInfo]:
    """The runs, newest first, from the runs table alone (O(runs)): a finished run's row holds its
    counts and end. Only a run whose row was never finished (its recorder died, or it is being
    recorded through a server) is counted from its own events; on a store this process can write
    and no recorder can be writing, that count is written back once (see :func:`finalise`).
    ``host``: the runs recorded on that host only."""
    if not store.has_schema():
        return []
    out = []
    unfinished = []
    for r in named.run(store, "runs_list", limit=2**32 - 1 if host else limit):   # one host's: filtered below
        (run_id, name, host_, kernel, command, cwd, scope, root_pid, start_ns, end_ns, wall_offset, events, lost,
         exit_code, status) = r[:15]
        status_detail = r[15] if len(r) > 15 else ""   # none in a store made before the column
        identity = r[16] if len(r) > 16 else ""
        if host and host_ != host:
            continue
        if len(out) >= limit:
            break
        info = RunInfo(str(run_id), name, host_, kernel, list(command), cwd, scope, int(root_pid), int(start_ns),
                       int(end_ns), int(wall_offset), int(events), int(lost),
                       None if exit_code is None else int(exit_code), status, status_detail, identity)
        if status == "recording" or info.end_ns < info.start_ns:
            unfinished.append(info)
        out.append(info)
    if unfinished:
        _complete(store, unfinished)
    return out


def _complete(store, runs: list[RunInfo]) -> None:
    """Counts and end of runs whose row the recorder never finished, from their events only."""
    totals = {rid: (int(n), int(lost), int(last or 0))
              for rid, n, lost, last in named.run(store, "run_totals", runs=[r.run_id for r in runs])}
    for info in runs:
        n, lost, last = totals.get(info.run_id, (0, 0, 0))
        info.events = max(info.events, n)
        info.lost = max(info.lost, lost)
        if info.status == "recording" and _no_recorder_alive(store, info.run_id):
            info.status = "aborted"
        if info.end_ns < info.start_ns:
            # not written yet (or never: its recorder died): the run ends, so far, at its last fact
            info.end_ns = max(info.start_ns, last)
        if info.status == "aborted" and _may_write(store):
            finalise(store, info)


def _no_recorder_alive(store, run_id: str) -> bool:
    """No recorder is writing run ``run_id``: the embedded store's lock is ours, or it is held by a
    recording of another run (read while recording: ``Store.live_snapshot``)."""
    if getattr(store, "live_snapshot", False):
        return getattr(store, "recording_run", "") not in ("", run_id)
    return bool(getattr(store, "embedded", False))


def _may_write(store) -> bool:
    """A run row may be completed here: the embedded store opened for writing (its lock held, so no
    other process records into it), and this process is not recording (its own run's row says
    ``recording`` until its recorder finishes it; ``Recorder`` names its run in the purpose)."""
    return (getattr(store, "embedded", False) and getattr(store, "mode", "read") == "write"
            and not getattr(store, "read_only_view", True)
            and not str(getattr(store, "purpose", "")).startswith("recording"))


def finalise(store, info: RunInfo) -> None:
    """Write the completed row of a run whose recorder died (counts, end, ``aborted``), so later
    lookups read it from the runs table alone. Best effort: a store that refuses the write is
    counted again next time."""
    import time

    try:
        store.client.command(FINALISE_SQL, parameters={
            "run": info.run_id, "end_ns": info.end_ns, "events": info.events, "lost": info.lost,
            "now": time.time_ns()})
    except Exception:  # noqa: BLE001, S110 - the answer stands; only the saving of it failed
        pass


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
