"""A run's whole history, from its index: the process tree over time, and where a file came from.

Both read the derived tables written by indexing (``keyframes.build``: after every recording, or
``osrewind reindex``): ``processes`` (birth, parent, execs, exit) and ``file_access`` (every open,
rename and delete by resolved path), the run's current index build only (``keyframes.derived_sql``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from osrewind.errors import UsageError
from osrewind.queries import keyframes
from osrewind.queries.runs import RunInfo

# Inputs that every program reads: left out of lineage unless asked for.
NOISE = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/share/locale/", "/usr/lib/locale/", "/proc/",
         "/sys/", "/dev/", "/etc/ld.so.cache", "/etc/localtime", "/usr/share/zoneinfo/", "/etc/nsswitch.conf",
         "/etc/passwd", "/etc/group", "/etc/locale.alias")  # the last: /usr/share/locale/locale.alias, resolved


@dataclass
class ProcRecord:
    pid: int
    start_ns: int
    ppid: int
    parent_start_ns: int
    end_ns: int
    exit_code: int | None
    from_snapshot: bool
    execs: list[tuple[int, str, list[str]]]
    children: list[ProcRecord] = field(default_factory=list)
    cgroup: str = ""                # its cgroup v2 path, the last it was in

    @property
    def argv(self) -> list[str]:
        return self.execs[-1][2] if self.execs else []

    @property
    def exe(self) -> str:
        return self.execs[-1][1] if self.execs else ""

    def to_json(self, tree: bool = False) -> dict:
        d = {"pid": self.pid, "start_ns": self.start_ns, "ppid": self.ppid, "end_ns": self.end_ns or None,
             "exit_code": self.exit_code, "from_snapshot": self.from_snapshot, "argv": self.argv, "exe": self.exe,
             "execs": [{"ts": ts, "exe": exe, "argv": argv} for ts, exe, argv in self.execs], "cgroup": self.cgroup}
        if tree:
            d["children"] = [c.to_json(True) for c in self.children]
        return d


def _require_index(store, run: RunInfo) -> None:
    """The run's history was built: it has process rows, or a rebuild recorded that it had none (a
    run that died before its first fact)."""
    if keyframes.has_table(store) and (
            store.query("SELECT count() FROM processes WHERE run_id = {r:UUID}", {"r": run.run_id})[0][0]
            or keyframes.current_gen(store, run.run_id)):
        return
    raise UsageError(f"run {run.run_id[:8]} has no index yet: run 'osrewind reindex {run.run_id[:8]}'")


def processes(store, run: RunInfo) -> dict[tuple[int, int], ProcRecord]:
    _require_index(store, run)
    out = {}
    rows = store.query(keyframes.derived_sql(store, "run_processes"), {"run": run.run_id})
    for row in rows:
        pid, start, ppid, pstart, end, code, snap, ets, eexe, eargv = row[:10]
        out[(int(pid), int(start))] = ProcRecord(int(pid), int(start), int(ppid), int(pstart), int(end),
                                                 None if code is None else int(code), bool(snap),
                                                 [(int(t), x, list(a)) for t, x, a in zip(ets, eexe, eargv, strict=True)],
                                                 cgroup=row[10] if len(row) > 10 else "")
    return out


def process_tree(store, run: RunInfo) -> list[ProcRecord]:
    """Roots (processes whose parent is not in the run) with their children, in birth order."""
    procs = processes(store, run)
    by_pid_start = procs
    roots = []
    baseline: dict[int, ProcRecord] = {}  # the first baseline process of each pid
    for (pid, _s), q in procs.items():
        if q.from_snapshot:
            baseline.setdefault(pid, q)
    for p in sorted(procs.values(), key=lambda p: (p.start_ns, p.pid)):
        parent = by_pid_start.get((p.ppid, p.parent_start_ns))
        if parent is None and p.parent_start_ns == 0:  # a baseline process: its parent by pid
            parent = baseline.get(p.ppid)
        if parent is not None and parent is not p:
            parent.children.append(p)
        else:
            roots.append(p)
    return roots


def exec_chain(procs: dict[tuple[int, int], ProcRecord], pid: int, start: int) -> list[dict]:
    """The process and its ancestors up to the recorded root, each with what it ran."""
    chain = []
    key = (pid, start)
    seen = set()
    while key in procs and key not in seen:
        seen.add(key)
        p = procs[key]
        chain.append({"pid": p.pid, "start_ns": p.start_ns, "argv": p.argv, "exe": p.exe,
                      "execs": [argv for _t, _x, argv in p.execs]})
        key = (p.ppid, p.parent_start_ns)
        if p.parent_start_ns == 0:
            key = next((k for k in procs if k[0] == p.ppid), ("none", 0))
    return chain


def lineage(store, run: RunInfo, path: str, depth: int = 1, all_inputs: bool = False,
            before_ns: int | None = None, _procs=None, _seen=None) -> dict:
    """Who created, wrote, renamed or deleted ``path`` (up to ``before_ns``), in order; for each, its
    exec chain and the files it had read by then; with ``depth`` > 1, the same for those files.

    A file renamed into place is one file: its history under the earlier name comes first (those
    events say ``as``: the name it had then), so a file written under a temporary name and renamed
    over the real one shows its writers, not just the rename."""
    procs = _procs if _procs is not None else processes(store, run)
    seen = _seen if _seen is not None else set()
    seen.add(path)
    out = {"path": path, "events": []}
    for ts, pid, start, op, p1, p2 in store.query(keyframes.derived_sql(store, "file_history"),
                                                  {"run": run.run_id, "path": path}):
        if before_ns is not None and ts > before_ns:
            break
        if op == "read":
            continue
        if op == "write" and any(e["pid"] == pid and e["op"] == "wrote" for e in out["events"]):
            continue
        ev = {"ts": int(ts), "offset_ns": int(ts) - run.start_ns, "pid": int(pid), "start_ns": int(start),
              "op": {"write": "opened for writing", "wrote": "wrote"}.get(op, op),
              "chain": exec_chain(procs, int(pid), int(start))}
        if op == "rename":
            if p1 == path:
                ev["op"], ev["from"] = "renamed here", p2
                inputs = []
                if p2 not in seen:  # the same file under its earlier name
                    earlier = lineage(store, run, p2, depth, all_inputs, int(ts), procs, seen)
                    for e in earlier["events"]:
                        if not (e["op"] == "renamed away" and e.get("to") == path and e["ts"] == int(ts)):
                            e.setdefault("as", p2)
                            out["events"].append(e)
            else:
                ev["op"], ev["to"] = "renamed away", p1
                inputs = []
        elif op == "delete":
            ev["op"], inputs = "deleted", []
        else:
            until = procs[(int(pid), int(start))].end_ns if (int(pid), int(start)) in procs else 0
            reads = store.query(keyframes.derived_sql(store, "process_reads"),
                                {"run": run.run_id, "pid": int(pid), "start": int(start), "until": until or 2**63 - 1})
            inputs = [r for (r,) in reads if r != path and (all_inputs or not r.startswith(NOISE))]
        ev["inputs"] = inputs
        if depth > 1:
            ev["sources"] = [lineage(store, run, i, depth - 1, all_inputs, int(ts), procs, seen)
                             for i in inputs if i not in seen]
        out["events"].append(ev)
    return out
