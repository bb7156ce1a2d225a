"""Feeding the rewind engine from a store: the /proc baseline a run started from, and stored facts
(``state_events_after`` rows) applied in order. Shared by rewinding (``queries/state.py``) and
indexing (``queries/keyframes.py``)."""

from __future__ import annotations

from osrewind.queries import named
from osrewind.queries.engine import Fact, Machine


def baseline_machine(store, run_id: str) -> Machine:
    """The state when recording started: the /proc baseline."""
    m = Machine()
    for row in named.run(store, "snapshot_procs", run=run_id):
        pid, ppid, start_ns, uid, comm, exe, argv, cwd, threads, _ts = row[:10]
        m.add_snapshot_proc(int(pid), int(ppid), int(start_ns), comm, exe, list(argv), cwd, int(threads),
                            row[10] if len(row) > 10 else "", int(uid))  # the cgroup: none in older stores
    for pid, fd, target, kind, flags in named.run(store, "snapshot_fds", run=run_id):
        m.add_snapshot_fd(int(pid), int(fd), target, kind, int(flags))
    m.set_io_numbers()
    return m


def syscall_params(m: Machine) -> dict[str, list[int]]:
    """``state_events_after``'s syscall numbers: the calls that move bytes, the calls that set a uid."""
    return {"io_nrs": sorted(m.sends | m.recvs), "uid_nrs": sorted(m.uid_calls)}


def apply_rows(m: Machine, cols: dict[str, list], start: int, end: int) -> None:
    """Feed rows [start, end) of a state_events_after result (as column lists: ``named.columns``, whose
    text is ``str`` already) to the machine."""
    feed, make = m.feed, tuple.__new__   # a Fact straight from its fields' row, in Fact's order
    for row in zip(*(cols[name][start:end] for name in _FACT_COLUMNS), strict=True):
        feed(make(Fact, row))


# ``state_events_after``'s column of each of Fact's fields, in Fact's order
_FACT_COLUMNS = tuple("kind_code" if f == "kind" else f for f in Fact._fields)
