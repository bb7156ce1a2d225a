"""Events of a run: filtered listing, reverse stepping, and how each fact reads to a person.

``events(store, run, EventFilter(...))`` yields dicts in time order (newest first with
``backwards=True``, which is how "the previous event that touched X before T" is answered).
"""

from __future__ import annotations

import errno
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from osrewind.errors import UsageError
from osrewind.probes import syscall_table
from osrewind.probes.records import AT_FDCWD, KIND_CODES, O_CLOEXEC, drop_text
from osrewind.queries import named
from osrewind.queries.runs import RunInfo

PAGE = 10_000
INT64_MAX = 2**63 - 1


@dataclass
class EventFilter:
    t_from: int | None = None
    t_to: int | None = None
    pids: list[int] = field(default_factory=list)
    tree: bool = False                 # also every descendant of `pids`
    kinds: list[str] = field(default_factory=list)
    syscalls: list[str] = field(default_factory=list)   # syscall names: the syscall stream, these only
    path_glob: str = ""
    failed: bool = False
    limit: int | None = None
    backwards: bool = False


def check_glob(store, glob: str) -> None:
    """A ``--path`` glob the engine cannot compile is the user's mistake: one line, exit 2."""
    from osrewind.errors import StoreError, UsageError

    try:
        store.query("SELECT match('', {re:String})", {"re": glob_to_re2(glob)})
    except StoreError as exc:
        why = str(exc).split("cannot compile re2: ")[-1].split(". Look at")[0].split(" (")[0]
        raise UsageError(f"bad --path glob {glob!r}: {why}") from None


def glob_to_re2(glob: str) -> str:
    """Shell-style path glob as an anchored RE2 pattern: ``*`` and ``?`` stay within one path
    component, ``**`` crosses components and ``**/`` also matches nothing, so ``**/out.txt``
    matches ``out.txt``, ``build/out.txt`` and ``/tmp/out.txt``; ``[...]`` classes pass through.
    Paths are matched as the program passed them to the kernel (relative paths stay relative).

    RE2 reads text as UTF-8, and a path need not be: the store matches the path with each run of
    bytes that are not UTF-8 replaced by U+FFFD (``toValidUTF8``), and such bytes in the glob (kept
    as surrogateescape) become U+FFFD here, so ``*`` crosses them and ``bad\\xffname`` finds the
    path (as well as one with other bytes that are not UTF-8 in that place)."""
    out, i = [], 0
    while i < len(glob):
        c = glob[i]
        if "\udc80" <= c <= "\udcff":  # a byte that is not UTF-8: one U+FFFD per run, like toValidUTF8
            if not out or out[-1] != "\ufffd":
                out.append("\ufffd")
            i += 1
            continue
        if glob.startswith("**/", i):
            out.append("(.*/)?")
            i += 3
            continue
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = glob.find("]", i + 1)
            if j == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : j]
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + "$"


def descendants(store, run: RunInfo, pids: list[int]) -> list[int]:
    children: dict[int, set[int]] = {}
    for parent, child in named.run(store, "process_births", run=run.run_id):
        children.setdefault(int(parent), set()).add(int(child))
    found, stack = set(), list(pids)
    while stack:
        p = stack.pop()
        if p in found:
            continue
        found.add(p)
        stack.extend(children.get(p, ()))
    return sorted(found)


def events(store, run: RunInfo, flt: EventFilter) -> Iterator[dict]:
    unknown = [k for k in flt.kinds if k not in KIND_CODES]
    if unknown:
        raise UsageError(f"unknown event kind {unknown[0]!r}: one of {', '.join(sorted(KIND_CODES))}")
    nrs = []
    for name in flt.syscalls:
        nr = syscall_table.number(name)
        if nr is None:
            raise UsageError(f"unknown syscall {name!r} for {syscall_table.machine()}")
        nrs.append(nr)
    pids = descendants(store, run, flt.pids) if (flt.tree and flt.pids) else list(flt.pids)
    t_from = run.start_ns if flt.t_from is None else flt.t_from
    t_to = max(run.end_ns, run.start_ns) if flt.t_to is None else flt.t_to
    remaining = INT64_MAX if flt.limit is None else flt.limit
    params: dict[str, Any] = {"run": run.run_id, "pids": pids, "kinds": list(flt.kinds),
                              "path_re": glob_to_re2(flt.path_glob) if flt.path_glob else "", "nrs": nrs,
                              "failed": int(flt.failed), "backwards": int(flt.backwards)}
    # page with a (ts, seq) cursor so huge runs stream in bounded memory
    c_ts, c_seq = (t_to + 1, 0) if flt.backwards else (t_from - 1, 2**64 - 1)
    while remaining > 0:
        page = min(PAGE, remaining)
        rows = named.rows(named.run_arrow(store, "events_filtered", t_from=t_from, t_to=t_to, c_ts=c_ts,
                                          c_seq=c_seq, lim=page, **params))
        for row in rows:
            yield _clean(row)
        remaining -= len(rows)
        if len(rows) < page:
            return
        c_ts, c_seq = rows[-1]["ts"], rows[-1]["seq"]


