"""Decoders from byte fixtures: no root, no kernel. The bytes are laid out as the kernel's ring
buffer lays them out (8-byte header with BUSY/DISCARD bits, then struct event), built here with
struct.pack field by field, independent of the numpy dtype under test."""

from __future__ import annotations

import struct

import numpy as np

from osrewind.ingest import decode
from osrewind.probes import records

EVENT_FMT = "<QqqqqqqqQIIHHHHII16s512s"


def raw_event(ts, kind, tgid, tid, ret=0, a=(0, 0, 0, 0), comm=b"sh", s1=b"", s2=b"", junk=b"\xaa",
              len1=None, len2=None, blob=None, nr=0, dur=0, cpu=1):
    """One struct event as the kernel writes it: strings NUL-terminated, the rest left as junk."""
    body = bytearray(junk * 512)
    if blob is not None:
        body[: len(blob)] = blob
        len1 = len(blob) if len1 is None else len1
    else:
        body[: len(s1) + 1] = s1 + b"\0"
        if s2:
            body[256 : 256 + len(s2) + 1] = s2 + b"\0"
    comm_b = bytearray(b"\x55" * 16)
    comm_b[: len(comm) + 1] = comm + b"\0"
    args = (list(a) + [0, 0])[:6]
    return struct.pack(EVENT_FMT, ts, ret, *args, dur, tgid, tid, kind, len(s1) if len1 is None else len1,
                       len(s2) if len2 is None else len2, nr, cpu, 0, bytes(comm_b), bytes(body))


def slot(ev: bytes, busy=False, discard=False) -> bytes:
    hlen = len(ev) | (records.RB_BUSY if busy else 0) | (records.RB_DISCARD if discard else 0)
    padded = ev + b"\0" * (records.RECORD_SIZE - 8 - len(ev))
    return struct.pack("<II", hlen, 0) + padded


def test_layout_matches_struct_format():
    assert struct.calcsize(EVENT_FMT) == records.EVENT_DTYPE.itemsize == 624
    assert records.RECORD_SIZE == 632


def test_committed_prefix_stops_at_busy_and_skips_discarded():
    k = records.KIND_CODES
    buf = b"".join([
        slot(raw_event(10, k["open"], 5, 5, 3, (-100, 0, 0o2000000, 0), s1=b"/etc/passwd")),
        slot(raw_event(11, k["close"], 5, 5, 0, (3, 0, 0, 0)), discard=True),
        slot(raw_event(12, k["close"], 5, 5, 0, (4, 0, 0, 0))),
        slot(raw_event(13, k["close"], 5, 5, 0, (5, 0, 0, 0)), busy=True),
        slot(raw_event(14, k["close"], 5, 5, 0, (6, 0, 0, 0))),
    ])
    slots = records.slots_from_buffer(np.frombuffer(buf, dtype=np.uint8))
    ev, used = records.committed_prefix(slots)
    assert used == 3  # stops before the busy slot, consumes the discarded one
    assert list(ev["ts"]) == [10, 12]
    assert list(ev["a0"]) == [-100, 4]


def test_to_arrow_cuts_strings_at_recorded_length_and_splits_argv():
    k = records.KIND_CODES
    buf = b"".join([
        slot(raw_event(100, k["open"], 7, 7, -2, (-100, 0, 0, 0), comm=b"cat", s1=b"/nonexistent")),
        slot(raw_event(101, k["rename"], 7, 8, 0, (-100, -100, 0, 0), comm=b"mv", s1=b"a.txt", s2=b"b.txt")),
        slot(raw_event(102, k["exec_args"], 9, 9, 0, (3, 0, 0, 0), blob=b"ls\0-l\0/tmp\0")),
        slot(raw_event(103, k["fork"], 7, 7, 0, (7, 9, 0x1200011, 0))),
        slot(raw_event(104, k["syscall"], 7, 7, 3, (1, 2, 3, 4, 5, 6), nr=257, dur=1500, cpu=0)),
    ])
    ev, _ = records.committed_prefix(records.slots_from_buffer(np.frombuffer(buf, dtype=np.uint8)))
    t = decode.to_arrow(ev, "3f2a0000-0000-0000-0000-000000000001", 40).to_pydict()
    assert t["seq"] == [40, 41, 42, 43, 44]
    assert t["path"] == [b"/nonexistent", b"a.txt", b"", b"", b""]
    assert t["path2"] == [b"", b"b.txt", b"", b"", b""]
    assert t["argv"] == [[], [], [b"ls", b"-l", b"/tmp"], [], []]  # bytes as the kernel had them
    assert t["comm"] == [b"cat", b"mv", b"sh", b"sh", b"sh"]
    assert t["ret"][0] == -2 and t["a1"][3] == 9 and t["a2"][3] == 0x1200011
    assert t["kind"] == [k["open"], k["rename"], k["exec_args"], k["fork"], k["syscall"]]
    assert [t[c][4] for c in ("nr", "dur", "cpu", "a4", "a5")] == [257, 1500, 0, 5, 6]


def test_lost_row():
    t = decode.lost_row("3f2a0000-0000-0000-0000-000000000001", 5_000, 9, 1234).to_pydict()
    assert t["kind"] == [records.KIND_CODES["lost"]] and t["a0"] == [1234] and t["ts"] == [5_000]


def test_argv_truncated_blob_without_final_nul():
    assert records.argv_of(b"python3\0-c\0prin", 16) == ["python3", "-c", "prin"]
