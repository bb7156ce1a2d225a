"""Every kind decoded from byte fixtures, without root or a kernel.

The bytes are laid out as the kernel's rings lay them out (an 8-byte header with the BUSY/DISCARD
bits, then the record), packed here with ``struct`` field by field from the C declarations, not from
the numpy dtypes under test: the state lane's ``struct event``, ``struct event_short`` and compact
``struct fact``, the syscall lane's enter and exit
records (paired by ``decode.SyscallPairer``), the scheduler lane's ``struct sched_rec``."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from osrewind.ingest import decode
from osrewind.probes import records

RUN = "3f2a0000-0000-0000-0000-000000000001"
K = records.KIND_CODES
EVENT = "<QqqqqqqqQIIHHHHII16s512s"
FACT = "<QqqqqqqqQIIHHHHII16s"      # struct event without its string
EVENT_SHORT = FACT + "128s"          # and with a short one
SC_ENTER = "<QIIII8Q"
SC_EXIT = "<QIIq16s"
SCHED = "<QIIHHIqqqqQ16s16s"
X86_WINDOW = (7, 6, 5, 0, 2, 1)  # r10 r9 r8 ax cx dx si di: di, si, dx, r10, r8, r9


def slot(body: bytes, busy: bool = False, discard: bool = False) -> bytes:
    hlen = len(body) | (records.RB_BUSY if busy else 0) | (records.RB_DISCARD if discard else 0)
    pad = (-(8 + len(body))) % 8
    return struct.pack("<II", hlen, 0) + body + b"\0" * pad


def buf(*slots: bytes) -> np.ndarray:
    return np.frombuffer(b"".join(slots), dtype=np.uint8)


def event(ts, kind, tgid=7, tid=7, ret=0, a=(), s1=b"", s2=b"", comm=b"sh", nr=0, dur=0, cpu=1, flags=0) -> bytes:
    body = bytearray(b"\xaa" * 512)  # unwritten ring memory is junk: lengths decide
    body[: len(s1) + 1] = s1 + b"\0"
    if s2:
        body[256 : 256 + len(s2) + 1] = s2 + b"\0"
    args = (list(a) + [0] * 6)[:6]
    comm_b = (comm + b"\0" + b"\x55" * 16)[:16]
    return struct.pack(EVENT, ts, ret, *args, dur, tgid, tid, kind, len(s1), len(s2), nr, cpu, flags, comm_b,
                       bytes(body))


def fact(ts, kind, tgid=7, tid=7, ret=0, a=(), comm=b"sh", cpu=1) -> bytes:
    args = (list(a) + [0] * 6)[:6]
    return struct.pack(FACT, ts, ret, *args, 0, tgid, tid, kind, 0, 0, 0, cpu, 0, (comm + b"\0" + b"\x55" * 16)[:16])


def short_event(ts, kind, tgid=7, tid=7, ret=0, a=(), s1=b"", comm=b"sh", cpu=1) -> bytes:
    body = bytearray(b"\xaa" * 128)
    body[: len(s1) + 1] = s1 + b"\0"
    args = (list(a) + [0] * 6)[:6]
    return struct.pack(EVENT_SHORT, ts, ret, *args, 0, tgid, tid, kind, len(s1), 0, 0, cpu, 0,
                       (comm + b"\0" + b"\x55" * 16)[:16], bytes(body))


def enter(ts, tid, nr, args, tgid=None, cpu=0) -> bytes:
    regs = [0] * 8
    for i, w in enumerate(X86_WINDOW):
        regs[w] = args[i] & (2**64 - 1)
    return struct.pack(SC_ENTER, ts, tid, tgid or tid, nr, cpu, *regs)


def leave(ts, tid, ret, comm=b"dd", sent=True) -> bytes:
    """An exit record; ``sent``: it carries the thread's task name (else the ring's junk is there)."""
    name = (comm + b"\0" * 16)[:16] if sent else b"\x5a" * 16
    return struct.pack(SC_EXIT, ts, tid, records.SC_EXIT_COMM if sent else 0, ret, name)


def sched(ts, kind, tgid, tid, a=(0, 0, 0, 0), dur=0, comm=b"hog", s=b"", cpu=0) -> bytes:
    return struct.pack(SCHED, ts, tgid, tid, kind, len(s), cpu, *a, dur, (comm + b"\0" * 16)[:16],
                       (s + b"\0" * 16)[:16])


def test_struct_formats_are_the_declared_layouts():
    for fmt, layout in ((EVENT, "event"), (FACT, "fact"), (EVENT_SHORT, "event_short"), (SC_ENTER, "sc_enter"), (SC_EXIT, "sc_exit"), (SCHED, "sched_rec")):
        assert struct.calcsize(fmt) == records.DTYPES[layout].itemsize, layout
    assert records.slot_size("event") == 632 and records.slot_size("fact") == 120
    assert records.slot_size("event_short") == 248
    assert records.slot_size("sc_enter") == 96
    assert records.slot_size("sc_exit") == 48 and records.slot_size("sched_rec") == 104


def test_c_header_declares_every_kind_cause_and_layout():
    h = records.c_header()
    for code, name in records.KINDS.items():
        assert f"#define K_{name.upper()} {code}\n" in h
    for code, (name, _) in records.DROPS.items():
        assert f"#define DROP_{name.upper()} {code}\n" in h
    for layout in records.LAYOUTS:
        assert f"struct {layout} {{" in h


STATE_KINDS = [name for code, name in records.KINDS.items()
               if name not in ("syscall", "sched_switch", "sched_wakeup", "sched_migrate")]


@pytest.mark.parametrize("kind", STATE_KINDS)
def test_every_state_kind_decodes_from_bytes(kind):
    s1 = {"exec_args": b"", "bind": b"", "connect": b""}.get(kind, b"/tmp/x")
    raw = buf(slot(event(100, K[kind], 7, 8, ret=3, a=(1, 2, 3, 4, 5, 6), s1=s1, comm=b"make")))
    ev = records.records_of(raw, "event")
    t = decode.to_arrow(ev, RUN, 5).to_pydict()
    assert t["kind"] == [K[kind]] and t["seq"] == [5] and t["ts"] == [100]
    assert (t["tgid"], t["tid"], t["ret"], t["comm"]) == ([7], [8], [3], [b"make"])
    assert [t[f"a{i}"][0] for i in range(6)] == [1, 2, 3, 4, 5, 6]


# the kinds whose record is a socket address always travel with it, in the full ring
COMPACT_KINDS = [k for k in STATE_KINDS if k not in ("sock_state", "bind", "connect", "accept", "sockname")]


@pytest.mark.parametrize("kind", COMPACT_KINDS)
def test_every_state_kind_decodes_from_a_compact_record_as_from_a_full_one(kind):
    """The compact ring's record (no string) decodes to the same row as the full record without one."""
    a = (1, -2, 3, 4, 5, 6)
    compact = decode.lane_tables([records.Drained({"rb_facts": buf(slot(fact(100, K[kind], 7, 8, ret=3, a=a)))})],
                                 decode.SyscallPairer(arch="x86_64"), RUN, 5)[0][0].to_pydict()
    full = decode.to_arrow(records.records_of(buf(slot(event(100, K[kind], 7, 8, ret=3, a=a))), "event"),
                           RUN, 5).to_pydict()
    assert compact == full
    assert compact["comm"] == [b"sh"] and compact["path"] == [b""] and compact["argv"] == [[]]