def _text(v: Any) -> str:
    return v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) else ("" if v is None else str(v))


def _clean(row: dict) -> dict:
    row["comm"], row["path"], row["path2"] = _text(row["comm"]), _text(row["path"]), _text(row["path2"])
    if row["kind"] in ("syscall", "syscall_agg"):
        row["syscall"] = syscall_table.name(row["nr"])
    row["argv"] = [_text(a) for a in row["argv"]]
    return row


# ------------------------------------------------------------------ for people


def errname(ret: int) -> str:
    return errno.errorcode.get(-ret, f"errno {-ret}")


def signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


_ARGC = {"getpid": 0, "getppid": 0, "gettid": 0, "sched_yield": 0, "close": 1, "exit": 1, "exit_group": 1,
         "dup": 1, "brk": 1, "openat": 4, "read": 3, "write": 3, "pread64": 4, "pwrite64": 4, "lseek": 3,
         "fstat": 2, "newfstatat": 4, "mmap": 6, "munmap": 2, "mprotect": 3, "ioctl": 3, "fcntl": 3,
         "clock_nanosleep": 4, "nanosleep": 2, "wait4": 4, "kill": 2, "execve": 3, "rt_sigaction": 4,
         "rt_sigprocmask": 4, "pipe2": 2, "dup2": 2, "dup3": 3, "chdir": 1, "mkdir": 2, "unlink": 1,
         "socket": 3, "connect": 3, "bind": 3, "listen": 2, "accept4": 4, "sendto": 6, "recvfrom": 6}
TASK_REPORT_MAX = 0x100  # sched_switch: set when the task was preempted
TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV"}


def is_preempted(prev_state: int) -> bool:
    return bool(prev_state & TASK_REPORT_MAX) or prev_state == 0


def task_state(prev_state: int) -> str:
    letters = [c for bit, c in zip(range(8), "SDTtXZPI", strict=True) if prev_state & (1 << bit)]
    return "".join(letters) or "R"


def _arg(v: int) -> str:
    return hex(v) if v > 0xFFFFFF or v < -0xFFFF else str(v)


def _fd(v: int) -> str:
    return "AT_FDCWD" if v == AT_FDCWD else str(v)


def _result(ret: int, ok: str) -> str:
    return f"-> {errname(ret)}" if ret < 0 else ok


