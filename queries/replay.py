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
    ts, kind, tgid, tid, ret = cols["ts"], cols["kind_code"], cols["tgid"], cols["tid"], cols["ret"]
    a0, a1, a2, a3, a4, a5 = cols["a0"], cols["a1"], cols["a2"], cols["a3"], cols["a4"], cols["a5"]
    nr, cpu = cols["nr"], cols["cpu"]
    comm, path, path2, argv = cols["comm"], cols["path"], cols["path2"], cols["argv"]
    feed = m.feed
    for i in range(start, end):
        feed(Fact(ts[i], kind[i], tgid[i], tid[i], ret[i], a0[i], a1[i], a2[i], a3[i], comm[i], path[i], path2[i],
                  argv[i], cpu[i], a5[i], nr[i], a4[i]))