# the kinds the kernel may send with a short path (one path, read at the syscall's exit)
SHORT_KINDS = ["open", "chdir", "unlink", "mkdir", "exec_fail", "anonfd"]


@pytest.mark.parametrize("kind", SHORT_KINDS)
@pytest.mark.parametrize("path", [b"/tmp/x", b"/" + b"\xfe" * 126, b""])
def test_a_short_path_record_decodes_as_the_full_one(kind, path):
    a = (-100, 2, 0o2000000, 0o644)
    short = decode.lane_tables(
        [records.Drained({"rb_short": buf(slot(short_event(100, K[kind], 7, 8, ret=3, a=a, s1=path)))})],
        decode.SyscallPairer(arch="x86_64"), RUN, 5)[0][0].to_pydict()
    full = decode.to_arrow(records.records_of(buf(slot(event(100, K[kind], 7, 8, ret=3, a=a, s1=path))), "event"),
                           RUN, 5).to_pydict()
    assert short == full and short["path"] == [path] and short["path2"] == [b""]


def test_state_strings_argv_and_committed_prefix():
    raw = buf(
        slot(event(10, K["open"], s1=b"/etc/passwd", ret=3, a=(-100, 0, 0o2000000))),
        slot(event(11, K["close"], a=(3,)), discard=True),
        slot(event(12, K["rename"], s1=b"a\xffb", s2=b"c")),
        slot(event(13, K["close"], a=(5,)), busy=True),
        slot(event(14, K["close"], a=(6,))),
    )
    n = records.committed_count(raw, "event")
    assert n == 3  # stops at the busy record; the discarded one is consumed, not kept
    ev = records.records_of(raw[: n * records.slot_size("event")], "event")
    t = decode.to_arrow(ev, RUN, 0).to_pydict()
    assert t["ts"] == [10, 12]
    assert t["path"] == [b"/etc/passwd", b"a\xffb"] and t["path2"] == [b"", b"c"]
    blob = b"ls\0-l\0/tmp\0"
    body = bytearray(event(20, K["exec_args"], a=(3,)))
    off = records.STR_OFFSET
    body[off : off + len(blob)] = blob
    body[records.EVENT_DTYPE.fields["len1"][1] : records.EVENT_DTYPE.fields["len1"][1] + 2] = struct.pack(
        "<H", len(blob))
    t = decode.to_arrow(records.records_of(buf(slot(bytes(body))), "event"), RUN, 0).to_pydict()
    assert t["argv"] == [[b"ls", b"-l", b"/tmp"]] and t["path"] == [b""]


