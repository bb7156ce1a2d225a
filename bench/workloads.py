"""Real workloads lose nothing: a `make -j2` build and this project's own test suite, recorded.

Workloads (--workload, default all):
- make: --files N (default 200) small generated C files (a few functions each, every third one
  including a common header, all reached from main.c) and a Makefile, in a scratch directory;
  each round `make clean`, then `make -j2` (it compiles N+1 files and links them).
- tests: this project's test suite without the kernel tests (`pytest --ignore-glob='*_kernel.py'
  -m 'not kernel'`: the `*_kernel.py` files and the few tests marked `kernel` elsewhere are the
  ones that record). By default the two slowest files are also left out, so a round stays within
  a few minutes on a 2-core machine: tests/test_hardening_store.py (a third of the suite's time,
  store failure cases) and the TUI files (tests/test_tui*.py: Textual apps under a simulated
  terminal); --tests-all runs the whole non-kernel suite. The output says which.

Each round runs the workload untraced and under `osrewind record --json` with the default
options, interleaved (the order alternates per round, because this shared 2-core machine is
noisy); min and median over rounds, ratios of mins and of medians. The time compared is the
workload's own elapsed time, taken the same way on both sides by a tiny C wrapper compiled into
the scratch directory (`elapsed OUT -- CMD...`): it reads CLOCK_MONOTONIC (vDSO, no syscall)
before its fork+exec of CMD and after the wait, then writes both instants to OUT. That costs
one fork, one exec and one wait (microseconds, and it is in the untraced run too), prints
nothing into the workload's output, and its clock is the one `time.monotonic_ns()` reads, so the
recorder's own time splits into start-up (record launched -> workload starts: BCC compile, store)
and tail (workload ends -> record returns: draining, indexing), reported apart from the workload.
Events and lost come from `record --json`; when a round lost records, their causes
(probes/records.py DROPS) are read back from the run's `lost` facts with `osrewind sql`.

Between steps the bench waits (--quiet-timeout) until the tracepoint programs loaded by the
previous recording have left the kernel (they detach in the background, one RCU grace period at
a time, and would tax the next untraced run). Foreign tracers are not waited for (the machine is
shared), but their presence is counted in the output with the load average.

--rev REV records with osrewind as committed at REV, and runs the test suite of REV (both
exported to the scratch directory), e.g. while ingest/ or probes/ are being edited.

Usage (root; the venv's python, which reaches BCC):
    sudo .venv/bin/python bench/workloads.py                      # both workloads, 3 rounds
    sudo .venv/bin/python bench/workloads.py --workload make --files 50 --rounds 1
    sudo .venv/bin/python bench/workloads.py --rev HEAD --json > out.json   # one JSON document
    .venv/bin/python bench/workloads.py --from-json out.json      # its table again
Exit status 0 when every recorded round lost nothing, 1 otherwise (the last line says which).
Numbers depend on the machine: compare the ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import fmt, pair, progress, ratio, summarize

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}

ELAPSED_C = r"""
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: elapsed OUT -- CMD...\n"); return 2; }
    long long start = now();
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 126; }
    if (pid == 0) { execvp(argv[3], argv + 3); perror(argv[3]); _exit(127); }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {}
    long long end = now();
    FILE *f = fopen(argv[1], "w");
    if (!f) { perror(argv[1]); return 126; }
    fprintf(f, "%lld %lld\n", start, end);
    fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
"""

# ---------------------------------------------------------------- the make workload

HEADER = """\
#ifndef COMMON_H
#define COMMON_H
struct acc { long sum; unsigned long mix; int n; };
static inline void acc_add(struct acc *a, long v) {
    a->sum += v;
    a->mix = (a->mix ^ (unsigned long)v) * 0x100000001b3UL;
    a->n++;
}
long unit_total(int n);
%s
#endif
"""

UNIT_PLAIN = """\
static long fold_{i}(const int *v, int n) {{
    long s = 0;
    for (int k = 0; k < n; k++)
        s = s * 31 + v[k] * {m};
    return s;
}}

static int pick_{i}(int x) {{
    switch (x % 4) {{
    case 0: return x / 2;
    case 1: return 3 * x + 1;
    case 2: return x ^ {i};
    default: return x - {m};
    }}
}}

long unit_{i}(int n) {{
    int v[16];
    for (int k = 0; k < 16; k++)
        v[k] = pick_{i}(n + k);
    return fold_{i}(v, 16);
}}
"""

UNIT_COMMON = """\
#include "common.h"

