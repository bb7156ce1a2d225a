"""Every kind decoded from byte fixtures, without root or a kernel.

The bytes are laid out as the kernel's rings lay them out (an 8-byte header with the BUSY/DISCARD
bits, then the record), packed here with ``struct`` field by field from the C declarations, not from
the numpy dtypes under test: the state lane's ``struct event``, ``struct event_short`` and compact
``struct fact``, the syscall lane's ``struct sc_call`` (``decode.SyscallStream``), the scheduler
lane's ``struct sched_rec``."""

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
SC_CALL = "<QQqIIIIII8Q16s"
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


def call(ts, tid, nr, args, ret=0, dur=0, tgid=None, cpu=0, comm=b"dd", sent=True) -> bytes:
    """A syscall's record; ``sent``: it carries the thread's task name (else the ring's junk is there)."""
    regs = [0] * 8
    for i, w in enumerate(X86_WINDOW):
        regs[w] = args[i] & (2**64 - 1)
    name = (comm + b"\0" * 16)[:16] if sent else b"\x5a" * 16
    return struct.pack(SC_CALL, ts, dur, ret, tid, tgid or tid, nr, cpu, records.SC_COMM if sent else 0, 0,
                       *regs, name)


def sched(ts, kind, tgid, tid, a=(0, 0, 0, 0), dur=0, comm=b"hog", s=b"", cpu=0) -> bytes:
    return struct.pack(SCHED, ts, tgid, tid, kind, len(s), cpu, *a, dur, (comm + b"\0" * 16)[:16],
                       (s + b"\0" * 16)[:16])


def test_struct_formats_are_the_declared_layouts():
    for fmt, layout in ((EVENT, "event"), (FACT, "fact"), (EVENT_SHORT, "event_short"), (SC_CALL, "sc_call"), (SCHED, "sched_rec")):
        assert struct.calcsize(fmt) == records.DTYPES[layout].itemsize, layout
    assert records.slot_size("event") == 632 and records.slot_size("fact") == 120
    assert records.slot_size("event_short") == 248
    assert records.slot_size("sc_call") == 136 and records.slot_size("sched_rec") == 104


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
                                 decode.SyscallStream(arch="x86_64"), RUN, 5)[0][0].to_pydict()
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
        decode.SyscallStream(arch="x86_64"), RUN, 5)[0][0].to_pydict()
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


def test_syscall_records_become_facts():
    p = decode.SyscallStream(arch="x86_64")
    # thread 5: read, then write; thread 6: exit_group (written at entry: dur 0)
    raw = buf(slot(call(100, 5, 0, (3, 0x7000, 1, 0, 0, 0), ret=1, dur=100, cpu=1)),
              slot(call(310, 6, 231, (2, 0, 0, 0, 0, 0), comm=b"sh")),
              slot(call(300, 5, 1, (1, 0x7000, 1, 0, 0, 0), ret=1, dur=150, sent=False)))
    t = decode.table(p.feed(records.records_of(raw, "sc_call")), RUN, 7).to_pydict()
    assert t["kind"] == [K["syscall"]] * 3 and t["seq"] == [7, 8, 9]
    assert (t["ts"], t["dur"], t["ret"], t["tid"], t["tgid"], t["nr"]) == (
        [100, 310, 300], [100, 0, 150], [1, 0, 1], [5, 6, 5], [5, 6, 5], [0, 231, 1])
    assert t["cpu"] == [1, 0, 0] and t["comm"] == [b"dd", b"sh", b"dd"]
    assert [t[f"a{i}"][0] for i in range(6)] == [3, 0x7000, 1, 0, 0, 0] and t["a0"][1] == 2
    assert p.feed(records.records_of(buf(), "sc_call")) is None


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
        "rb_sc": buf(slot(call(400, 7, 0, (3, 0, 1, 0, 0, 0), ret=1, dur=50))),
        "rb_sched": buf(slot(sched(420, K["sched_switch"], 7, 7))),
    }, state=decode.io_records([(7, 3, 10, 20, 2)], 600))
    assert len(d) == 6
    tables, n = decode.lane_tables([d], decode.SyscallStream(arch="x86_64"), RUN, 100)
    import pyarrow as pa

    t = pa.concat_tables(tables).to_pydict()
    assert n == 6 and t["seq"] == [100, 101, 102, 103, 104, 105]
    assert t["kind"] == [K["open"], K["io"], K["chdir"], K["close"], K["syscall"], K["sched_switch"]]
    assert t["path"][:3] == [b"/a", b"", b"/tmp"]
    lost = decode.lost_row(RUN, 700, 104, 12, records.DROP_CODES["map_sc_agg"]).to_pydict()
    assert (lost["kind"], lost["a0"], lost["a1"]) == ([K["lost"]], [12], [12])