def test_syscalls_pair_across_batches_and_threads():
    p = decode.SyscallPairer(arch="x86_64", no_return=(231,))
    # thread 5: read (enter, exit), then write whose exit comes in the next batch; thread 6: exit_group
    b1_enter = buf(slot(enter(100, 5, 0, (3, 0x7000, 1, 0, 0, 0), cpu=1)),
                   slot(enter(300, 5, 1, (1, 0x7000, 1, 0, 0, 0))),
                   slot(enter(310, 6, 231, (2, 0, 0, 0, 0, 0))))
    b1_exit = buf(slot(leave(200, 5, 1)))
    cols = p.feed(records.records_of(b1_enter, "sc_enter"), records.records_of(b1_exit, "sc_exit"))
    t = decode.table(cols, RUN, 0).to_pydict()
    assert t["kind"] == [K["syscall"]] * 2
    by_nr = {nr: i for i, nr in enumerate(t["nr"])}
    r = by_nr[0]
    assert (t["ts"][r], t["dur"][r], t["ret"][r], t["tid"][r], t["cpu"][r], t["comm"][r]) == (100, 100, 1, 5, 1,
                                                                                              b"dd")
    assert [t[f"a{i}"][r] for i in range(6)] == [3, 0x7000, 1, 0, 0, 0]
    g = by_nr[231]
    assert (t["ts"][g], t["a0"][g], t["dur"][g], t["tid"][g]) == (310, 2, 0, 6)  # exit_group never returns
    assert p.held_since is None
    # the write's exit arrives in the next batch: paired with the enter held back
    cols = p.feed(records.records_of(buf(), "sc_enter"), records.records_of(buf(slot(leave(450, 5, 1))), "sc_exit"))
    t = decode.table(cols, RUN, 2).to_pydict()
    assert (t["nr"], t["ts"], t["dur"], t["seq"]) == ([1], [300], [150], [2])


