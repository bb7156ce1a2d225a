"""The CLI's text output: what each reading command prints, as lines, from what the API returned.

Lines are plain text; ``osrewind.cli.echo`` makes recorded text (argv, paths, names) safe for the
terminal as it prints them. JSON output does not come through here (it is the API's ``to_json``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

from osrewind.queries.timespec import format_duration, format_offset, format_wall
from osrewind.text import safe, safe_argv


def runs(items: list) -> Iterator[str]:
    """``osrewind runs``: one line a run (and its status detail below it)."""
    yield f"{'ID':8}  {'NAME':16}  {'START':23}  {'DURATION':>9}  {'EVENTS':>9}  {'LOST':>5}  {'EXIT':>4}  " \
          f"{'STATUS':11}  COMMAND"
    for r in items:
        code = "-" if r.exit_code is None else str(r.exit_code)
        cmd = safe_argv(r.command, 60) if r.scope == "command" else safe(" ".join(r.command) or f"--{r.scope}", 60)
        yield (f"{r.run_id[:8]}  {safe(r.name, 16):16}  {format_wall(r.start_wall_ns):23}  "
               f"{format_duration(r.duration_ns):>9}  {r.events:>9}  {r.lost:>5}  {code:>4}  "
               f"{r.status:11}  {cmd}")
        if r.status_detail:
            yield f"{'':8}  {r.status}: {safe(r.status_detail, 200)}"


def state(st, show_fds: bool = True) -> Iterator[str]:
    """``osrewind state``: the processes alive at the instant as a tree, each with its cwd and fds;
    what each CPU ran; the latest exits."""
    run = st.run
    yield (f"run {run.run_id[:8]} '{run.name}' at {format_offset(st.at_ns - run.start_ns)} "
           f"({format_wall(st.at_ns + run.wall_offset_ns)}): {len(st.processes)} processes")
    alive = {p.pid for p in st.processes}
    cgroups = {p.pid: p.cgroup for p in st.processes}
    children: dict[int, list] = {}
    roots = []
    for p in st.processes:
        if p.ppid in alive and not p.orphaned:
            children.setdefault(p.ppid, []).append(p)
        else:
            roots.append(p)

    def show(p, prefix: str, last: bool, top: bool) -> Iterator[str]:
        branch = "" if top else ("└─ " if last else "├─ ")
        cmd = shlex.join(p.argv) if p.argv else f"[{p.comm}]"
        notes = []
        if p.from_snapshot and p.exec_ns is None:
            notes.append("before recording")
        if p.orphaned:
            notes.append(f"orphaned, parent {p.ppid} exited")
        elif top:
            notes.append(f"ppid {p.ppid}")
        if p.threads > 1:
            notes.append(f"{p.threads} threads")
        if p.cgroup and (top or p.cgroup != cgroups.get(p.ppid)):
            notes.append(f"cgroup {p.cgroup}")
        if p.run_state != "unknown":
            cpus = sorted(set(p.on_cpu.values()))
            notes.append(p.run_state + (f" on cpu {','.join(map(str, cpus))}" if cpus else ""))
        note = f"  ({', '.join(notes)})" if notes else ""
        yield f"{prefix}{branch}{p.pid} {cmd[:100]}{note}"
        inner = prefix + ("" if top else ("   " if last else "│  "))
        yield f"{inner}   cwd {p.cwd or '?'}"
        if show_fds:
            for f in sorted(p.fds.values(), key=lambda f: f.fd):
                flag = "  cloexec" if f.cloexec else ""
                yield f"{inner}   fd {f.fd:<3} {f.target}{flag}"
        kids = children.get(p.pid, [])
        for i, c in enumerate(kids):
            yield from show(c, inner, i == len(kids) - 1, False)

    for p in roots:
        yield from show(p, "", True, True)
    if st.sched and st.cpus:
        yield "cpus:"
        for c in st.cpus:
            who = "idle" if not c.tid else f"{c.tid} {c.comm}" + ("" if c.tgid is not None else " (not recorded)")
            yield f"  cpu {c.cpu}: {who}, since {format_offset(c.since_ns - run.start_ns)}"
    recent = [p for p in st.exited][:5]
    if recent:
        yield "exited before this instant (latest first):"
        for p in recent:
            code = "?" if p.exit_code is None else p.exit_code
            cmd = shlex.join(p.argv) if p.argv else p.comm
            yield f"  {p.pid} {cmd[:80]}  exit {code}"


def tree(run, roots: list) -> Iterator[str]:
    """``osrewind tree``: every process of the run, born when, what it ran, how it ended."""
    parent_cgroup: dict[int, str] = {}

    def show(p, prefix: str, last: bool, top: bool) -> Iterator[str]:
        branch = "" if top else ("└─ " if last else "├─ ")
        cmd = shlex.join(p.argv) if p.argv else "?"
        born = "before recording" if p.from_snapshot else f"born {format_offset(p.start_ns - run.start_ns)}"
        if p.end_ns:
            code = "?" if p.exit_code is None else p.exit_code
            life = f", exit {code} after {format_duration(p.end_ns - p.start_ns)}"
        else:
            life = ", still running at the end"
        execs = f", {len(p.execs)} execs" if len(p.execs) > 1 else ""
        cgroup = f", cgroup {p.cgroup}" if p.cgroup and (top or p.cgroup != parent_cgroup.get(id(p))) else ""
        yield f"{prefix}{branch}{p.pid} {cmd[:90]}  ({born}{life}{execs}{cgroup})"
        for c in p.children:
            parent_cgroup[id(c)] = p.cgroup
        inner = prefix + ("" if top else ("   " if last else "│  "))
        for i, c in enumerate(p.children):
            yield from show(c, inner, i == len(p.children) - 1, False)

    for r in roots:
        yield from show(r, "", True, True)


def lineage(result: dict) -> Iterator[str]:
    """``osrewind lineage``: each producer of the path, with its exec chain and inputs, recursively."""

    def show(node: dict, indent: str) -> Iterator[str]:
        yield f"{indent}{node['path']}"
        for ev in node["events"]:
            chain = " <- ".join(f"{c['pid']} {shlex.join(c['argv'])[:50]}" for c in ev["chain"][:4])
            extra = f" from {ev['from']}" if "from" in ev else (f" to {ev['to']}" if "to" in ev else "")
            if "as" in ev:  # the same file under the name it had then
                extra += f" (as {ev['as']})"
            yield f"{indent}  {format_offset(ev['offset_ns'])} {ev['op']}{extra} by {chain}"
            if ev["inputs"]:
                yield (f"{indent}    inputs: {', '.join(ev['inputs'][:8])}"
                       + (f" (+{len(ev['inputs']) - 8})" if len(ev["inputs"]) > 8 else ""))
            for src in ev.get("sources", []):
                yield from show(src, indent + "      ")

    yield from show(result, "")


def diff(a, b, result: dict) -> Iterator[str]:
    """``osrewind diff``: the alignment, the first divergence, then every difference."""
    yield (f"a = {a.run_id[:8]} '{a.name}', b = {b.run_id[:8]} '{b.name}': {result['aligned']} processes "
           f"aligned, {result['only_a']} only in a, {result['only_b']} only in b")
    first = result["first_divergence"]
    if first is None:
        yield "no difference in what the processes did"
    else:
        yield "first divergence:"
        for side in ("a", "b"):
            if first.get(side):
                yield f"  {side} {format_offset(first[side + '_offset_ns'])}: {first[side]}"
        if first.get("fact"):
            yield f"  only in {first['run']}: {first['fact']} ({shlex.join(first['process']['argv'])})"
    for d in result["differences"]:
        if "what" in d:
            yield f"  {d['kind']}: {d['what']}"
        elif d["kind"].startswith("process only"):
            yield (f"  {d['kind']}: {d['process']['pid']} {shlex.join(d['process']['argv'])[:80]} "
                   f"(exit {d['exit_code']})")
        elif d["kind"] == "exit code":
            yield f"  exit code of {shlex.join(d['a']['argv'])[:60]}: {d['a']['exit_code']} -> {d['b']['exit_code']}"
        else:
            yield (f"  timing of {shlex.join(d['a']['argv'])[:60]}: {format_duration(d['a']['duration_ns'])} -> "
                   f"{format_duration(d['b']['duration_ns'])}")


def event(run, e: dict, summary: str) -> str:
    """``osrewind events``: one event, at its offset into the run."""
    return (f"{format_offset(e['ts'] - run.start_ns):>14}  {e['tgid']:>7}/{e['tid']:<7} "
            f"{safe(e['comm'], 15):15}  {summary}")


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f}ms"


# ``osrewind top``'s tables: a header and a row each
TOP_TABLES = {
    "processes": ("PROCESSES      PID  COMM             ON-CPU  SYSCALLS  IN-SYSCALL  FAILED  EVENTS",
                  lambda r: f"          {r['pid']:>8}  {r['comm'][:15]:15} {_ms(r['cpu_ns']):>8}  {r['syscalls']:>8}  "
                            f"{_ms(r['syscall_ns']):>10}  {r['failed']:>6}  {r['events']:>6}"),
    "syscalls": ("SYSCALLS  NAME                 CALLS      TOTAL        MAX  FAILED  PROCS",
                 lambda r: f"          {r['syscall'][:20]:20} {r['calls']:>6}  {_ms(r['total_ns']):>9}  "
                           f"{_ms(r['max_ns']):>9}  {r['failed']:>6}  {r['processes']:>5}"),
    "files": ("FILES     TOUCHES  OPENS  FAILED  PROCS  PATH",
              lambda r: f"          {r['touches']:>7}  {r['opens']:>5}  {r['failed']:>6}  {r['processes']:>5}  {r['path']}"),
    "endpoints": ("ENDPOINTS  EVENTS  FAILED  HOW                      ENDPOINT",
                  lambda r: f"           {r['events']:>6}  {r['failed']:>6}  {','.join(r['how'])[:24]:24} {r['endpoint']}"),
}


def top(run, lo: int, hi: int, tables: dict) -> Iterator[str]:
    """``osrewind top``: the tables asked for, busiest first."""
    yield f"run {run.run_id[:8]} '{run.name}' from {format_offset(lo - run.start_ns)} to {format_offset(hi - run.start_ns)}"
    for name, (header, row) in TOP_TABLES.items():
        if name in tables:
            yield ""
            yield header
            yield from map(row, tables[name])


def tests(run, items: list) -> Iterator[str]:
    """``osrewind tests``: one line a test, in the order they started."""
    yield f"{'START':>14}  {'DURATION':>9}  {'OUTCOME':7}  {'PID':>7}  TEST"
    for t in items:
        worker = f" [{t.worker}]" if t.worker else ""
        yield (f"{format_offset(t.start_ns - run.start_ns):>14}  {format_duration(t.end_ns - t.start_ns):>9}  "
               f"{t.outcome:7}  {t.pid:>7}  {t.nodeid}{worker}")
        if t.message and t.failed:
            yield f"{'':14}  {'':9}  {'':7}  {'':7}    {safe(t.message.splitlines()[0] if t.message else '', 120)}"


def cell(v: object) -> str:
    """One value of a user's SQL query as text: lists as [a, b], NULL as nothing."""
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(cell(x) for x in v) + "]"
    return str(v)
