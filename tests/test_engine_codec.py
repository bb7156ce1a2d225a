"""The rewind engine's keyframe encoding (queries/engine/codec.py) and the open recording's cache
(queries/cache.py), without a store."""

from __future__ import annotations

import threading

from osrewind.probes.records import AT_FDCWD, KIND_CODES, O_CLOEXEC
from osrewind.queries.cache import DOCS_KEPT, RecordingCache, cache_for
from osrewind.queries.engine import Machine, codec

K = KIND_CODES


def _busy_machine() -> Machine:
    m = Machine()
    m.set_io_numbers()
    m.add_snapshot_proc(10, 1, 5, "sh", "/bin/sh", ["sh"], "/w", 1, "/ctr")
    m.add_snapshot_fd(10, 0, "/dev/null", "file", 0)

    def fact(kind, tgid, ts, **kw):
        f = dict(ret=0, a0=0, a1=0, a2=0, a3=0, comm="sh", path="", path2="", argv=[], cpu=0, a5=0, nr=0, a4=0)
        f.update(kw)
        m.apply(ts, K[kind], tgid, kw.pop("tid", tgid), f["ret"], f["a0"], f["a1"], f["a2"], f["a3"], f["comm"],
                f["path"], f["path2"], f["argv"], f["cpu"], f["a5"], f["nr"], f["a4"])

    fact("open", 10, 20, ret=3, a0=AT_FDCWD, a2=O_CLOEXEC, path="a", path2="/w/a", a4=77, a5=(8 << 20) | 1)
    fact("socketpair", 10, 21, a0=4, a1=5, a2=1, a3=1, a4=12, a5=13)
    fact("dup", 10, 22, ret=6, a0=4)                     # fd 6 shares fd 4's socket
    fact("pipe", 10, 23, a0=7, a1=8, a4=99)
    fact("fork", 10, 30, a1=11, a4=29, a5=10)
    fact("rename", 10, 31, a0=AT_FDCWD, a1=AT_FDCWD, path="/w/b", path2="/w/a")  # fd 3 now '(deleted)'
    fact("exec_args", 11, 32, argv=["cat", "x"])
    fact("exec", 11, 33, path="/bin/cat", a4=29, a5=10)
    fact("sock_state", 10, 34, a0=7, a1=1, a5=0xFFFF1234, path="127.0.0.1:1", path2="127.0.0.1:2")
    fact("sched_switch", 11, 35, a0=0, a1=10, a2=10, path="sh", cpu=1)
    fact("close", 10, 36, a0=5)                          # a socket closed: remembered for late bytes
    fact("chdir", 11, 36, path="/lnk", path2="/real")                # learns /lnk -> /real
    fact("rename", 10, 37, a0=AT_FDCWD, a1=AT_FDCWD, path="/v", path2="/w", a3=3, a4=3)  # held: 1, 2 out
    fact("rename", 10, 37, a0=AT_FDCWD, a1=AT_FDCWD, path="/w/x", path2="/w/y", a3=1, a4=3)
    fact("exit_call", 11, 37, a0=3, a1=1)
    fact("task_exit", 11, 38, a0=1)
    return m


def test_a_keyframe_round_trips_every_part_of_the_state():
    m = _busy_machine()
    blob = codec.dump(m)
    back = codec.machine(codec.decode(blob))
    assert codec.decode(codec.dump(back)) == codec.decode(blob)  # (marshal's bytes depend on sharing)
    assert {p: q.to_json() for p, q in back.procs.items()} == {p: q.to_json() for p, q in m.procs.items()}
    assert {p: q.to_json() for p, q in back.exited.items()} == {p: q.to_json() for p, q in m.exited.items()}
    f3 = back.procs[10].fds[3]
    assert (f3.target, f3.ino, f3.dev, f3.gone) == ("/w/a (deleted)", 77, m.procs[10].fds[3].dev, False)
    assert back.procs[10].fds[4].sock is back.procs[10].fds[6].sock   # still one socket
    assert back.procs[10].cgroup == "/ctr" and back.exited[11].exit_code == 3
    assert back.cpus[1].tid == 10 and back.tcp == m.tcp and back._closed_socks.keys() == {(10, 5)}
    assert back.sends == m.sends and back._pipe_seq == m._pipe_seq and back.aliases == {"/lnk": "/real"}
    assert back.held == m.held and len(back.held) == 1 and back.held[0][0].argv is not m.held[0][0].argv
    assert (back.rename_mark, back.renames_seen) == (m.rename_mark, m.renames_seen) == (1, {3})


def test_a_decoded_keyframe_shares_nothing_with_its_document():
    m = _busy_machine()
    doc = codec.decode(codec.dump(m))
    a, b = codec.machine(doc), codec.machine(doc)
    a.procs[10].fds[3].target = "changed"
    a.procs[10].argv.append("x")
    assert b.procs[10].fds[3].target == "/w/a (deleted)" and b.procs[10].argv == ["sh"]


def test_the_recording_cache_is_one_bounded_locked_object_per_store():
    class Store:  # any object a store is
        pass

    s1, s2 = Store(), Store()
    c = cache_for(s1)
    assert cache_for(s1) is c and cache_for(s2) is not c and isinstance(c, RecordingCache)
    calls = []
    got = [c.remember(c.positions, "run", lambda: calls.append(1) or [(1, 2)]) for _ in range(3)]
    assert got == [[(1, 2)]] * 3 and calls == [1]
    for i in range(DOCS_KEPT + 5):
        c.bounded_put(c.docs, ("run", i, 0), i)
    assert c.bounded_get(c.docs, ("run", 0, 0)) is None and c.bounded_get(c.docs, ("run", DOCS_KEPT + 4, 0)) == DOCS_KEPT + 4
    c.bounded_put(c.intervals, ("other", 1, 1), "x")
    c.forget("run")
    assert "run" not in c.positions and c.bounded_get(c.docs, ("run", DOCS_KEPT + 4, 0)) is None
    assert c.bounded_get(c.intervals, ("other", 1, 1)) == "x"
    errors = []

    def hammer(n):
        try:
            for i in range(2000):
                c.bounded_put(c.docs, (f"r{n}", i, 0), i)
                c.bounded_get(c.docs, (f"r{n}", i - 1, 0))
                if i % 100 == 0:
                    c.forget(f"r{n}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(c.docs.items) <= DOCS_KEPT