static void walk_{i}(struct acc *a, int n) {{
    for (int k = 0; k < n; k++)
        acc_add(a, (long)k * {m} - {i});
}}

static long finish_{i}(const struct acc *a) {{
    return a->sum + (long)(a->mix % 1000003UL) + a->n;
}}

long unit_{i}(int n) {{
    struct acc a = {{0, 14695981039346656037UL, 0}};
    walk_{i}(&a, n % 64 + 1);
    return finish_{i}(&a);
}}
"""

MAIN_C = """\
#include <stdio.h>
#include "common.h"

long unit_total(int n) {
    long t = 0;
%s
    return t;
}

int main(void) {
    printf("%%ld\\n", unit_total(7));
    return 0;
}
"""

MAKEFILE = """\
CC ?= cc
CFLAGS ?= -O2 -Wall
OBJS := $(patsubst %.c,%.o,$(sort $(wildcard u*.c))) main.o

prog: $(OBJS)
\t$(CC) -o $@ $^

%.o: %.c common.h
\t$(CC) $(CFLAGS) -c -o $@ $<

clean:
\trm -f *.o prog

.PHONY: clean
"""


def generate_project(where: Path, n: int) -> None:
    where.mkdir(parents=True)
    protos = "\n".join(f"long unit_{i}(int n);" for i in range(n))
    (where / "common.h").write_text(HEADER % protos)
    for i in range(n):
        tmpl = UNIT_COMMON if i % 3 == 0 else UNIT_PLAIN
        (where / f"u{i:04d}.c").write_text(tmpl.format(i=i, m=i % 7 + 2))
    calls = "\n".join(f"    t += unit_{i}(n);" for i in range(n))
    (where / "main.c").write_text(MAIN_C % calls)
    (where / "Makefile").write_text(MAKEFILE)


# ---------------------------------------------------------------- osrewind, and the tree it runs from

class Tree:
    """Where osrewind and the test suite come from: the working tree, or --rev REV exported."""

    def __init__(self, rev: str | None, scratch: Path) -> None:
        self.rev = rev
        self.root = REPO
        tree = None
        if rev:
            self.root = tree = scratch / "tree"
            benchlib.export_rev(rev, self.root)
        self.env = benchlib.tree_env(tree, ENV)
        self.what = benchlib.describe_tree(rev, ["probes", "ingest", "osrewind", "queries", "tests"])

    def osrewind(self) -> list[str]:
        return [sys.executable, "-m", "osrewind"]


# ---------------------------------------------------------------- BPF programs left in the kernel

def tracing_prog_ids() -> list[int] | None:
    """Ids of the tracepoint / raw tracepoint programs loaded in the kernel (None: no bpftool)."""
    if not shutil.which("bpftool"):
        return None
    p = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    try:
        return [x["id"] for x in json.loads(p.stdout or "[]") if x.get("type") in ("tracepoint", "raw_tracepoint")]
    except ValueError:
        return None


class Settle:
    """After a recording, waits until the programs loaded since `mark()` have left the kernel:
    program ids only grow, and a program stays loaded until its last hook is unregistered, so
    'no program newer than the mark' means our recorder's hooks are gone (foreign programs loaded
    meanwhile can only make it wait its timeout). Programs already there at the mark (another
    user's tracer on this shared machine) are not waited for, only counted."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.high = 0
        self.timeouts = 0
        self.foreign: list[int] = []

    def mark(self) -> None:
        ids = tracing_prog_ids() or []
        self.high = max(ids, default=0)
        self.foreign.append(len(ids))

    def wait(self) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < self.timeout:
            ids = tracing_prog_ids()
            if ids is None or not any(i > self.high for i in ids):
                return time.monotonic() - t0
            time.sleep(0.25)
        self.timeouts += 1
        return time.monotonic() - t0


# ---------------------------------------------------------------- one measurement

def read_elapsed(out: Path) -> tuple[int, int]:
    start, end = out.read_text().split()
    return int(start), int(end)


def output_tail(stdout: str) -> list[str]:
    """What a workload's output says of how it ended: its last line, after the lines that name a
    failed test (pytest -rf: "FAILED tests/...::test - why")."""
    lines = [x for x in stdout.strip().splitlines() if x.strip() and not x.startswith("{")]
    return [x for x in lines[:-1] if x.startswith(("FAILED ", "ERROR "))] + lines[-1:]


def run_untraced(elapsed: Path, scratch: Path, cmd: list[str], cwd: Path, env: dict) -> dict:
    out = scratch / "elapsed.untraced"
    out.unlink(missing_ok=True)
    p = subprocess.run([str(elapsed), str(out), "--", *cmd], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    start, end = read_elapsed(out)
    return {"workload_s": (end - start) / 1e9, "rc": p.returncode,
            "tail": output_tail(p.stdout)}


def lost_causes(tree: Tree, db: Path, run_id: str) -> dict[str, int]:
    """The run's `lost` facts summed per cause, named as probes/records.py DROPS names them."""
    sql = ("SELECT a1 AS cause, sum(a0) AS n FROM events WHERE run_id = {r:UUID} AND kind = 'lost' "
           "GROUP BY cause ORDER BY n DESC")
    p = subprocess.run([*tree.osrewind(), "--db", str(db), "sql", sql, "-p", f"r={run_id}", "--json"],
                       capture_output=True, text=True, env=tree.env, cwd="/tmp")
    try:
        rows = json.loads(p.stdout)
    except ValueError:
        return {"(could not read)": -1}
    names = subprocess.run([sys.executable, "-c", "import json; from osrewind.probes.records import DROPS; "
                            "print(json.dumps({k: v[0] for k, v in DROPS.items()}))"],
                           capture_output=True, text=True, env=tree.env, cwd="/tmp")
    try:
        codes = json.loads(names.stdout)
    except ValueError:
        codes = {}
    return {codes.get(str(r["cause"]), f"cause {r['cause']}"): int(r["n"]) for r in rows}


def run_recorded(tree: Tree, elapsed: Path, scratch: Path, cmd: list[str], cwd: Path, env: dict,
                 round_no: int) -> dict:
    """`osrewind --db STORE record --json -- elapsed OUT -- CMD` in a fresh store (removed after)."""
    out = scratch / "elapsed.recorded"
    out.unlink(missing_ok=True)
    db = scratch / f"store-{round_no}"
    shutil.rmtree(db, ignore_errors=True)
    t0 = time.monotonic_ns()
    p = subprocess.run([*tree.osrewind(), "--db", str(db), "record", "--json", "--",
                        str(elapsed), str(out), "--", *cmd],
                       cwd=cwd, env={**env, **tree.env} if tree.rev else env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    t1 = time.monotonic_ns()
    summary = benchlib.last_json_line(p.stdout)
    res = {"rc": p.returncode, "record_s": (t1 - t0) / 1e9, "events": summary.get("events"),
           "lost": summary.get("lost"), "status": summary.get("status"), "run_id": summary.get("run_id"),
           "tail": output_tail(p.stdout)}
    if out.exists():
        start, end = read_elapsed(out)
        res.update(workload_s=(end - start) / 1e9, startup_s=(start - t0) / 1e9, tail_s=(t1 - end) / 1e9)
    if not summary or not out.exists():
        res["error"] = ((p.stderr.strip().splitlines() or ["no output"])[-1])[-300:]
    if res.get("lost"):
        res["lost_causes"] = lost_causes(tree, db, summary["run_id"])
    shutil.rmtree(db, ignore_errors=True)
    return res


# ---------------------------------------------------------------- report

def build_report(name: str, what: str, untraced: list[dict], recorded: list[dict]) -> dict:
    u = summarize([r.get("workload_s") for r in untraced])
    w = summarize([r.get("workload_s") for r in recorded])
    return {"workload": name, "what": what, "untraced_s": u, "recorded_s": w, "x_untraced": ratio(w, u),
            "record_total_s": summarize([r.get("record_s") for r in recorded]),
            "startup_s": summarize([r.get("startup_s") for r in recorded]),
            "tail_s": summarize([r.get("tail_s") for r in recorded]),
            "rounds": [{"untraced": a, "recorded": b} for a, b in zip(untraced, recorded, strict=True)]}


def print_table(r: dict) -> None:
    print(f"workloads: {r['rounds_done']} interleaved rounds on {r['kernel']} ({r['cpus']} CPUs); "
          f"osrewind: {r['osrewind']}; record with its default options")
    print("workload s = the workload's own elapsed time (same wrapper untraced and recorded); min/median over "
          "rounds; x = recorded/untraced, of mins and of medians")
    print("record s = the whole `osrewind record` command; start-up = until the workload starts, "
          "tail = after it ends")
    hdr = (f"{'workload':<10} {'untraced s':>13} {'recorded s':>13} {'x min/med':>11} {'record s':>13} "
           f"{'start-up s':>10} {'tail s':>7}  {'events per round':<32} {'lost per round':<16}")
    print(hdr)
    print("-" * len(hdr))
    for w in r["workloads"]:
        rounds = w["rounds"]
        ev = "/".join(fmt(x["recorded"].get("events"), ",.0f") for x in rounds)
        lost = "/".join(fmt(x["recorded"].get("lost"), ",.0f") for x in rounds)
        print(f"{w['workload']:<10} {pair(w['untraced_s'], '.2f'):>13} {pair(w['recorded_s'], '.2f'):>13} "
              f"{pair(w['x_untraced'], '.2f'):>11} {pair(w['record_total_s'], '.2f'):>13} "
              f"{fmt(w['startup_s']['median'], '.2f'):>10} {fmt(w['tail_s']['median'], '.2f'):>7}  {ev:<32} {lost:<16}")
    print()
    for w in r["workloads"]:
        print(f"{w['workload']}: {w['what']}")
        for i, x in enumerate(w["rounds"], 1):
            u, rec = x["untraced"], x["recorded"]
            line = (f"  round {i}: untraced {fmt(u.get('workload_s'), '.2f')} s (exit {u.get('rc')}), recorded "
                    f"{fmt(rec.get('workload_s'), '.2f')} s (exit {rec.get('rc')}, {rec.get('status')}), record "
                    f"{fmt(rec.get('record_s'), '.2f')} s, {fmt(rec.get('events'), ',.0f')} events, "
                    f"{fmt(rec.get('lost'), ',.0f')} lost")
            if rec.get("lost_causes"):
                line += " (" + ", ".join(f"{k} {v:,}" for k, v in rec["lost_causes"].items()) + ")"
            if rec.get("error"):
                line += f"  error: {rec['error'][:120]}"
            print(line)
            if w["workload"] == "tests" and (u.get("tail") or rec.get("tail")):
                print(f"    pytest: untraced {(u.get('tail') or [''])[-1]!r}; recorded "
                      f"{(rec.get('tail') or [''])[-1]!r}")
                for side, res in (("untraced", u), ("recorded", rec)):
                    for failed in (res.get("tail") or [])[:-1]:
                        print(f"    {side}: {failed}")
    for n in r["notes"]:
        print("note:", n)
    la = r["loadavg_1min_at_steps"]
    print(f"wall time {r['wall_s']:.0f} s; 1-min load average at the steps: median {fmt(la['median'], '.2f')}, "
          f"max {fmt(la['max'], '.2f')} (2 CPUs; the bench itself adds 1-2)")
    print(f"every recorded round lost 0: {'yes' if r['all_zero_lost'] else 'NO'}")


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--workload", choices=("make", "tests", "all"), default="all", help="default all")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--files", type=int, default=200, help="generated C files of the make workload (default 200)")
    ap.add_argument("--jobs", type=int, default=2, help="make -j (default 2)")
    ap.add_argument("--tests-all", action="store_true",
                    help="the whole non-kernel suite (default: without test_hardening_store.py and test_tui*.py)")
    ap.add_argument("--rev", help="record with osrewind, and run the tests, as committed at this git revision "
                    "(exported to the scratch dir), e.g. --rev HEAD while probes/ is being edited")
    ap.add_argument("--quiet-timeout", type=float, default=30.0,
                    help="after a recording, wait up to this long for its BPF programs to leave the kernel (default 30)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--from-json", metavar="FILE", help="print the table of a JSON document written by --json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print_table(json.load(f))
        return 0
    if os.geteuid() != 0:
        print("workloads.py: needs root (it records with BPF)", file=sys.stderr)
        return 2
    if args.rounds < 1 or args.files < 1:
        ap.error("--rounds and --files must be at least 1")

    scratch = Path(tempfile.mkdtemp(prefix="osrewind-workloads-", dir="/tmp"))
    notes: list[str] = []
    try:
        tree = Tree(args.rev, scratch)
        elapsed = scratch / "elapsed"
        subprocess.run(["gcc", "-O2", "-x", "c", "-o", str(elapsed), "-"], input=ELAPSED_C, text=True, check=True)
        if tracing_prog_ids() is None:
            notes.append("bpftool missing: the bench could not wait for a recording's hooks to leave the kernel")

        plans = []  # (name, description, prepare, cmd, cwd, env)
        if args.workload in ("make", "all"):
            src = scratch / "make-project"
            generate_project(src, args.files)
            cmd = ["make", f"-j{args.jobs}", "-s"]
            desc = (f"`make -j{args.jobs}` of {args.files} generated C files + main.c (every third includes "
                    f"common.h), linked into one program; `make clean` before each build")

            def clean(src=src) -> None:
                subprocess.run(["make", "-s", "clean"], cwd=src, check=True, stdout=subprocess.DEVNULL)

            plans.append(("make", desc, clean, cmd, src, ENV))
        if args.workload in ("tests", "all"):
            tests = ["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rf", "--ignore-glob=*_kernel.py",
                     "-m", "not kernel"]
            if not args.tests_all:
                tests += ["--ignore=tests/test_hardening_store.py", "--ignore-glob=tests/test_tui*.py"]
            desc = ("pytest " + " ".join(tests[2:]) + (" (the whole non-kernel suite)" if args.tests_all else
                    " (the non-kernel suite without its two slowest parts: --tests-all runs them too)"))
            # the suite's own children must run the same tree as pytest
            plans.append(("tests", desc, lambda: None, [sys.executable, *tests], tree.root, tree.env))

        # one untraced warm-up each: compilers and modules into the page cache, and a check that it runs
        for name, _, prepare, cmd, cwd, env in plans:
            progress(f"workloads: warm-up of {name}")
            prepare()
            w = run_untraced(elapsed, scratch, cmd, cwd, env)
            if w["rc"] != 0:
                notes.append(f"{name}: the untraced warm-up exited {w['rc']}: {' '.join(w['tail'])}")

        settle = Settle(args.quiet_timeout)
        results = {name: ([], []) for name, *_ in plans}
        loads: list[float] = []
        rounds_done = 0
        t_run = time.monotonic()
        try:
            for r in range(args.rounds):
                for name, _, prepare, cmd, cwd, env in plans:
                    order = ("untraced", "recorded") if r % 2 == 0 else ("recorded", "untraced")
                    for side in order:
                        progress(f"workloads: round {r + 1}/{args.rounds}: {name} {side} "
                                 f"({time.monotonic() - t_run:.0f}s)")
                        prepare()
                        loads.append(os.getloadavg()[0])
                        if side == "untraced":
                            results[name][0].append(run_untraced(elapsed, scratch, cmd, cwd, env))
                        else:
                            settle.mark()
                            results[name][1].append(run_recorded(tree, elapsed, scratch, cmd, cwd, env, r))
                            settle.wait()
                rounds_done += 1
        except KeyboardInterrupt:
            notes.append(f"interrupted during round {rounds_done + 1}: only complete rounds are reported")
        benchlib.progress_end()
        if settle.timeouts:
            notes.append(f"{settle.timeouts} recordings still had programs loaded {args.quiet_timeout:g} s after "
                         "they returned (a slow detach, or a tracer started meanwhile): the next step paid them")
        if any(settle.foreign):
            notes.append(f"another tracer was loaded on the machine at {sum(1 for f in settle.foreign if f)} of "
                         f"{len(settle.foreign)} recorded steps ({max(settle.foreign)} tracepoint programs at most): "
                         "every row, untraced included, paid its hooks while it was there")
        report_rows = []
        for name, desc, *_ in plans:
            u, w = results[name]
            n = min(len(u), len(w), rounds_done)
            report_rows.append(build_report(name, desc, u[:n], w[:n]))
        recorded = [x["recorded"] for w in report_rows for x in w["rounds"]]
        report = {
            "bench": "workloads", "osrewind": tree.what, "host": os.uname().nodename, "kernel": os.uname().release,
            "cpus": os.cpu_count(), "rounds": args.rounds, "rounds_done": rounds_done, "workloads": report_rows,
            "notes": notes, "wall_s": time.monotonic() - t_run,
            "loadavg_1min_at_steps": summarize(loads) | {"max": max(loads) if loads else None},
            "all_zero_lost": bool(recorded) and all(x.get("lost") == 0 for x in recorded),
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print_table(report)
    return 0 if report["all_zero_lost"] else 1


if __name__ == "__main__":
    sys.exit(main())