def describe(e: dict) -> str:
    """One line for a fact, as strace would say it."""
    k, ret, a0, a1, a2, a3 = e["kind"], e["ret"], e["a0"], e["a1"], e["a2"], e["a3"]
    path = e["path"]
    if k == "fork":
        what = "thread" if a2 != -1 and a2 & 0x10000 else "process"
        return f"fork -> {what} {a1}"
    if k == "exec":
        return f"exec {path}"
    if k == "exec_args":
        return "exec argv " + " ".join(e["argv"]) + (" ..." if a1 else "")
    if k == "exec_fail":
        return f"exec failed {_result(ret, '')}"
    if k == "exit_call":
        return f"{'exit_group' if a1 else 'exit'}({a0})"
    if k == "task_exit":
        return "process exit" if a0 else f"thread {e['tid']} exit"
    if k == "wait":
        if ret <= 0:
            return f"wait {_result(ret, 'no child')}"
        st = a0 & 0x7F
        how = f"killed by {signame(st)}" if st else f"exited {(a0 >> 8) & 0xFF}"
        return f"wait -> {ret} {how}"
    if k == "lost":
        return f"LOST {a0} records ({drop_text(a1)})"  # a1: where (records.DROPS)
    if k == "open":
        where = path if path.startswith("/") or a0 == AT_FDCWD else f"{path} (dirfd {a0})"
        cloexec = " O_CLOEXEC" if a2 & O_CLOEXEC else ""
        opened = e.get("path2", "")
        if opened and opened != path:  # what the kernel opened: a symlink followed, a relative path
            where += f" ({opened})"
        return f"open {where} flags={a2:#o}{cloexec} {_result(ret, f'-> fd {ret}')}"
    if k == "close":
        return f"close fd {a0} {_result(ret, '')}".rstrip()
    if k == "close_range":
        return f"close_range {a0}..{a1} flags={a2} {_result(ret, '')}".rstrip()
    if k == "dup":
        return f"dup fd {a0} {_result(ret, f'-> fd {ret}')}"
    if k == "setfd":
        return f"set fd {a0} cloexec={'on' if a2 & 1 else 'off'} {_result(ret, '')}".rstrip()
    if k == "pipe":
        return f"pipe {_result(ret, f'-> fds {a0} (read), {a1} (write)')}"
    if k in ("chdir", "unlink", "mkdir"):
        return f"{k} {path} {_result(ret, '')}".rstrip()
    if k == "fchdir":
        return f"fchdir fd {a0} {_result(ret, '')}".rstrip()
    if k == "rename":
        return f"rename {path} -> {e['path2']} {_result(ret, '')}".rstrip()
    if k == "socket":
        fam = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6"}.get(a0, f"family {a0}")
        typ = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW"}.get(a1 & 0xF, f"type {a1 & 0xF}")
        return f"socket {fam} {typ} {_result(ret, f'-> fd {ret}')}"
    if k == "socketpair":
        return f"socketpair {_result(ret, f'-> fds {a0}, {a1}')}"
    if k == "accept":
        peer = f" from {path}" if path else ""
        return f"accept on fd {a0} {_result(ret, f'-> fd {ret}{peer}')}"
    if k in ("bind", "connect"):
        return f"{k} fd {a0} {'to ' if k == 'connect' else ''}{path} {_result(ret, '')}".rstrip()
    if k == "identity":
        return f"process {e['tgid']} as the kernel keeps it: started at {a0}, parent {a1}"
    if k == "cgroup":
        return f"task {e['tid']} moved to cgroup {path}" + (f" (hierarchy {a0})" if a0 else "")
    if k == "io":
        return f"fd {a0}: {a1} bytes out, {a2} bytes in over {a3} calls (aggregated)"
    if k == "sockname":
        return f"getsockname fd {a0} {_result(ret, f'-> {path}')}"
    if k == "listen":
        return f"listen fd {a0} backlog {a1} {_result(ret, '')}".rstrip()
    if k == "shutdown":
        how = {0: "SHUT_RD", 1: "SHUT_WR", 2: "SHUT_RDWR"}.get(a1, a1)
        return f"shutdown fd {a0} {how} {_result(ret, '')}".rstrip()
    if k == "sock_state":
        return f"tcp {path} -> {e['path2']}: {TCP_STATES.get(a0, a0)} -> {TCP_STATES.get(a1, a1)}"
    if k == "anonfd":
        return f"anon fd {path} {_result(ret, f'-> fd {ret}')}".replace("  ", " ")
    if k == "signal_generate":
        results = {0: "delivered", 1: "ignored", 2: "already pending", 3: "queue overflow", 4: "info lost"}
        return f"send {signame(a0)} to {a1} ({path}) {results.get(ret, ret)}"
    if k == "signal_deliver":
        handler = {0: "default action", 1: "ignored"}.get(a3, "handler")
        return f"receive {signame(a0)} ({handler})"
    if k == "syscall":
        name = syscall_table.name(e["nr"])
        args = ", ".join(_arg(v) for v in (a0, a1, a2, a3, e.get("a4", 0), e.get("a5", 0))[:_ARGC.get(name, 6)])
        res = f"{errname(ret)} ({ret})" if -4096 < ret < 0 else (hex(ret) if ret > 0xFFFFFF else str(ret))
        return f"{name}({args}) = {res}  <{e.get('dur', 0) / 1e3:.1f}us>"
    if k == "syscall_agg":  # counted by the kernel while the syscall stream was degraded
        name = syscall_table.name(e["nr"])
        window = (a2 - e["ts"]) / 1e6
        failed = f", {a1} failed" if a1 else ""
        return (f"{name} x{a0}{failed}  <{e.get('dur', 0) / 1e3:.1f}us total> "
                f"(aggregated over {window:.3f} ms: stream degraded)")
    if k == "sched_switch":
        prev = f"{e['tid']}" if e["tid"] else f"untracked {a3}"
        why = "preempted" if is_preempted(a0) else f"sleeps ({task_state(a0)})"
        nxt = f"{a1} ({path})" if a1 else "idle"
        wait = f", waited {e.get('dur', 0) / 1e3:.1f}us runnable" if e.get("dur") else ""
        return f"cpu {e.get('cpu', 0)}: {prev} {why} -> {nxt}{wait}"
    if k == "sched_wakeup":
        return f"{'new task' if a1 else 'wakeup'} {e['tid']} on cpu {a0}"
    if k == "sched_migrate":
        return f"migrate {e['tid']} cpu {a0} -> {a1}"
    if k == "oom_victim":
        return f"OOM killer chose {a0} ({path}), {a2} pages"
    return k