def test_an_exit_read_before_its_enter_waits_one_batch():
    p = decode.SyscallPairer(arch="x86_64", no_return=())
    cols = p.feed(records.records_of(buf(), "sc_enter"), records.records_of(buf(slot(leave(50, 9, -11))), "sc_exit"))
    assert cols is None and p.held_since == 50
    cols = p.feed(records.records_of(buf(slot(enter(40, 9, 7, (0,) * 6))), "sc_enter"),
                  records.records_of(buf(), "sc_exit"))
    t = decode.table(cols, RUN, 0).to_pydict()
    assert (t["ts"], t["ret"], t["dur"]) == ([40], [-11], [10]) and p.unpaired_exits == 0
    # an exit whose enter never comes (dropped, or the call began before the thread was in scope)
    p.feed(records.records_of(buf(), "sc_enter"), records.records_of(buf(slot(leave(90, 9, 0))), "sc_exit"))
    p.feed(records.records_of(buf(), "sc_enter"), records.records_of(buf(), "sc_exit"))
    assert p.unpaired_exits == 1 and p.held_since is None


def test_an_enter_that_lost_its_exit_is_not_paired_with_the_next_one():
    p = decode.SyscallPairer(arch="x86_64", no_return=())
    e = buf(slot(enter(10, 3, 0, (0,) * 6)), slot(enter(30, 3, 1, (0,) * 6)))
    cols = p.feed(records.records_of(e, "sc_enter"), records.records_of(buf(slot(leave(40, 3, 5))), "sc_exit"))
    t = decode.table(cols, RUN, 0).to_pydict()
    assert (t["nr"], t["ts"], t["dur"]) == ([1], [30], [10])


@pytest.mark.parametrize("kind", ["sched_switch", "sched_wakeup", "sched_migrate"])
def test_every_scheduler_kind_decodes_from_bytes(kind):
    raw = buf(slot(sched(1000, K[kind], 40, 41, a=(256, 42, 40, 41), dur=77, s=b"next", cpu=1)))
    t = decode.table(decode.sched_columns(records.records_of(raw, "sched_rec")), RUN, 9).to_pydict()
    assert t["kind"] == [K[kind]] and (t["ts"], t["tgid"], t["tid"], t["cpu"]) == ([1000], [40], [41], [1])
    assert (t["a0"], t["a1"], t["a2"], t["a3"], t["dur"]) == ([256], [42], [40], [41], [77])
    assert (t["comm"], t["path"], t["path2"], t["argv"]) == ([b"hog"], [b"next"], [b""], [[]])


def test_lanes_become_one_table_in_lane_order():
    d = records.Drained({
        "events": buf(slot(event(500, K["open"], s1=b"/a", ret=3))),
        "rb_short": buf(slot(short_event(505, K["chdir"], s1=b"/tmp"))),
        "rb_facts": buf(slot(fact(510, K["close"], a=(3,)))),
        "rb_sc_enter": buf(slot(enter(400, 7, 0, (3, 0, 1, 0, 0, 0)))),
        "rb_sc_exit": buf(slot(leave(450, 7, 1))),
        "rb_sched": buf(slot(sched(420, K["sched_switch"], 7, 7))),
    }, state=decode.io_records([(7, 3, 10, 20, 2)], 600))
    assert len(d) == 7
    tables, n, held = decode.lane_tables([d], decode.SyscallPairer(arch="x86_64"), RUN, 100)
    import pyarrow as pa

    t = pa.concat_tables(tables).to_pydict()
    assert n == 6 and held is None and t["seq"] == [100, 101, 102, 103, 104, 105]
    assert t["kind"] == [K["open"], K["io"], K["chdir"], K["close"], K["syscall"], K["sched_switch"]]
    assert t["path"][:3] == [b"/a", b"", b"/tmp"]
    lost = decode.lost_row(RUN, 700, 104, 12, records.DROP_CODES["ring_sc_enter"]).to_pydict()
    assert (lost["kind"], lost["a0"], lost["a1"]) == ([K["lost"]], [12], [1])


