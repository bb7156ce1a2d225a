"""Kernel records -> columnar batches for the ``events`` table, without a Python loop per record.

Input is what ``osrewind.probes.loader.Probe.drain`` returns: a numpy array of
``records.EVENT_DTYPE``. Strings are cut to their recorded lengths in one vectorised pass; only
``exec_args`` rows (one per exec) are split into argv lists in Python.

Paths, argv, comm and socket paths are bytes to Linux, not text: every one of them is stored as the
bytes the kernel had (Arrow ``binary`` into a ClickHouse ``String``), never decoded on the way in.
Strings that Python holds already (the /proc baseline, run names, derived tables) are kept with
surrogateescape (``osrewind.text``) and go back to their bytes through :func:`text_array`.
"""

from __future__ import annotations

import socket
import uuid

import numpy as np
import pyarrow as pa

from osrewind.probes import records
from osrewind.text import from_bytes, to_bytes

_TWO_PATH_KINDS = np.array([records.KIND_CODES["rename"]], dtype=np.uint16)
_ARGV_KIND = records.KIND_CODES["exec_args"]


def to_arrow(ev: np.ndarray, run_id: uuid.UUID | str, seq_start: int) -> pa.Table:
    """One Arrow table (schema.EVENT_COLUMNS) for a drain of records, in the order given."""
    n = len(ev)
    kind = ev["kind"].astype(np.uint16)
    two = np.isin(kind, _TWO_PATH_KINDS)
    argv_rows = np.flatnonzero(kind == _ARGV_KIND)

    ev = np.ascontiguousarray(ev)
    mat = ev.view(np.uint8).reshape(n, records.EVENT_DTYPE.itemsize)
    # first half holds the path; for exec_args the whole 512 bytes are argv and `path` stays empty
    len1 = ev["len1"].astype(np.int64)
    len1_path = np.where(kind == _ARGV_KIND, 0, len1)
    path = binary_column(mat, len1_path, records.STR_OFFSET, records.STR_HALF)
    path2 = binary_column(mat, np.where(two, ev["len2"], 0), records.STR_OFFSET + records.STR_HALF,
                          records.STR_HALF)
    comm_bytes = mat[:, records.COMM_OFFSET : records.COMM_OFFSET + 16]
    nul = comm_bytes == 0
    comm_len = np.where(nul.any(axis=1), nul.argmax(axis=1), 16)
    comm = binary_column(mat, comm_len, records.COMM_OFFSET, 16)

    path, path2 = _network_paths(ev, mat, kind, path, path2)

    offsets = np.zeros(n + 1, dtype=np.int32)
    values: list[bytes] = []
    if len(argv_rows):
        counts = np.zeros(n, dtype=np.int32)
        for i in argv_rows:
            args = records.argv_bytes(ev["str"][i].tobytes(), int(len1[i]))
            counts[i] = len(args)
            values.extend(args)
        offsets[1:] = np.cumsum(counts)
    argv = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.binary()))

    rid = str(run_id)
    return pa.table(
        {
            "run_id": pa.array([rid] * n, type=pa.string()),
            "ts": pa.array(ev["ts"].astype(np.int64)),
            "seq": pa.array(np.arange(seq_start, seq_start + n, dtype=np.uint64)),
            "kind": pa.array(kind.astype(np.int8)),
            "tgid": pa.array(ev["tgid"]),
            "tid": pa.array(ev["tid"]),
            "ret": pa.array(ev["ret"]),
            "a0": pa.array(ev["a0"]),
            "a1": pa.array(ev["a1"]),
            "a2": pa.array(ev["a2"]),
            "a3": pa.array(ev["a3"]),
            "a4": pa.array(ev["a4"]),
            "a5": pa.array(ev["a5"]),
            "dur": pa.array(ev["dur"].astype(np.int64)),
            "nr": pa.array(ev["nr"]),
            "cpu": pa.array(ev["cpu"].astype(np.uint16)),
            "comm": comm,
            "path": path,
            "path2": path2,
            "argv": argv,
        }
    )


_SOCKADDR_KINDS = [records.KIND_CODES[k] for k in ("bind", "connect", "accept", "sockname")]
_SOCK_STATE = records.KIND_CODES["sock_state"]


def sockaddr_text(raw: bytes) -> str:
    """A struct sockaddr as people write it: 1.2.3.4:80, [::1]:443, unix:/run/x.sock, unix:@abstract.
    A unix socket path is kept losslessly (surrogateescape), like every other path."""
    if len(raw) < 2:
        return ""
    family = int.from_bytes(raw[:2], "little")
    if family == socket.AF_INET and len(raw) >= 8:
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{int.from_bytes(raw[2:4], 'big')}"
    if family == socket.AF_INET6 and len(raw) >= 24:
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{int.from_bytes(raw[2:4], 'big')}"
    if family == socket.AF_UNIX:
        path = raw[2:]
        if not path:
            return "unix:"
        if path[0] == 0:  # abstract namespace
            return "unix:@" + from_bytes(path[1:].rstrip(b"\0"))
        return "unix:" + from_bytes(path.split(b"\0", 1)[0])
    return f"family {family}"