def test_task_names_are_carried_per_thread_across_batches():
    """The kernel sends a thread's name on its first syscall and after a rename only: every other
    syscall of that thread takes the last name sent, in the batch or an earlier one; a rename in the
    middle applies from that call on; the names survive a checkpoint (held/restore)."""
    p = decode.SyscallStream()
    raw = buf(slot(call(100, 5, 39, [0] * 6, comm=b"first")), slot(call(100, 6, 39, [0] * 6, comm=b"other")),
              slot(call(110, 5, 39, [0] * 6, sent=False)), slot(call(110, 6, 39, [0] * 6, sent=False)),
              slot(call(120, 5, 39, [0] * 6, comm=b"renamed")), slot(call(120, 6, 39, [0] * 6, sent=False)))
    cols = p.feed(records.records_of(raw, "sc_call"))
    got = list(zip(cols["ts"].tolist(), cols["tid"].tolist(), cols["comm"].to_pylist(), strict=True))
    assert got == [(100, 5, b"first"), (100, 6, b"other"), (110, 5, b"first"), (110, 6, b"other"),
                   (120, 5, b"renamed"), (120, 6, b"other")]
    q = decode.SyscallStream()
    q.restore(p.held())
    cols = q.feed(records.records_of(buf(slot(call(200, 5, 39, [0] * 6, sent=False)),
                                         slot(call(201, 7, 39, [0] * 6, sent=False))), "sc_call"))
    assert cols["comm"].to_pylist() == [b"renamed", b""]   # thread 7 never sent one: unknown


def test_task_names_agree_with_a_call_by_call_reading_on_runs_of_threads():
    """Threads' calls in runs of any length, names sent at any call (first, inside a run, back to
    back), over several batches: every call's name is the one a call-by-call reading gives (the
    last sent for its thread, in this batch or an earlier one; empty if none yet)."""
    rng = np.random.default_rng(7)
    p = decode.SyscallStream()
    last: dict[int, bytes] = {}
    for _batch in range(6):
        calls, want = [], []
        while len(calls) < 400:
            tid = int(rng.integers(1, 6))
            for _ in range(int(rng.choice([1, 1, 2, 5, 40]))):
                sent = bool(rng.random() < 0.08)
                if sent:
                    last[tid] = b"n%d-%d" % (tid, int(rng.integers(0, 3)))
                calls.append(slot(call(len(calls), tid, 0, [0] * 6, comm=last.get(tid, b""), sent=sent)))
                want.append(last.get(tid, b""))
        cols = p.feed(records.records_of(buf(*calls), "sc_call"))
        assert cols["comm"].to_pylist() == want


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


@pytest.mark.parametrize("layout", ["sc_call", "sched_rec", "event"])
@pytest.mark.parametrize("n", [0, 1, 5000, decode.TRANSPOSE_BLOCK * 2 + 3])
def test_record_columns_are_the_fields_as_numpy_reads_them(layout, n):
    """The blocked transpose gives each field exactly as a field-by-field copy does: in a ring's
    slots (strided, header first), after a discarded slot (a copy), every field and sub-array."""
    rng = np.random.default_rng(n)
    size = records.slot_size(layout)
    raw = rng.integers(0, 256, n * size, dtype=np.uint8)
    raw.view(np.uint32)[:: size // 4] = records.DTYPES[layout].itemsize     # headers: committed, kept
    if n > 3:
        raw.view(np.uint32)[2 * size // 4] |= records.RB_DISCARD
    recs = records.records_of(raw, layout)
    names = list(records.DTYPES[layout].names)
    got = decode.record_columns(recs, names)
    for name in names:
        want = recs[name] if recs.dtype.fields[name][0].subdtype is None else recs[name].T
        assert got[name].dtype == want.dtype and got[name].shape == want.shape, name
        assert np.ascontiguousarray(got[name]).tobytes() == np.ascontiguousarray(want).tobytes(), name


def test_columns_empty_on_every_row_are_left_to_the_stores_default():
    import pyarrow as pa

    t = decode.table({"ts": [1, 2, 3], "kind": [K["open"]] * 3}, RUN, 0)
    assert set(decode.EMPTY_BY_DEFAULT).isdisjoint(decode.without_empty_columns(t).column_names)
    path = t.set_column(t.schema.get_field_index("path"), "path", pa.array([b"", b"/x", b""], pa.binary()))
    argv = t.set_column(t.schema.get_field_index("argv"), "argv", pa.array([[], [b""], []], pa.list_(pa.binary())))
    assert "path" in decode.without_empty_columns(path).column_names
    assert "path" not in decode.without_empty_columns(path.slice(2, 1)).column_names   # a slice: its own offsets
    assert "path" in decode.without_empty_columns(path.slice(1, 1)).column_names
    assert "argv" in decode.without_empty_columns(argv).column_names                   # one empty argument
    assert "argv" not in decode.without_empty_columns(argv.slice(2, 1)).column_names
