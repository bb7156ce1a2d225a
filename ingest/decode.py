"""Kernel records -> columnar batches for the ``events`` table, without a Python loop per record.

Input is what ``osrewind.probes.loader.Probe.drain`` returns: a numpy array of
``records.EVENT_DTYPE``. Strings are cut to their recorded lengths in one vectorised pass; only
``exec_args`` rows (one per exec) are split into argv lists in Python.
"""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa

from osrewind.probes import records

_TWO_PATH_KINDS = np.array([records.KIND_CODES["rename"]], dtype=np.uint16)
_ARGV_KIND = records.KIND_CODES["exec_args"]


def to_arrow(ev: np.ndarray, run_id: uuid.UUID | str, seq_start: int) -> pa.Table:
    """One Arrow table (schema.EVENT_COLUMNS) for a drain of records, in the order given."""
    n = len(ev)
    kind = ev["kind"].astype(np.uint16)
    two = np.isin(kind, _TWO_PATH_KINDS)
    argv_rows = np.flatnonzero(kind == _ARGV_KIND)

    # first half holds the path; for exec_args the whole 512 bytes are argv and `path` stays empty
    len1 = ev["len1"].astype(np.int64)
    len1_path = np.where(kind == _ARGV_KIND, 0, len1)
    path = records.strings(ev["str"], len1_path, 0, records.STR_HALF)
    path2 = records.strings(ev["str"], np.where(two, ev["len2"], 0), records.STR_HALF, records.STR_HALF)

    offsets = np.zeros(n + 1, dtype=np.int32)
    values: list[str] = []
    if len(argv_rows):
        counts = np.zeros(n, dtype=np.int32)
        for i in argv_rows:
            args = records.argv_of(ev["str"][i].tobytes(), int(len1[i]))
            counts[i] = len(args)
            values.extend(args)
        offsets[1:] = np.cumsum(counts)
    argv = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.string()))

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
            "comm": pa.array(_cut(ev["comm"]), type=pa.binary()),
            "path": pa.array(path, type=pa.binary()),
            "path2": pa.array(path2, type=pa.binary()),
            "argv": argv,
        }
    )


def _cut(comm: np.ndarray) -> np.ndarray:
    """comm is NUL-terminated inside 16 bytes; bytes after the NUL may be stale."""
    b = np.frombuffer(comm.tobytes(), dtype=np.uint8).reshape(len(comm), 16).copy()
    nul = (b == 0)
    first = np.where(nul.any(axis=1), nul.argmax(axis=1), 16)
    b[np.arange(16)[None, :] >= first[:, None]] = 0
    return b.view("S16").reshape(len(comm))


def lost_row(run_id: uuid.UUID | str, ts: int, seq: int, count: int) -> pa.Table:
    """A ``lost`` fact: ``count`` records were dropped by the kernel before ``ts``."""
    ev = np.zeros(1, dtype=records.EVENT_DTYPE)
    ev["ts"] = ts
    ev["kind"] = records.KIND_CODES["lost"]
    ev["a0"] = count
    return to_arrow(ev, run_id, seq)