def test_task_names_are_carried_per_thread_across_batches():
    """The kernel sends a thread's name on its first syscall and after a rename only: every other
    syscall of that thread takes the last name sent, in the batch or an earlier one; a rename in the
    middle applies from that call on; the names survive a checkpoint (held/restore)."""
    p = decode.SyscallPairer()
    e1 = buf(*(slot(enter(100 + 10 * i, t, 39, [0] * 6)) for i in range(3) for t in (5, 6)))
    x1 = buf(slot(leave(101, 5, 1, b"first")), slot(leave(102, 6, 1, b"other")),
             slot(leave(111, 5, 1, sent=False)), slot(leave(112, 6, 1, sent=False)),
             slot(leave(121, 5, 1, b"renamed")), slot(leave(122, 6, 1, sent=False)))
    cols = p.feed(records.records_of(e1, "sc_enter"), records.records_of(x1, "sc_exit"))
    got = sorted(zip(cols["ts"].tolist(), cols["comm"].to_pylist(), strict=True))
    assert got == [(100, b"first"), (100, b"other"), (110, b"first"), (110, b"other"), (120, b"other"),
                   (120, b"renamed")]
    q = decode.SyscallPairer()
    q.restore(p.held())
    cols = q.feed(records.records_of(buf(slot(enter(200, 5, 39, [0] * 6))), "sc_enter"),
                  records.records_of(buf(slot(leave(201, 5, 1, sent=False))), "sc_exit"))
    assert cols["comm"].to_pylist() == [b"renamed"]
    # an exit held one batch (its enter was not read yet) passes its old name on to nobody: here the
    # thread ran exec meanwhile, and its later calls are named by exec's exit
    r = decode.SyscallPairer()
    r.feed(records.records_of(buf(slot(enter(305, 8, 59, [0] * 6))), "sc_enter"),
           records.records_of(buf(slot(leave(301, 8, 1, b"python")), slot(leave(306, 8, 0, b"dd"))), "sc_exit"))
    cols = r.feed(records.records_of(buf(slot(enter(300, 8, 0, [0] * 6)), slot(enter(310, 8, 0, [0] * 6))),
                                     "sc_enter"),
                  records.records_of(buf(slot(leave(311, 8, 1, sent=False))), "sc_exit"))
    assert sorted(zip(cols["ts"].tolist(), cols["comm"].to_pylist(), strict=True)) == [(300, b"python"),
                                                                                          (310, b"dd")]


def test_state_strings_are_cut_from_the_drained_bytes_with_or_without_discards():
    slots = [slot(event(10, K["open"], s1=b"/etc/passwd", ret=3)),
             slot(event(11, K["open"], s1=b"/gone"), discard=True),
             slot(event(12, K["rename"], s1=b"a", s2=b"b\xff"))]
    for raw, discards in ((buf(slots[0], slots[2]), False), (buf(*slots), True)):
        ev, mat = records.records_and_matrix(raw, "event")
        assert np.shares_memory(mat, raw) is not discards   # a view of the bytes unless some were discarded
        via_matrix = decode.to_arrow(ev, RUN, 0, mat).to_pydict()
        assert via_matrix == decode.to_arrow(np.ascontiguousarray(ev), RUN, 0).to_pydict()
        assert via_matrix["path"] == [b"/etc/passwd", b"a"] and via_matrix["path2"] == [b"", b"b\xff"]


def test_the_kernels_paths_come_root_first_and_deleted_as_proc_says():
    """An open's second string is the kernel's path, leaf first (EV_KPATH); one with no name any
    more (EV_UNLINKED) reads as /proc shows it. Without the flag, a second string is not a path."""
    KP, UN = records.EV_KPATH, records.EV_UNLINKED
    ev = buf(slot(event(1, K["open"], ret=3, s1=b"link/f", s2=b"f/dir/tmp", flags=KP)),
             slot(event(2, K["open"], ret=4, s1=b"x", s2=b"#123/tmp", flags=KP | UN)),
             slot(event(3, K["chdir"], s1=b"/", s2=b"", flags=KP)),
             slot(event(4, K["open"], ret=5, s1=b"/a\xffb", s2=b"\xffb/a", flags=KP)),
             slot(event(5, K["open"], ret=6, s1=b"plain")))
    recs, mat = records.records_and_matrix(ev, "event")
    cols = decode.state_columns(recs, mat)
    assert cols["path2"].to_pylist() == [b"/tmp/dir/f", b"/tmp/#123 (deleted)", b"/", b"/a/\xffb", b""]
    assert cols["path"].to_pylist() == [b"link/f", b"x", b"/", b"/a\xffb", b"plain"]
