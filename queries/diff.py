"""Diff two runs: what one did that the other did not, most important first, and where they first
parted ways.

Processes are aligned by what they ran, never by pid: the roots pair up, then each pair's children
pair up by their argv (the last exec's), in birth order among children that ran the same thing.
Each aligned pair's facts (execs, forks, file operations with their result, connects and binds,
exits) are compared as sequences; the first fact with no counterpart, in either run and earliest
from its run's start, is the first divergence.
"""

from __future__ import annotations

import difflib
import errno as errno_mod
from dataclasses import dataclass, field

from osrewind.queries import named
from osrewind.queries.history import ProcRecord, process_tree
from osrewind.queries.runs import RunInfo

TIMING_RATIO = 2.0
TIMING_MIN_NS = 100_000_000


# A fact is a plain tuple (ts, kind, signature, a fork's child pid or 0): a diff builds a million.
Fact = tuple[int, str, str, int]
TS, KIND, SIG, CHILD = 0, 1, 2, 3


@dataclass
class Pair:
    a: ProcRecord | None
    b: ProcRecord | None
    facts_a: list[Fact] = field(default_factory=list)
    facts_b: list[Fact] = field(default_factory=list)


def _argv(p: ProcRecord) -> tuple[str, ...]:
    return tuple(p.argv) if p.argv else (p.exe,)


def align(roots_a: list[ProcRecord], roots_b: list[ProcRecord]) -> list[Pair]:
    pairs: list[Pair] = []

    def match(xs: list[ProcRecord], ys: list[ProcRecord]) -> None:
        left = list(ys)
        for x in xs:
            y = next((c for c in left if _argv(c) == _argv(x)), None)
            if y is not None:
                left.remove(y)
            pairs.append(Pair(x, y))
            if y is not None:
                match(x.children, y.children)
            else:
                _only(x.children, "a")
        for y in left:
            pairs.append(Pair(None, y))
            _only(y.children, "b")

    def _only(kids: list[ProcRecord], side: str) -> None:
        for k in kids:
            pairs.append(Pair(k, None) if side == "a" else Pair(None, k))
            _only(k.children, side)

    match(roots_a, roots_b)
    return pairs


SEP = "\x1f"  # between a signature's fields (diff_facts.sql)


def facts(store, run: RunInfo, procs: list[ProcRecord]) -> dict[int, list[Fact]]:
    """Facts of each process, keyed by id(ProcRecord), matched to (pid, lifetime). Signatures are
    built by the store; Python only groups them by process."""
    import numpy as np

    out: dict[int, list[Fact]] = {id(p): [] for p in procs}
    table = named.run_arrow(store, "diff_facts", run=run.run_id)
    if table.num_rows == 0:
        return out
    import pyarrow as pa

    ts = table.column("ts").to_numpy()
    tgid = table.column("tgid").to_numpy().astype(np.int64)
    # owner of each row: the process with that pid that started last at or before the row
    ordered = sorted(procs, key=lambda p: (p.pid, p.start_ns))
    keys = np.array([p.pid for p in ordered], dtype=np.int64)
    starts = np.array([p.start_ns for p in ordered], dtype=np.int64)
    lo = np.searchsorted(keys, tgid, side="left")
    hi = np.searchsorted(keys, tgid, side="right")
    has = hi > lo
    owner = np.where(has & (hi - lo == 1), lo, -1)
    reused = np.flatnonzero(has & (hi - lo > 1))
    if len(reused):  # a reused pid: the process of that pid alive at the row's time
        reused = reused[np.argsort(lo[reused], kind="stable")]
        cuts = np.flatnonzero(np.diff(lo[reused])) + 1
        for group in np.split(reused, cuts):
            pid_lo, pid_hi = int(lo[group[0]]), int(hi[group[0]])
            pick = np.searchsorted(starts[pid_lo:pid_hi], ts[group], side="right") - 1
            owner[group] = pid_lo + np.maximum(pick, 0)
    # rows grouped by owner, each group still in time order: one list, sliced per process
    order = np.argsort(owner, kind="stable")
    owner = owner[order]
    table = table.take(pa.array(order))
    rows = list(zip(table.column("ts").to_pylist(), named.column(table.column("kind")),
                    named.column(table.column("sig")), table.column("child").to_pylist(), strict=True))
    cuts = [0, *(np.flatnonzero(np.diff(owner)) + 1).tolist(), len(rows)]
    for begin, end in zip(cuts, cuts[1:], strict=False):
        o = int(owner[begin])
        if o >= 0:
            out[id(ordered[o])] = rows[begin:end]
    return out


def _field(x: str) -> str:
    return errno_mod.errorcode.get(int(x), x) if x.isdigit() else x


def sig_text(sig: str) -> str:
    """A signature as a person reads it: fields with spaces, errno numbers as names."""
    parts = sig.split(SEP)
    if parts[0] in ("fork", "exec", "exit"):
        return " ".join(parts)
    return " ".join(parts[:-1] + [_field(parts[-1])])


def describe(f: Fact, births: dict[int, list[ProcRecord]] | None = None) -> str:
    """One fact as a person reads it; a fork names what its child became (``fork -> 20913 cat
    settings.conf``) when ``births`` (the run's processes by pid) has it."""
    p = f[SIG].split(SEP)
    if p[0] == "fork" and births and f[CHILD] in births:
        child = min(births[f[CHILD]], key=lambda q: abs(q.start_ns - f[TS]))  # that pid born then
        return f"fork -> {child.pid} " + (" ".join(child.argv) if child.argv else child.exe or "?")
    if p[0] == "open":
        return f"open {p[2]} for {p[1]}: {_field(p[3])}"
    if p[0] == "exit":
        return f"exit_group({p[1]})"
    if p[0] in ("fork", "exec"):
        return " ".join(p)
    if p[0] == "rename":
        return f"rename {p[1]} -> {p[2]}: {_field(p[3])}"
    return f"{p[0]} {p[1]}: {_field(p[-1])}"


