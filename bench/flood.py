"""Syscall flood, side by side: what a `dd bs=1` pays under each tracer, as ratios (issue 10).

Workload: `dd if=/dev/zero of=/dev/null bs=1 count=N` (two syscalls per byte: read + write).
The time compared is dd's own elapsed time ("copied, X s" on its stderr), never the tracer's
total: recorder start-up (BCC compile, store) and the time the recorder lingers after dd ends
are reported in their own columns.

Rows, measured interleaved in one run (--rounds rounds; each round measures every row once,
in an order rotated per round; min and median over rounds, because this VM is noisy):
- untraced;
- the hook floor: the tracepoints `osrewind record` attaches, with EMPTY programs (loaded with
  BCC in a helper process: raw tracepoints stay raw, classic stay classic). The hook list is
  discovered, not written down: the bench starts `osrewind record -- sleep` with each set of
  options and asks `bpftool perf show` what that process attached (so the floor follows the
  recorder while probes/ changes). Floors: `default` (the options of `record`), `no-sched`
  (`--no-sched`), `fd-only` (`--no-syscalls --no-sched`);
- `osrewind record` (default options) and `osrewind record --no-sched`: dd elapsed, ratios to
  untraced and to the matching floor, events and lost from `record --json`;
- `strace -f -o /dev/null`, `perf trace -o /dev/null`, and a bpftrace one-liner that prints
  every syscall of dd (to a file in the scratch dir, so its lines and "Lost" counts are seen).
  These are 50-500x slower, so they run dd with --slow-count (default 300000) and are compared
  with untraced and the floor measured at that same count in the same round: a ratio of
  elapsed times at equal count is a ratio of per-syscall costs. The ns/syscall column
  (elapsed / 2N) makes every row comparable whatever its count.
- Out of scope (point 3): while `osrewind record -- sleep 10` runs (default options, then
  `--no-syscalls --no-sched`), a dd of --oos-count that is NOT in the recording is run
  back to back; then, for --linger seconds right after `record` returns, the same dd again
  (the cost of hooks left attached while they are detached in the background). Compared with
  untraced and with the floor of the same options at the same count.

Before each step the bench waits (--quiet-timeout) until no BPF tracepoint is attached anywhere
on the machine and no tracepoint program is still loaded (hooks are unregistered one RCU grace
period at a time after their process has gone: `bpftool perf show` alone says 'gone' too early) (ours detach after each row; another user's tracer would tax every row, untraced
included); steps that had to start anyway are counted in the output, with the load average.
--rev REV benches osrewind as committed at REV (exported to the scratch dir), e.g. while probes/
is being edited. Ctrl-C reports the rounds measured so far; --from-json re-prints a saved report.

Usage (root; the venv's python, which reaches BCC):
    sudo .venv/bin/python bench/flood.py                       # human table (5 rounds: ~35 min here)
    sudo .venv/bin/python bench/flood.py --rounds 3 --json     # one JSON document on stdout
    sudo .venv/bin/python bench/flood.py --count 1000000 --slow-count 100000 --skip bpftrace
Needs: bpftool (hook discovery), strace, linux-perf, bpftrace (rows whose tool is missing say
so). A scratch store under /tmp is used (--db to choose it) and removed unless --keep.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchlib
from benchlib import COPIED, DD, dd_cmd, dd_seconds, fmt, pair, progress, ratio, run_dd, summarize

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRACEFS = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"
ENV = benchlib.DD_ENV   # every tool runs in the C locale (dd's "copied" line)

# osrewind's option sets, by floor name
MODES = {
    "default": [],
    "no-sched": ["--no-sched"],
    "fd-only": ["--no-syscalls", "--no-sched"],
}

def ensure_tracefs() -> None:
    """Mount tracefs and debugfs when they are not mounted (as probes/loader.py does). Idempotent."""
    for path, fstype in ((TRACEFS, "tracefs"), (DEBUGFS, "debugfs")):
        if not os.path.ismount(path):
            subprocess.run(["mount", "-t", fstype, "nodev", path], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


OSREWIND_TREE: str | None = None  # --rev: a source tree exported from git, run instead of the installed one


def osrewind_exe() -> list[str]:
    if OSREWIND_TREE:
        return [sys.executable, "-m", "osrewind"]
    venv = REPO / ".venv" / "bin" / "osrewind"
    if venv.exists():
        return [str(venv)]
    found = shutil.which("osrewind")
    return [found] if found else [sys.executable, "-m", "osrewind"]


# ---------------------------------------------------------------- BPF attachments on the machine

def attachments() -> list[dict] | None:
    """Every perf-event / raw tracepoint attachment on the machine (bpftool perf show), or None."""
    if not shutil.which("bpftool"):
        return None
    p = subprocess.run(["bpftool", "-j", "perf", "show"], capture_output=True, text=True)
    if p.returncode != 0:
        return None
    try:
        return json.loads(p.stdout or "[]")
    except ValueError:
        return None


def n_attached() -> int:
    a = attachments()
    return len(a) if a is not None else 0


def n_tracing_progs() -> int:
    """Tracepoint and raw tracepoint BPF programs still loaded in the kernel. `bpftool perf show`
    walks process fd tables, so it stops seeing a process's hooks as soon as its exit has dropped
    its files, while the kernel is still unregistering them one RCU grace period at a time
    (measured here: ~100 hooks take 4-10 s, and dd pays them meanwhile). A program stays loaded
    until its last attachment is freed, so this count is the one that says 'gone'."""
    if not shutil.which("bpftool"):
        return 0
    p = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    try:
        return sum(1 for x in json.loads(p.stdout or "[]") if x.get("type") in ("tracepoint", "raw_tracepoint"))
    except ValueError:
        return 0


def hooks_present() -> int:
    return n_attached() + n_tracing_progs()


def descendants(root: int) -> set[int]:
    kids: dict[int, list[int]] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            s = Path(stat).read_text()
            ppid = int(s[s.rindex(")") + 2:].split()[1])
            kids.setdefault(ppid, []).append(int(stat.split("/")[2]))
        except (OSError, ValueError):
            continue
    out, todo = {root}, [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            if k not in out:
                out.add(k)
                todo.append(k)
    return out


class Quiet:
    """Before each step, waits (up to a timeout) until no BPF tracepoint is attached anywhere on the
    machine: ours detach when a row ends (the recorder's in the background), and another user's
    tracer would make every row, untraced included, pay its hooks. Steps that had to start with
    hooks still attached are counted and reported."""

    def __init__(self, timeout: float) -> None:
        self.baseline = hooks_present()
        self.timeout = timeout
        self.timeouts = 0
        self.steps = 0

    def wait(self) -> float:
        t0 = time.monotonic()
        self.steps += 1
        while time.monotonic() - t0 < self.timeout:
            if hooks_present() == 0:
                return time.monotonic() - t0
            time.sleep(0.25)
        self.timeouts += 1
        return time.monotonic() - t0


def category_of(name: str) -> str | None:
    hits = sorted(glob.glob(f"{TRACEFS}/events/*/{name}"))
    return hits[0].split("/")[-2] if hits else None


# ---------------------------------------------------------------- osrewind record, watched

class Recording:
    """`osrewind record --json FLAGS -- CMD` with its stderr lines time-stamped as they come."""

    def __init__(self, db: str, flags: list[str], cmd: list[str]) -> None:
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen([*osrewind_exe(), "--db", db, "record", "--json", *flags, "--", *cmd],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd="/tmp",
                                     env=benchlib.tree_env(Path(OSREWIND_TREE) if OSREWIND_TREE else None, ENV))
        self.lines: list[tuple[float, str]] = []
        self.ready = threading.Event()
        self.t_ready: float | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            now = time.monotonic()
            self.lines.append((now, line.rstrip("\n")))
            if "recording run" in line and self.t_ready is None:
                self.t_ready = now
                self.ready.set()
        self.ready.set()

    def finish(self, timeout: float = 600.0) -> dict:
        out = self.proc.stdout.read()  # stderr belongs to the reader thread (not communicate())
        self.proc.wait(timeout)
        t_exit = time.monotonic()
        self._reader.join(5)
        summary = benchlib.last_json_line(out)
        stderr = "\n".join(text for _, text in self.lines)
        copied = [t for t, text in self.lines if COPIED.search(text)]
        res = {
            "rc": self.proc.returncode,
            "dd_s": dd_seconds(stderr),
            "startup_s": (self.t_ready - self.t0) if self.t_ready else None,
            "after_dd_s": (t_exit - copied[-1]) if copied else None,
            "total_s": t_exit - self.t0,
            "events": summary.get("events"),
            "lost": summary.get("lost"),
            "status": summary.get("status"),
            "t_exit": t_exit,
        }
        if self.proc.returncode != 0 or not summary:
            res["error"] = (stderr.strip().splitlines() or ["no output"])[-1][-300:]
        return res


def discover_hooks(db: str, flags: list[str]) -> tuple[list[tuple[str, str]], float | None, str | None]:
    """The (fd_type, tracepoint) pairs `osrewind record FLAGS` attaches, and its start-up time."""
    rec = Recording(db, flags, ["sleep", "3"])
    rec.ready.wait(180)
    time.sleep(0.3)
    found = attachments()
    pids = descendants(rec.proc.pid)
    res = rec.finish()
    if found is None:
        return [], res["startup_s"], "bpftool is missing or failed (apt-get install -y bpftool)"
    hooks = sorted({(a.get("fd_type", "?"), a.get("tracepoint", "?")) for a in found
                    if a.get("pid") in pids and a.get("tracepoint")})
    if not hooks:
        return [], res["startup_s"], f"no hooks seen from osrewind record {' '.join(flags)}: {res.get('error')}"
    return hooks, res["startup_s"], None


# ---------------------------------------------------------------- the hook floor (empty programs)

FLOOR_C = """
int empty_tp(void *ctx) { return 0; }
int empty_raw(struct bpf_raw_tracepoint_args *ctx) { return 0; }
"""


def hold_floor(spec: str) -> None:
    """Helper process: attach empty programs to the hooks in SPEC (JSON), say 'ready', hold until
    stdin closes, then exit (the kernel detaches as the fds close)."""
    import bcc  # noqa: PLC0415 - only this helper process needs BCC

    hooks = json.loads(spec)
    t = time.monotonic()
    b = bcc.BPF(text=FLOOR_C)
    t_compiled = time.monotonic()
    attached, skipped = 0, []
    for kind, name in hooks:
        try:
            if kind == "raw_tracepoint":
                b.attach_raw_tracepoint(tp=name.encode(), fn_name=b"empty_raw")
            else:
                cat = category_of(name)
                if cat is None:
                    raise RuntimeError("no such tracepoint")
                b.attach_tracepoint(tp=f"{cat}:{name}".encode(), fn_name=b"empty_tp")
            attached += 1
        except Exception as exc:  # noqa: BLE001 - reported, the floor says what it lacks
            skipped.append(f"{kind}:{name} ({exc})")
    print(json.dumps({"ready": attached, "skipped": skipped, "compile_s": t_compiled - t,
                      "attach_s": time.monotonic() - t_compiled}), flush=True)
    sys.stdin.read()
    os._exit(0)


class Floor:
    def __init__(self, hooks: list[tuple[str, str]]) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--hold-floor", json.dumps(hooks)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("floor helper failed (see stderr)")
        self.info = json.loads(line)

    def close(self) -> float:
        t = time.monotonic()
        self.proc.stdin.close()
        self.proc.wait(120)
        return time.monotonic() - t


# ---------------------------------------------------------------- other tracers

def tool_check(name: str) -> str | None:
    """None when the tool works here, else why not."""
    if name == "strace":
        return None if shutil.which("strace") else "strace not installed (apt-get install -y strace)"
    if name == "perf":
        if not shutil.which("perf"):
            return "perf not installed (apt-get install -y linux-perf)"
        p = subprocess.run(["perf", "trace", "-o", "/dev/null", "--", "true"], capture_output=True, text=True, env=ENV)
        return None if p.returncode == 0 else f"perf trace fails: {(p.stderr.strip().splitlines() or ['?'])[-1]}"
    if name == "bpftrace":
        if not shutil.which("bpftrace"):
            return "bpftrace not installed (apt-get install -y bpftrace)"
        return None
    return None


BPFTRACE_PROG = 'tracepoint:raw_syscalls:sys_enter /pid == cpid/ { printf("%d %s %d\\n", pid, comm, args->id); }'


def run_tool(name: str, n: int, scratch: str) -> dict:
    t0 = time.monotonic()
    extra: dict = {}
    if name == "strace":
        p = subprocess.run(["strace", "-f", "-o", "/dev/null", *dd_cmd(n)], stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=ENV, text=True)
    elif name == "perf":
        p = subprocess.run(["perf", "trace", "-o", "/dev/null", "--", *dd_cmd(n)], stdin=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=ENV, text=True)
    else:
        out = os.path.join(scratch, "bpftrace.out")
        p = subprocess.run(["bpftrace", "-o", out, "-e", BPFTRACE_PROG, "-c", " ".join(dd_cmd(n))],
                           stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                           env=ENV, text=True)
        lines, lost = 0, 0
        try:
            with open(out, errors="replace") as f:
                for line in f:
                    lines += 1
                    m = re.match(r"Lost (\d+) events", line)
                    if m:
                        lost += int(m.group(1))
            os.unlink(out)
        except OSError:
            pass
        extra = {"events": max(0, lines - 1), "lost": lost}  # minus "Attaching 1 probe..."
    total = time.monotonic() - t0
    t = dd_seconds(p.stderr)
    res = {"dd_s": t, "total_s": total, **extra}
    if t is None:
        res["error"] = (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1][-300:]
    return res


# ---------------------------------------------------------------- the run

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[1:]))
    ap.add_argument("--count", type=int, default=3_000_000, help="dd count for the main rows (default 3000000)")
    ap.add_argument("--slow-count", type=int, default=300_000,
                    help="dd count for strace / perf trace / bpftrace (default 300000)")
    ap.add_argument("--oos-count", type=int, default=300_000,
                    help="dd count for the out-of-scope and after-record rows (default 300000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--reps", type=int, default=3, help="short baseline dd runs per round (default 3)")
    ap.add_argument("--linger", type=float, default=10.0, help="seconds of dd after record returns (default 10)")
    ap.add_argument("--sleep", type=float, default=10.0, help="the recorded sleep of the out-of-scope rows (default 10)")
    ap.add_argument("--skip", action="append", default=[],
                    help="leave out a row group: osrewind, no-sched, strace, perf, bpftrace, oos (repeatable)")
    ap.add_argument("--rev", help="bench osrewind as committed at this git revision (exported to the scratch "
                    "dir and run from there), not the working tree: e.g. --rev HEAD while probes/ is being edited")
    ap.add_argument("--quiet-timeout", type=float, default=90.0,
                    help="before each step, wait up to this long for no BPF tracepoint attached on the machine (default 90)")
    ap.add_argument("--db", help="scratch store (default: a new directory under /tmp, removed at the end)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch store")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON document to FILE")
    ap.add_argument("--from-json", metavar="FILE", help="print the table of a JSON document written by --json-out")
    ap.add_argument("--hold-floor", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            print_table(json.load(f))
        return 0
    if args.hold_floor:
        hold_floor(args.hold_floor)
        return 0
    if os.geteuid() != 0:
        print("flood.py: needs root (it attaches BPF programs)", file=sys.stderr)
        return 2

    ensure_tracefs()
    scratch = tempfile.mkdtemp(prefix="osrewind-flood-", dir="/tmp")
    db = args.db or os.path.join(scratch, "store")
    global OSREWIND_TREE
    if args.rev:
        OSREWIND_TREE = os.path.join(scratch, "tree")
        benchlib.export_rev(args.rev, Path(OSREWIND_TREE))
    osrewind_what = benchlib.describe_tree(args.rev, ["probes", "ingest", "osrewind"])
    notes: list[str] = []
    quiet = Quiet(args.quiet_timeout)
    if quiet.baseline:
        notes.append(f"{quiet.baseline} BPF tracepoint attachments (another user's tracer) were present at the start")
    if not shutil.which("bpftool"):
        notes.append("bpftool missing: no hook discovery, no floor, no quiescence checks (apt-get install -y bpftool)")

    # hooks per option set, and a first start-up figure each
    hooks: dict[str, list] = {}
    startup_probe: dict[str, float | None] = {}
    for mode, flags in MODES.items():
        progress(f"flood: discovering the hooks of osrewind record {' '.join(flags) or '(default)'}")
        h, st, why = discover_hooks(db, flags)
        hooks[mode], startup_probe[mode] = h, st
        if why:
            notes.append(f"floor {mode}: {why}")
        quiet.wait()

    tools = {t: tool_check(t) for t in ("strace", "perf", "bpftrace") if t not in args.skip}
    counts_needed = {args.count}
    if any(tools.get(t) is None for t in tools):
        counts_needed.add(args.slow_count)
    if "oos" not in args.skip:
        counts_needed.add(args.oos_count)

    samples: dict[str, dict[int, list[float]]] = {}
    extras: dict[str, list[dict]] = {}

    def add(row: str, n: int, t: float | None, extra: dict | None = None) -> None:
        samples.setdefault(row, {}).setdefault(n, []).append(t)
        if extra is not None:
            extras.setdefault(row, []).append(extra)

    def reps(n: int) -> int:
        return 1 if n >= 1_000_000 else args.reps

    def step_untraced() -> None:
        for n in sorted(counts_needed):
            for _ in range(reps(n)):
                add("untraced", n, run_dd(n), {"attached": hooks_present()})

    def step_floor(mode: str, counts: set[int]) -> None:
        if not hooks.get(mode):
            return
        f = Floor(hooks[mode])
        for n in sorted(counts):
            for _ in range(reps(n)):
                add(f"floor {mode}", n, run_dd(n))
        detach = f.close()
        extras.setdefault(f"floor {mode}", []).append({**f.info, "detach_s": detach})

    def step_record(row: str, flags: list[str]) -> None:
        rec = Recording(db, flags, dd_cmd(args.count))
        res = rec.finish()
        add(row, args.count, res["dd_s"], res)

    def step_tool(name: str) -> None:
        res = run_tool(name, args.slow_count, scratch)
        add(name, args.slow_count, res["dd_s"], res)

    def step_oos(mode: str) -> None:
        row = f"out-of-scope {mode}"
        rec = Recording(db, MODES[mode], ["sleep", str(args.sleep)])
        rec.ready.wait(180)
        t_ready = rec.t_ready
        during = []
        if t_ready is None:  # the recorder did not start: nothing to measure during it
            t_ready = -1e9
        # leave a margin before the sleep ends, so no dd overlaps the recorder's own shutdown
        while time.monotonic() < t_ready + args.sleep - 2.0 and rec.proc.poll() is None:
            during.append(run_dd(args.oos_count))
        res = rec.finish()
        for t in during:
            add(row + " (during)", args.oos_count, t)
        after, gone_at = [], None
        t_exit = res["t_exit"]
        while time.monotonic() < t_exit + args.linger:
            t_start = time.monotonic() - t_exit
            after.append((round(t_start, 3), run_dd(args.oos_count)))
            if gone_at is None and hooks_present() == 0:
                gone_at = round(time.monotonic() - t_exit, 3)
        for _, t in after:
            add(row + " (after record)", args.oos_count, t)
        res.update(during=during, after=after, hooks_gone_after_s=gone_at)
        extras.setdefault(row + " (during)", []).append(res)
        extras.setdefault(row + " (after record)", []).append({"first_dd_s": after[0][1] if after else None,
                                                              "hooks_gone_after_s": gone_at, "after": after})

    steps: list[tuple[str, callable]] = [("untraced", step_untraced)]
    steps.append(("floor default", lambda: step_floor("default", counts_needed)))
    if "no-sched" not in args.skip:
        steps.append(("floor no-sched", lambda: step_floor("no-sched", {args.count})))
    if "oos" not in args.skip:
        steps.append(("floor fd-only", lambda: step_floor("fd-only", {args.oos_count})))
    if "osrewind" not in args.skip:
        steps.append(("osrewind default", lambda: step_record("osrewind record", [])))
    if "no-sched" not in args.skip:
        steps.append(("osrewind --no-sched", lambda: step_record("osrewind record --no-sched", ["--no-sched"])))
    for t, why in tools.items():
        if why is None:
            steps.append((t, lambda t=t: step_tool(t)))
    if "oos" not in args.skip:
        steps.append(("out-of-scope default", lambda: step_oos("default")))
        steps.append(("out-of-scope fd-only", lambda: step_oos("fd-only")))

    t_run = time.monotonic()
    loads: list[float] = []
    rounds_done = 0
    try:
        quiet.wait()
        for r in range(args.rounds):
            k = r % len(steps)
            for name, fn in steps[k:] + steps[:k]:
                progress(f"flood: round {r + 1}/{args.rounds}: {name} ({time.monotonic() - t_run:.0f}s)")
                loads.append(os.getloadavg()[0])
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - one row failing must not lose the others
                    extras.setdefault(name, []).append({"error": str(exc)[-300:]})
                quiet.wait()
            rounds_done += 1
    except KeyboardInterrupt:  # Ctrl-C: report what the finished steps measured
        notes.append(f"interrupted during round {rounds_done + 1}: {rounds_done} complete rounds, "
                     "plus the steps of the interrupted round that had finished")
    progress(f"flood: done in {time.monotonic() - t_run:.0f}s")
    benchlib.progress_end()
    if quiet.timeouts:
        notes.append(f"{quiet.timeouts} of {quiet.steps} steps started with BPF tracepoints still attached after "
                     f"waiting {args.quiet_timeout:g} s (another user's tracer, or a slow detach): those rows paid them")
    if any(e.get("attached") for e in extras.get("untraced", [])):
        notes.append("some untraced samples ran while BPF tracepoints were attached (foreign tracers)")

    # ------------------------------------------------------------ rows
    def stat(row: str, n: int) -> dict | None:
        xs = samples.get(row, {}).get(n)
        return summarize(xs) if xs else None

    def make_row(label: str, row: str, n: int, floor: str | None, extra_keys=()) -> dict:
        s = stat(row, n) or {"n": 0, "min": None, "median": None}
        fl = stat(f"floor {floor}", n) if floor else None
        out = {"row": label, "count": n, "dd_s": s,
               "ns_per_syscall": {k: (s[k] / (2 * n) * 1e9 if s[k] else None) for k in ("min", "median")},
               "x_untraced": ratio(s, stat("untraced", n)),
               "floor": floor, "x_floor": ratio(s, fl)}
        ex = [e for e in extras.get(row, []) if isinstance(e, dict)]
        for key in extra_keys:
            vals = [e.get(key) for e in ex if e.get(key) is not None]
            if vals:
                out[key] = summarize(vals) if isinstance(vals[0], float) else {
                    "min": min(vals), "median": statistics.median(vals), "max": max(vals), "n": len(vals)}
        errs = [e["error"] for e in ex if e.get("error")]
        if errs:
            out["error"] = errs[-1]
        return out

    def section(title: str) -> None:
        rows.append({"section": title})

    rows: list[dict] = []
    section(f"1. syscall flood: dd count={args.count:,}")
    rows.append(make_row("untraced", "untraced", args.count, None))
    for mode in ("default", "no-sched"):
        if hooks.get(mode) and (mode == "default" or "no-sched" not in args.skip):
            rows.append(make_row(f"hook floor ({mode}: {len(hooks[mode])} empty progs)", f"floor {mode}",
                                 args.count, None))
            rows[-1]["x_floor"] = {"min": 1.0, "median": 1.0}
    if "osrewind" not in args.skip:
        rows.append(make_row("osrewind record", "osrewind record", args.count, "default",
                             ("events", "lost", "startup_s", "after_dd_s")))
    if "no-sched" not in args.skip:
        rows.append(make_row("osrewind record --no-sched", "osrewind record --no-sched", args.count,
                             "no-sched", ("events", "lost", "startup_s", "after_dd_s")))
    if tools:
        section(f"other tracers: dd count={args.slow_count:,} (--slow-count), against untraced and floor at that count")
    if tools and any(w is None for w in tools.values()):
        rows.append(make_row("untraced", "untraced", args.slow_count, None))
        rows.append(make_row("hook floor (default)", "floor default", args.slow_count, None))
    labels = {"strace": "strace -f -o /dev/null", "perf": "perf trace -o /dev/null",
              "bpftrace": "bpftrace, printf per syscall of dd"}
    for t, why in tools.items():
        if why is None:
            rows.append(make_row(labels[t], t, args.slow_count, "default", ("events", "lost", "total_s")))
        else:
            rows.append({"row": labels[t], "count": args.slow_count, "error": why})
    if "oos" not in args.skip:
        n = args.oos_count
        section(f"3. a dd NOT in the recording's scope: count={n:,} (--oos-count), back to back")
        rows.append(make_row("untraced", "untraced", n, None))
        rows.append(make_row("hook floor (default)", "floor default", n, None))
        rows.append(make_row("hook floor (fd-only)", "floor fd-only", n, None))
        for mode in ("default", "fd-only"):
            flags = " ".join(MODES[mode]) or "(default)"
            rows.append(make_row(f"not in scope, during record ({mode})",
                                 f"out-of-scope {mode} (during)", n, mode))
            rows.append(make_row(f"same dd, {args.linger:g}s right after record ({mode})",
                                 f"out-of-scope {mode} (after record)", n, mode))

    linger = {}
    for mode in ("default", "fd-only"):
        ex = extras.get(f"out-of-scope {mode} (after record)", [])
        if ex:
            linger[mode] = {
                "hooks_gone_after_s": [e.get("hooks_gone_after_s") for e in ex],
                "first_dd_s": [e.get("first_dd_s") for e in ex],
                "timeline": [e.get("after") for e in ex],
            }
    report = {
        "bench": "flood", "osrewind": osrewind_what, "host": os.uname().nodename, "kernel": os.uname().release, "cpus": os.cpu_count(),
        "workload": f"{DD} if=/dev/zero of=/dev/null bs=1 count=N (2 syscalls per byte)",
        "count": args.count, "slow_count": args.slow_count, "oos_count": args.oos_count, "rounds": args.rounds, "rounds_done": rounds_done,
        "reps_short": args.reps,
        "hooks": {m: [f"{k}:{n}" for k, n in h] for m, h in hooks.items()},
        "startup_first_s": startup_probe,
        "floor_helper": {k[6:]: v for k, v in extras.items() if k.startswith("floor ")},
        "linger": linger, "rows": rows, "notes": notes,
        "tools_unavailable": {t: w for t, w in tools.items() if w},
        "wall_s": time.monotonic() - t_run,
        "loadavg_1min_at_steps": summarize(loads) | {"max": max(loads) if loads else None},
    }
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1, default=str)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print_table(report)
    if not args.keep and not args.db:
        shutil.rmtree(scratch, ignore_errors=True)
    elif args.keep:
        print(f"scratch store kept: {db}", file=sys.stderr)
    return 0


def print_table(r: dict) -> None:
    print(f"flood: {r['workload']} on {r['kernel']} ({r['cpus']} CPUs), {r['rounds_done']} interleaved rounds; "
          f"osrewind: {r['osrewind']}")
    print("dd's own elapsed time (from its stderr); min/median over rounds; ratios are min/min and "
          "median/median; ns/sys = elapsed / 2N")
    print("x floor: against empty programs on the same hooks as the recorder's options (same count, same run); "
          "fd-only = --no-syscalls --no-sched")
    hdr = (f"{'row':<44} {'count':>8} {'dd s min/med':>15} {'ns/sys':>7} {'x untraced':>11} {'x floor':>11} "
           f"{'lost (med)':>11} {'events (med)':>13} {'start-up s':>10} {'after dd s':>10}")
    print(hdr)
    print("-" * len(hdr))
    for row in r["rows"]:
        if "section" in row:
            print(f"-- {row['section']}")
            continue
        if "dd_s" not in row:
            print(f"{row['row']:<44} {row['count']:>8}  not measured: {row.get('error')}")
            continue
        med = lambda k, row=row: (row.get(k) or {}).get("median")  # noqa: E731
        line = (f"{row['row']:<44} {row['count']:>8} {pair(row['dd_s'], '.3f'):>15} "
                f"{fmt(row['ns_per_syscall'].get('median'), '.0f'):>7} {pair(row['x_untraced'], '.2f'):>11} "
                f"{pair(row['x_floor'], '.2f'):>11} {fmt(med('lost'), ',.0f'):>11} {fmt(med('events'), ',.0f'):>13} "
                f"{fmt(med('startup_s'), '.2f'):>10} {fmt(med('after_dd_s'), '.2f'):>10}")
        if row.get("error"):
            line += f"  (error: {row['error'][:80]})"
        print(line)
    print()
    for mode, h in r["hooks"].items():
        kinds = {}
        for x in h:
            kinds[x.split(":")[0]] = kinds.get(x.split(":")[0], 0) + 1
        print(f"hooks of record {mode}: {len(h)} ({', '.join(f'{v} {k}' for k, v in kinds.items())})")
    for mode, infos in r.get("floor_helper", {}).items():
        det = [i["detach_s"] for i in infos if i.get("detach_s") is not None]
        skipped = sorted({x for i in infos for x in i.get("skipped", [])})
        if det:
            print(f"floor {mode}: the kernel took {min(det):.1f}-{max(det):.1f} s (median "
                  f"{statistics.median(det):.1f}) to detach its {infos[0].get('ready')} empty programs"
                  + (f"; not attachable: {', '.join(skipped)}" if skipped else ""))
    for mode, gone in r["linger"].items():
        print(f"after record ({mode}) returns: no tracepoint hook or program left after {gone['hooks_gone_after_s']} s "
              "(checked between dds; None: not within the window, or a foreign tracer); "
              f"first dd {[fmt(x, '.3f') for x in gone['first_dd_s']]} s")
    if any(row.get("row", "").startswith(("strace", "perf trace", "bpftrace")) for row in r["rows"]):
        print(f"the strace/perf/bpftrace rows run dd with count={r['slow_count']} (--slow-count): each costs "
              "50-500x per syscall, so the full count would take many minutes per round; their ratios are "
              "against untraced and the floor measured at the same count in the same rounds, i.e. per-syscall cost ratios")
    for n in r["notes"]:
        print("note:", n)
    la = r["loadavg_1min_at_steps"]
    print(f"wall time {r['wall_s']:.0f} s; 1-min load average at the steps: median {fmt(la['median'], '.2f')}, "
          f"max {fmt(la['max'], '.2f')} (2 CPUs; the bench itself adds about 1)")


if __name__ == "__main__":
    sys.exit(main())
