"""Where the time went: the busiest processes, syscalls, files and network endpoints of a run, over
the whole run or a window around an instant."""

from __future__ import annotations

from osrewind.probes import syscall_table
from osrewind.queries import named
from osrewind.queries.runs import RunInfo

SECTIONS = ("processes", "syscalls", "files", "endpoints")


def top(store, run: RunInfo, t_from: int, t_to: int, limit: int = 10,
        sections: tuple[str, ...] = SECTIONS) -> dict[str, list[dict]]:
    params = {"run": run.run_id, "t_from": t_from, "t_to": t_to, "lim": limit}
    out: dict[str, list[dict]] = {}
    if "processes" in sections:
        out["processes"] = [
            {"pid": int(pid), "comm": comm, "cpu_ns": int(cpu), "syscalls": int(sc), "syscall_ns": int(sc_ns),
             "failed": int(failed), "events": int(ev)}
            for pid, comm, cpu, sc, sc_ns, failed, ev in named.run(store, "top_processes", **params)]
    if "syscalls" in sections:
        out["syscalls"] = [
            {"syscall": syscall_table.name(int(nr)), "nr": int(nr), "calls": int(calls), "total_ns": int(total),
             "max_ns": int(mx), "failed": int(failed), "processes": int(procs)}
            for nr, calls, total, mx, failed, procs in named.run(store, "top_syscalls", **params)]
    if "files" in sections:
        out["files"] = [
            {"path": path, "touches": int(n), "opens": int(opens), "failed": int(failed), "processes": int(procs),
             "kinds": list(kinds)}
            for path, n, opens, failed, procs, kinds in named.run(store, "top_files", **params)]
    if "endpoints" in sections:
        out["endpoints"] = [
            {"endpoint": ep, "events": int(n), "how": sorted(how), "failed": int(failed)}
            for ep, n, how, failed in named.run(store, "top_endpoints", **params)]
    return out