def diff(store, run_a: RunInfo, run_b: RunInfo) -> dict:
    roots_a, roots_b = process_tree(store, run_a), process_tree(store, run_b)

    def flat(roots: list[ProcRecord]) -> list[ProcRecord]:
        out, stack = [], list(reversed(roots))
        while stack:
            p = stack.pop()
            out.append(p)
            stack.extend(reversed(p.children))
        return out

    all_a, all_b = flat(roots_a), flat(roots_b)
    births_a: dict[int, list[ProcRecord]] = {}
    births_b: dict[int, list[ProcRecord]] = {}
    for procs, births in ((all_a, births_a), (all_b, births_b)):
        for q in procs:
            births.setdefault(q.pid, []).append(q)
    fa, fb = facts(store, run_a, all_a), facts(store, run_b, all_b)
    pairs = align(roots_a, roots_b)
    items: list[dict] = []
    candidates: list[tuple[int, dict]] = []

    def who(p: ProcRecord) -> dict:
        return {"pid": p.pid, "argv": p.argv, "start_ns": p.start_ns}

    for pair in pairs:
        a, b = pair.a, pair.b
        if a is None or b is None:
            only = a or b
            side = "a" if a else "b"
            run = run_a if a else run_b
            items.append({"kind": "process only in " + side, "process": who(only),
                          "exit_code": only.exit_code, "rank": 1})
            first = (fa if a else fb)[id(only)]
            ts = first[0][TS] if first else only.start_ns
            candidates.append((ts - run.start_ns, {"run": side, "process": who(only),
                                                   "fact": describe(first[0], births_a if a else births_b)
                                                   if first else "birth"}))
            continue
        if a.exit_code != b.exit_code:
            items.append({"kind": "exit code", "a": who(a) | {"exit_code": a.exit_code},
                          "b": who(b) | {"exit_code": b.exit_code}, "rank": 2})
        da = (a.end_ns - a.start_ns) if a.end_ns else 0
        db = (b.end_ns - b.start_ns) if b.end_ns else 0
        if da and db and max(da, db) / max(1, min(da, db)) >= TIMING_RATIO and abs(da - db) >= TIMING_MIN_NS:
            items.append({"kind": "timing", "a": who(a) | {"duration_ns": da}, "b": who(b) | {"duration_ns": db},
                          "rank": 6})
        sa, sb = [f[SIG] for f in fa[id(a)]], [f[SIG] for f in fb[id(b)]]
        if sa != sb:
            ops = [op for op in difflib.SequenceMatcher(a=sa, b=sb, autojunk=False).get_opcodes() if op[0] != "equal"]
            tag, i1, _i2, j1, _j2 = ops[0]
            la, lb = fa[id(a)], fb[id(b)]
            fact_a = la[i1] if i1 < len(la) and tag != "insert" else None
            fact_b = lb[j1] if j1 < len(lb) and tag != "delete" else None
            offs = [f[TS] - r.start_ns for f, r in ((fact_a, run_a), (fact_b, run_b)) if f is not None]
            candidates.append((min(offs), {"a": describe(fact_a, births_a) if fact_a else None,
                                           "b": describe(fact_b, births_b) if fact_b else None,
                                           "a_offset_ns": fact_a[TS] - run_a.start_ns if fact_a else None,
                                           "b_offset_ns": fact_b[TS] - run_b.start_ns if fact_b else None,
                                           "process": {"a": who(a), "b": who(b)}}))

    # within aligned processes (a process only in one run is one difference, not each of its facts)
    failed = lambda f: not f[SIG].endswith(SEP + "ok") and f[KIND] not in ("fork", "exec", "exit_call")  # noqa: E731
    checks = (("failed only in", failed, 3),
              ("file operation only in", lambda f: f[KIND] in ("open", "unlink", "rename", "mkdir")
               and f[SIG].endswith(SEP + "ok"), 4),
              ("endpoint only in", lambda f: f[KIND] in ("connect", "bind"), 5))
    seen: set[tuple[str, str, str]] = set()
    for pair in pairs:
        if pair.a is None or pair.b is None:
            continue
        for name, pred, rank in checks:
            in_a = {f[SIG] for f in fa[id(pair.a)] if pred(f)}
            in_b = {f[SIG] for f in fb[id(pair.b)] if pred(f)}
            for side, only, p in (("a", in_a - in_b, pair.a), ("b", in_b - in_a, pair.b)):
                for sig in sorted(only):
                    if (name, side, sig) not in seen:
                        seen.add((name, side, sig))
                        items.append({"kind": f"{name} {side}", "what": sig_text(sig), "process": who(p),
                                      "rank": rank})
    items.sort(key=lambda i: i["rank"])
    first = min(candidates, key=lambda c: c[0])[1] if candidates else None
    return {"a": run_a.run_id, "b": run_b.run_id, "first_divergence": first,
            "differences": [{k: v for k, v in i.items() if k != "rank"} for i in items],
            "aligned": sum(1 for p in pairs if p.a and p.b), "only_a": sum(1 for p in pairs if not p.b),
            "only_b": sum(1 for p in pairs if not p.a)}