def endpoint_text(family: int, addr: bytes, port: int) -> str:
    if family == socket.AF_INET6:
        return f"[{socket.inet_ntop(socket.AF_INET6, addr[:16])}]:{port}"
    return f"{socket.inet_ntop(socket.AF_INET, addr[:4])}:{port}"


def _network_paths(ev, mat, kind, path, path2):
    """Addresses arrive as raw bytes: write them as text (few rows: a loop is fine here)."""
    rows = np.flatnonzero(np.isin(kind, _SOCKADDR_KINDS) | (kind == _SOCK_STATE))
    if not len(rows):
        return path, path2
    p1, p2 = path.to_pylist(), path2.to_pylist()
    for i in rows:
        raw = mat[i, records.STR_OFFSET : records.STR_OFFSET + 32 if kind[i] == _SOCK_STATE else
                  records.STR_OFFSET + int(ev["len1"][i])].tobytes()
        if kind[i] == _SOCK_STATE:
            fam = int(ev["a4"][i])
            p1[i] = endpoint_text(fam, raw[:16], int(ev["a2"][i])).encode()
            p2[i] = endpoint_text(fam, raw[16:32], int(ev["a3"][i])).encode()
        else:
            p1[i] = to_bytes(sockaddr_text(raw))
    return pa.array(p1, type=pa.binary()), pa.array(p2, type=pa.binary())


def text_array(values: list, depth: int = 0) -> pa.Array:
    """An Arrow column of recorded strings for a ClickHouse ``String`` (``depth`` 1: ``Array(String)``,
    2: ``Array(Array(String))``), each written as its original bytes.

    ``values`` hold ``str`` kept with surrogateescape (``osrewind.text.from_bytes``), ``bytes``, or
    None. Arrow's ``string`` refuses lone surrogates, so such a column goes as ``binary`` instead;
    ClickHouse stores both as the same bytes.
    """
    text, raw = pa.string(), pa.binary()
    for _ in range(depth):
        text, raw = pa.list_(text), pa.list_(raw)
    try:
        return pa.array(values, type=text)
    except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(_as_bytes(values, depth), type=raw)


def _as_bytes(values: list, depth: int) -> list:
    if depth == 0:
        return [to_bytes(v) if isinstance(v, str) else v for v in values]
    return [None if v is None else _as_bytes(list(v), depth - 1) for v in values]


def binary_column(mat: np.ndarray, lengths: np.ndarray, start: int, width: int) -> pa.Array:
    """An Arrow binary column from fixed-width byte fields cut to their lengths, with no Python loop.

    ``mat`` is the records viewed as an (n, record size) uint8 matrix. Bytes past each length are
    uninitialised ring-buffer memory and are never copied: only rows with a string, and only up to
    the longest one, are gathered, then concatenated in row order as Arrow's values buffer.
    """
    n = len(mat)
    lens = np.minimum(np.asarray(lengths, dtype=np.int64), width)
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(lens, out=offsets[1:])
    rows = np.flatnonzero(lens)
    if len(rows):
        longest = int(lens[rows].max())
        sub = mat[rows, start : start + longest]
        values = sub[np.arange(longest)[None, :] < lens[rows][:, None]]
    else:
        values = np.zeros(0, dtype=np.uint8)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(values)])


def lost_row(run_id: uuid.UUID | str, ts: int, seq: int, count: int) -> pa.Table:
    """A ``lost`` fact: ``count`` records were dropped by the kernel before ``ts``."""
    ev = np.zeros(1, dtype=records.EVENT_DTYPE)
    ev["ts"] = ts
    ev["kind"] = records.KIND_CODES["lost"]
    ev["a0"] = count
    return to_arrow(ev, run_id, seq)


def io_records(deltas: list[tuple[int, int, int, int, int]], ts: int) -> np.ndarray:
    """``io`` facts (--aggregate-io) as kernel-layout records: (tgid, fd, out, in, calls) at ``ts``."""
    ev = np.zeros(len(deltas), dtype=records.EVENT_DTYPE)
    ev["ts"] = ts
    ev["kind"] = records.KIND_CODES["io"]
    for i, (tgid, fd, out, inn, calls) in enumerate(deltas):
        ev["tgid"][i] = ev["tid"][i] = tgid
        ev["a0"][i], ev["a1"][i], ev["a2"][i], ev["a3"][i] = fd, out, inn, calls
    return ev
