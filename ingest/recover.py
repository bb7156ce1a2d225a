"""Ingest what a dead recorder left in its spool (see ``osrewind.ingest.spool``).

A recorder killed with SIGKILL (or a machine that lost power) leaves its run's row saying
``recording`` and a spool holding every frame its writer had not inserted yet. :func:`recover_all`
finds such spools (their lock is free), and for each: deletes the rows the dead writer may have
inserted after its last checkpoint, ingests the remaining frames as the writer would have, marks the
run ``recovered`` (with its counts, its end at its last fact and a detail saying how much came from
the spool) and removes the spool. The CLI calls it whenever it opens a store it may write, and
``osrewind recover`` does it on demand.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from osrewind.errors import StoreError
from osrewind.ingest import spool
from osrewind.ingest.recorder import RESERVE_NAME
from osrewind.ingest.redact import Redactor
from osrewind.ingest.spool import Orphan, Spool
from osrewind.ingest.writer import EventWriter

# the run row of a recovered run: counts and end from its facts, every other column as it was
_FINISH_SQL = """
INSERT INTO runs
SELECT * REPLACE (
    {end_ns:Int64} AS end_ns, {events:UInt64} AS events, {lost:UInt64} AS lost,
    if({root_pid:UInt32} = 0, root_pid, {root_pid:UInt32}) AS root_pid,
    'recovered' AS status, {detail:String} AS status_detail, {now:Int64} AS updated_ns)
FROM (SELECT * FROM runs FINAL WHERE run_id = {run:UUID})
"""
_TOTALS_SQL = """
SELECT countIf(kind != 'lost'), sumIf(a0, kind = 'lost'), max(ts)
FROM events WHERE run_id = {run:UUID}
"""


@dataclass
class Recovered:
    run_id: str
    name: str
    events: int          # facts of the run now in the store
    from_spool: int      # of which ingested from the spool just now
    lost: int
    spool_bytes: int

    def to_json(self) -> dict:
        return dict(self.__dict__)


def pending(store) -> list[Orphan]:
    """Spools of this store whose recorder is gone."""
    return spool.orphans(spool.spool_root(store.location, getattr(store, "embedded", False)))


def may_recover(store) -> bool:
    """This process may write the store (an embedded store opened with its lock, not a read-only view;
    a server store)."""
    if not getattr(store, "embedded", False):
        return True
    return not getattr(store, "read_only_view", True)


def recover_all(store, progress: Callable[[str], None] | None = None) -> list[Recovered]:
    """Recover every orphaned spool of ``store`` (see the module docstring)."""
    out = []
    for o in pending(store):
        r = recover(store, o, progress)
        if r is not None:
            out.append(r)
    return out


def recover(store, orphan: Orphan, progress: Callable[[str], None] | None = None) -> Recovered | None:
    """Ingest one orphaned spool; None if its recorder came back to life (its lock is held)."""
    say = progress or (lambda msg: None)
    lock = orphan.lock()
    if lock is None:
        return None
    try:
        run_id = uuid.UUID(orphan.meta.get("run_id") or orphan.run_id)
        name = str(orphan.meta.get("name", ""))
        say(f"recovering run {str(run_id)[:8]} ({name}) from its spool ({orphan.bytes / 1e6:.1f} MB)")
        store.ensure_schema()
        cp = spool.load_checkpoint(orphan.path)
        seq = int(cp["seq"]) if cp else 0
        before = int(cp["written"]) if cp else 0
        # rows the dead writer inserted after its last checkpoint come again from the spool
        store.delete_events_from(str(run_id), seq)
        writer = EventWriter(store, run_id, Spool.reopen(orphan.path), thread=False,
                             redact=Redactor(orphan.meta.get("redact", [])))
        writer.recovering = True
        writer.resume(cp)
        writer.replay(spool.frames(orphan.path, cp["pos"] if cp else None))
        events, lost, last = store.query(_TOTALS_SQL, {"run": str(run_id)})[0]
        start = int(orphan.meta.get("start_ns", 0))
        end = max(int(last or 0), start)
        detail = (f"recorder stopped at +{(end - start) / 1e9:.1f}s; "
                  f"{writer.written - before} events recovered from its spool")
        store.client.command(_FINISH_SQL, parameters={
            "run": str(run_id), "end_ns": end, "events": int(events), "lost": int(lost or 0),
            "root_pid": int(orphan.meta.get("root_pid", 0)),
            "detail": detail, "now": time.time_ns()})
        Spool.reopen(orphan.path).remove()
        if getattr(store, "embedded", False):   # the dead recorder's reserve (we hold the store's lock)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(os.path.abspath(store.location), RESERVE_NAME))
        return Recovered(str(run_id), name, int(events), writer.written - before, int(lost or 0), orphan.bytes)
    except spool.SpoolError as exc:
        raise StoreError(f"cannot recover run {orphan.run_id[:8]} from {orphan.path}: {exc.strerror}") from exc
    finally:
        os.close(lock)
