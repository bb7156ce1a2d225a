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
KINDS = ("exec", "fork", "open", "unlink", "rename", "mkdir", "chdir", "exec_fail", "connect", "bind", "exit_call")
WRITE = 0o1 | 0o2 | 0o100 | 0o1000


@dataclass
class Fact:
    ts: int
    pid: int
    kind: str
    sig: str            # what it is, without pids, fds or times
    text: str


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


def _err(ret: int) -> str:
    return "ok" if ret >= 0 else errno_mod.errorcode.get(-ret, str(-ret))


def facts(store, run: RunInfo, procs: list[ProcRecord]) -> dict[int, list[Fact]]:
    """Facts of each process, keyed by id(ProcRecord), matched to (pid, lifetime)."""
    by_pid: dict[int, list[ProcRecord]] = {}
    for p in procs:
        by_pid.setdefault(p.pid, []).append(p)
    out: dict[int, list[Fact]] = {id(p): [] for p in procs}
    rows = named.run(store, "events_filtered", run=run.run_id, t_from=run.start_ns, t_to=max(run.end_ns, run.start_ns),
                     pids=[], kinds=list(KINDS), path_re="", failed=0, nrs=[], backwards=0, c_ts=run.start_ns - 1,
                     c_seq=2**64 - 1, lim=2_000_000)
    for ts, _seq, kind, tgid, _tid, ret, a0, a1, a2, _a3, _a4, _a5, _dur, _nr, _cpu, _comm, path, path2, _argv in rows:
        owners = [p for p in by_pid.get(int(tgid), []) if p.start_ns <= ts and (not p.end_ns or ts <= p.end_ns)]
        if not owners:
            continue
        owner = owners[-1]
        path = path.decode("utf-8", "replace") if isinstance(path, bytes) else path
        path2 = path2.decode("utf-8", "replace") if isinstance(path2, bytes) else path2
        if kind == "open":
            mode = "write" if a2 & WRITE else "read"
            sig, text = f"open {mode} {path} {_err(ret)}", f"open {path} for {mode}: {_err(ret)}"
        elif kind == "fork":
            if a2 != -1 and a2 & 0x10000:
                continue  # threads
            sig, text = "fork", "fork"
        elif kind == "exec":
            sig, text = f"exec {path}", f"exec {path}"
        elif kind == "exit_call":
            if a1 != 1:
                continue
            sig, text = f"exit {a0 & 0xFF}", f"exit_group({a0 & 0xFF})"
        elif kind == "rename":
            sig, text = f"rename {path} {path2} {_err(ret)}", f"rename {path} -> {path2}: {_err(ret)}"
        else:
            sig, text = f"{kind} {path} {_err(ret)}", f"{kind} {path}: {_err(ret)}"
        out[id(owner)].append(Fact(int(ts), int(tgid), kind, sig, text))
    return out


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
            ts = first[0].ts if first else only.start_ns
            candidates.append((ts - run.start_ns, {"run": side, "process": who(only),
                                                   "fact": first[0].text if first else "birth"}))
            continue
        if a.exit_code != b.exit_code:
            items.append({"kind": "exit code", "a": who(a) | {"exit_code": a.exit_code},
                          "b": who(b) | {"exit_code": b.exit_code}, "rank": 2})
        da = (a.end_ns - a.start_ns) if a.end_ns else 0
        db = (b.end_ns - b.start_ns) if b.end_ns else 0
        if da and db and max(da, db) / max(1, min(da, db)) >= TIMING_RATIO and abs(da - db) >= TIMING_MIN_NS:
            items.append({"kind": "timing", "a": who(a) | {"duration_ns": da}, "b": who(b) | {"duration_ns": db},
                          "rank": 6})
        sa, sb = [f.sig for f in fa[id(a)]], [f.sig for f in fb[id(b)]]
        if sa != sb:
            ops = [op for op in difflib.SequenceMatcher(a=sa, b=sb, autojunk=False).get_opcodes() if op[0] != "equal"]
            tag, i1, _i2, j1, _j2 = ops[0]
            la, lb = fa[id(a)], fb[id(b)]
            fact_a = la[i1] if i1 < len(la) and tag != "insert" else None
            fact_b = lb[j1] if j1 < len(lb) and tag != "delete" else None
            offs = [f.ts - r.start_ns for f, r in ((fact_a, run_a), (fact_b, run_b)) if f is not None]
            candidates.append((min(offs), {"a": fact_a.text if fact_a else None, "b": fact_b.text if fact_b else None,
                                           "a_offset_ns": fact_a.ts - run_a.start_ns if fact_a else None,
                                           "b_offset_ns": fact_b.ts - run_b.start_ns if fact_b else None,
                                           "process": {"a": who(a), "b": who(b)}}))

    # within aligned processes (a process only in one run is one difference, not each of its facts)
    failed = lambda f: not f.sig.endswith(" ok") and f.kind not in ("fork", "exec", "exit_call")  # noqa: E731
    checks = (("failed only in", failed, 3),
              ("file operation only in", lambda f: f.kind in ("open", "unlink", "rename", "mkdir")
               and f.sig.endswith(" ok"), 4),
              ("endpoint only in", lambda f: f.kind in ("connect", "bind"), 5))
    seen: set[tuple[str, str, str]] = set()
    for pair in pairs:
        if pair.a is None or pair.b is None:
            continue
        for name, pred, rank in checks:
            in_a = {f.sig for f in fa[id(pair.a)] if pred(f)}
            in_b = {f.sig for f in fb[id(pair.b)] if pred(f)}
            for side, only, p in (("a", in_a - in_b, pair.a), ("b", in_b - in_a, pair.b)):
                for sig in sorted(only):
                    if (name, side, sig) not in seen:
                        seen.add((name, side, sig))
                        items.append({"kind": f"{name} {side}", "what": sig, "process": who(p), "rank": rank})
    items.sort(key=lambda i: i["rank"])
    first = min(candidates, key=lambda c: c[0])[1] if candidates else None
    return {"a": run_a.run_id, "b": run_b.run_id, "first_divergence": first,
            "differences": [{k: v for k, v in i.items() if k != "rank"} for i in items],
            "aligned": sum(1 for p in pairs if p.a and p.b), "only_a": sum(1 for p in pairs if not p.b),
            "only_b": sum(1 for p in pairs if not p.a)}
