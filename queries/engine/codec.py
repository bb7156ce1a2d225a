"""Keyframes: a Machine's whole state as bytes, and back (the rewind engine's snapshot encoding).
Pure: bytes in, bytes out; where keyframes are kept is ``queries/keyframes.py``'s business.
"""

from __future__ import annotations

import json
import marshal
import zlib

from osrewind.errors import StoreError
from osrewind.queries.engine.machine import Fact, Machine
from osrewind.queries.engine.model import CpuSlot, Fd, Proc, Sock

FORMAT = 2

# FORMAT 2: the state as plain tuples, lists and dicts (ints, strings, bools, None) in marshal's
# format, zlib level 1. marshal is in the standard library and decodes such data ~2x faster than
# json (and keeps int dict keys); it is only ever asked to load plain data (the top level is checked),
# never code. FORMAT 1 (JSON) keyframes from older stores are still read.
#
# A document is (FORMAT, procs, exited, socks, argv, pipe_seq, sched_seen, cpus, tcp, tcp_by_tid,
# closed, aliases: directories reached through symlinks, renames: (mark, numbers seen above it, held
# back: each (fact, source, target))); a process is (pid, start_ns, ppid, comm, exe, argv, cwd, threads, from_snapshot, exec_ns,
# orphaned, exit_code, exited_ns, run, on_cpu, fds, cgroup, uid); an fd is (fd, kind, target, cloexec, flags,
# since_ns, socket index or -1, inode, device, gone).


def document(m: Machine) -> tuple:
    socks: list[Sock] = []
    index: dict[int, int] = {}

    def sock_ref(s: Sock | None) -> int:
        if s is None:
            return -1
        i = index.get(id(s))
        if i is None:
            i = index[id(s)] = len(socks)
            socks.append(s)
        return i

    def proc(p: Proc) -> tuple:
        return (p.pid, p.start_ns, p.ppid, p.comm, p.exe, p.argv, p.cwd, p.threads, p.from_snapshot,
                p.exec_ns, p.orphaned, p.exit_code, p.exited_ns, p.run, p.on_cpu,
                [(f.fd, f.kind, f.target, f.cloexec, f.flags, f.since_ns, sock_ref(f.sock), f.ino, f.dev, f.gone)
                 for f in p.fds.values()], p.cgroup, p.uid)

    procs = [proc(p) for p in m.procs.values()]
    exited = [proc(p) for p in m.exited.values()]
    closed = [(pid, fd, sock_ref(s)) for (pid, fd), s in m._closed_socks.items()]
    return (FORMAT, procs, exited,
            [(s.family, s.type, s.local, s.remote, s.sk, s.listening, s.shut, s.sent, s.received) for s in socks],
            m._argv, m._pipe_seq, m.sched_seen,
            [(c.cpu, c.tid, c.tgid, c.comm, c.since_ns) for c in m.cpus.values()],
            m.tcp, m._tcp_by_tid, closed, m.aliases,
            (m.rename_mark, sorted(m.renames_seen), [(tuple(f), old, new) for f, old, new in m.held]))


def dump(m: Machine) -> bytes:
    return zlib.compress(marshal.dumps(document(m)), 1)


def decode(blob: bytes) -> tuple:
    """A keyframe's document (FORMAT 2 shape), from either format."""
    raw = zlib.decompress(blob)
    if raw[:1] == b"{":
        return _from_json(json.loads(raw))
    try:
        doc = marshal.loads(raw)
    except (ValueError, EOFError, TypeError) as exc:
        raise StoreError("keyframe unreadable: run 'osrewind reindex' on the run") from exc
    if not isinstance(doc, tuple) or len(doc) not in (11, 12, 13) or doc[0] != FORMAT:  # 11: no aliases yet, 12: no renames
        raise StoreError("keyframe format unknown to this osrewind: run 'osrewind reindex' on the run")
    return doc


def _from_json(doc: dict) -> tuple:
    if doc.get("format") != 1:
        raise StoreError("keyframe format unknown to this osrewind: run 'osrewind reindex' on the run")

    def proc(row: list) -> tuple:
        *head, run, on_cpu, fds = row
        return (*head, {int(t): s for t, s in run}, {int(t): c for t, c in on_cpu}, [tuple(f) for f in fds])

    return (FORMAT, [proc(r) for r in doc["procs"]], [proc(r) for r in doc["exited"]],
            [tuple(s) for s in doc["socks"]], {int(t): a for t, a in doc["argv"]}, doc["pipe_seq"],
            doc["sched_seen"], [tuple(c) for c in doc["cpus"]],
            {sk: (st, lo, re) for sk, st, lo, re in doc["tcp"]}, {int(t): sk for t, sk in doc["tcp_by_tid"]},
            [tuple(c) for c in doc["closed"]])


def machine(doc: tuple, m: Machine | None = None) -> Machine:
    """A fresh Machine from a document: nothing in it is shared with the document, which stays
    reusable (rewinds keep recent ones decoded)."""
    if m is None:
        m = Machine()
        m.set_io_numbers()
    (_fmt, procs, exited, sock_rows, argv, pipe_seq, sched_seen, cpus, tcp, tcp_by_tid, closed) = doc[:11]
    socks = [Sock(*s) for s in sock_rows]

    def proc(row: tuple) -> Proc:
        (pid, start_ns, ppid, comm, exe, pargv, cwd, threads, from_snapshot, exec_ns, orphaned, exit_code,
         exited_ns, run, on_cpu, fds) = row[:16]
        return Proc(pid, start_ns, ppid, comm, exe, list(pargv), cwd, threads, from_snapshot, exec_ns,
                    {f[0]: Fd(f[0], f[1], f[2], f[3], f[4], f[5], socks[f[6]] if f[6] >= 0 else None,
                              *f[7:10])  # inode, device, gone: not in keyframes written before them
                     for f in fds},
                    orphaned, exit_code, exited_ns, dict(run), dict(on_cpu),
                    row[16] if len(row) > 16 else "",   # the cgroup: not in keyframes written before it
                    row[17] if len(row) > 17 else -1)   # the uid: nor this

    m.procs = {p.pid: p for p in map(proc, procs)}
    m.exited = {p.pid: p for p in map(proc, exited)}
    m._argv = {t: list(a) for t, a in argv.items()}
    m._pipe_seq = pipe_seq
    m.sched_seen = sched_seen
    m.cpus = {c[0]: CpuSlot(*c) for c in cpus}
    m.tcp = dict(tcp)
    m._tcp_by_tid = dict(tcp_by_tid)
    m._closed_socks = {(pid, fd): socks[ref] for pid, fd, ref in closed}
    m.aliases = dict(doc[11]) if len(doc) > 11 else {}
    if len(doc) > 12:
        mark, seen, held = doc[12]
        m.rename_mark, m.renames_seen = mark, set(seen)
        m.held = [(Fact(*f[:12], list(f[12]), *f[13:]), old, new) for f, old, new in held]
    return m


def load(blob: bytes, m: Machine) -> Machine:
    return machine(decode(blob), m)
