"""Kernel records -> columnar batches for the ``events`` table, without a Python loop per record.

Input is what ``osrewind.probes.loader.Probe.drain`` returns (``records.Drained``): the committed
bytes of each ring, viewed per lane as numpy structured records (``records.DTYPES``). The state lane's
records become facts as they are; so do the syscall lane's (``SyscallStream``: one record per call,
the task name carried forward per thread) and the scheduler's. Strings are
cut to their recorded lengths in one vectorised pass; only ``exec_args`` rows (one per exec) are
split into argv lists in Python.

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


def to_arrow(ev: np.ndarray, run_id: uuid.UUID | str, seq_start: int, mat: np.ndarray | None = None) -> pa.Table:
    """One Arrow table (schema.EVENT_COLUMNS) for a drain of state-lane records, in the order given."""
    return table(state_columns(ev, mat), run_id, seq_start)


def state_columns(ev: np.ndarray, mat: np.ndarray | None = None) -> dict:
    """Columns of state-lane records (``records.EVENT_DTYPE``): strings cut to their lengths, argv split.
    ``mat``: the same records as a byte matrix, if the caller has one (``records.records_and_matrix``)."""
    n = len(ev)
    kind = ev["kind"].astype(np.uint16)
    width = ev.dtype["str"].itemsize   # STR_LEN, or STR_SHORT (``records.DTYPES["event_short"]``: one path)
    if width > records.STR_HALF:
        kpath = (ev["flags"] & records.EV_KPATH).astype(bool)
        two = np.isin(kind, _TWO_PATH_KINDS) | kpath
    else:
        kpath = two = np.zeros(n, dtype=bool)
    argv_rows = np.flatnonzero(kind == _ARGV_KIND)
    if mat is None:
        mat = _matrix(ev)
    # first half holds the path; for exec_args the whole 512 bytes are argv and `path` stays empty
    len1 = ev["len1"].astype(np.int64)
    len1_path = np.where(kind == _ARGV_KIND, 0, len1)
    path = binary_column(mat, len1_path, records.STR_OFFSET, min(records.STR_HALF, width))
    path2 = binary_column(mat, np.where(two, ev["len2"], 0), records.STR_OFFSET + records.STR_HALF,
                          records.STR_HALF) if two.any() else empty_binary(n)
    if kpath.any():
        path2 = _root_first(path2, kpath)
        unlinked = (ev["flags"] & records.EV_UNLINKED).astype(bool) & kpath
        if unlinked.any():  # as /proc shows a file that has no name any more
            import pyarrow.compute as pc

            deleted = pc.binary_join_element_wise(path2, pa.scalar(b" (deleted)", pa.binary()),
                                                  pa.scalar(b"", pa.binary()))
            path2 = pc.if_else(pa.array(unlinked), deleted, path2)
    comm = comm_column(mat, records.COMM_OFFSET)

    path, path2 = _network_paths(ev, mat, kind, path, path2)

    argv = None
    if len(argv_rows):
        offsets = np.zeros(n + 1, dtype=np.int32)
        values: list[bytes] = []
        counts = np.zeros(n, dtype=np.int32)
        for i in argv_rows:
            args = records.argv_bytes(ev["str"][i].tobytes(), int(len1[i]))
            counts[i] = len(args)
            values.extend(args)
        offsets[1:] = np.cumsum(counts)
        argv = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=pa.binary()))
    return {"ts": ev["ts"], "kind": kind, "tgid": ev["tgid"], "tid": ev["tid"], "ret": ev["ret"],
            "a0": ev["a0"], "a1": ev["a1"], "a2": ev["a2"], "a3": ev["a3"], "a4": ev["a4"], "a5": ev["a5"],
            "dur": ev["dur"], "nr": ev["nr"], "cpu": ev["cpu"], "comm": comm, "path": path, "path2": path2,
            "argv": argv}


def fact_columns(facts: np.ndarray, mat: np.ndarray | None = None) -> dict:
    """Columns of the state lane's compact records (``records.FACT_DTYPE``): no string to cut.
    ``mat``: the same records as a byte matrix, if the caller has one (``records.records_and_matrix``)."""
    if mat is None:
        mat = _matrix(facts)
    return {"ts": facts["ts"], "kind": facts["kind"].astype(np.uint16), "tgid": facts["tgid"], "tid": facts["tid"],
            "ret": facts["ret"], "a0": facts["a0"], "a1": facts["a1"], "a2": facts["a2"], "a3": facts["a3"],
            "a4": facts["a4"], "a5": facts["a5"], "dur": facts["dur"], "nr": facts["nr"], "cpu": facts["cpu"],
            "comm": comm_column(mat, records.COMM_OFFSET)}


_INT_COLUMNS = {"ts": np.int64, "kind": np.int8, "tgid": np.uint32, "tid": np.uint32, "ret": np.int64,
                "a0": np.int64, "a1": np.int64, "a2": np.int64, "a3": np.int64, "a4": np.int64, "a5": np.int64,
                "dur": np.int64, "nr": np.uint16, "cpu": np.uint16}
_EMPTY_BINARY = pa.array([], type=pa.binary())


def table(cols: dict, run_id: uuid.UUID | str, seq_start: int) -> pa.Table:
    """The ``events`` Arrow table of one set of columns (from any lane); absent columns are zero/empty."""
    n = len(cols["ts"])
    out = {"run_id": run_column(run_id, n),
           "ts": None, "seq": pa.array(np.arange(seq_start, seq_start + n, dtype=np.uint64))}
    for name, typ in _INT_COLUMNS.items():
        v = cols.get(name)
        # contiguous first: numpy copies a strided record field faster than Arrow converts one
        out[name] = pa.array(np.zeros(n, dtype=typ) if v is None else np.ascontiguousarray(v, dtype=typ))
    for name in ("comm", "path", "path2"):
        v = cols.get(name)
        out[name] = v if v is not None else empty_binary(n)
    argv = cols.get("argv")
    out["argv"] = argv if argv is not None else pa.ListArray.from_arrays(
        pa.array(np.zeros(n + 1, dtype=np.int32)), _EMPTY_BINARY.cast(pa.binary()))
    return pa.table(out)


EMPTY_BY_DEFAULT = ("path", "path2", "argv")   # events' String / Array(String) columns: default empty


def without_empty_columns(t: pa.Table) -> pa.Table:
    """``t`` without those of its EMPTY_BY_DEFAULT columns that are empty on every row (a batch of
    syscalls and context switches has no path and no argv): the store fills them in as its default,
    empty, for less than it costs to read them (18 ns a syscall row of ~250). Told by the offsets
    alone, whatever the batch's size."""
    empty = []
    for name in EMPTY_BY_DEFAULT:
        if name not in t.column_names:
            continue
        col = t.column(name)
        if col.null_count == 0 and all(_all_empty(c) for c in col.chunks):
            empty.append(name)
    return t.drop_columns(empty) if empty else t


def _all_empty(chunk: pa.Array) -> bool:
    """Every value of a binary or list chunk is empty: its first and last offsets are equal."""
    if len(chunk) == 0:
        return True
    if pa.types.is_list(chunk.type):
        offsets = chunk.offsets
        return offsets[0] == offsets[-1]
    if not pa.types.is_binary(chunk.type) and not pa.types.is_string(chunk.type):
        return False
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32)
    return bool(offsets[chunk.offset] == offsets[chunk.offset + len(chunk)])


def run_column(run_id: uuid.UUID | str, n: int) -> pa.Array:
    """The run id of n rows: one string and n one-byte indexes to it (a dictionary), instead of n
    copies of it (a 36-byte string a row was as dear to build as the rest of a syscall's row)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int8)), pa.array([str(run_id)]))


def _root_first(paths: pa.Array, rows: np.ndarray) -> pa.Array:
    """The kernel's paths (``records.EV_KPATH``: components leaf first, "f/dir/tmp") at ``rows`` as
    absolute paths ("/tmp/dir/f"); the other rows as they are. Vectorised: split, reverse each list
    by index arithmetic, join."""
    import pyarrow.compute as pc

    idx = np.flatnonzero(rows)
    parts = pc.split_pattern(paths.take(pa.array(idx)), pattern="/")
    offsets = parts.offsets.to_numpy()
    values = parts.flatten()
    lens = np.diff(offsets)
    row_of = np.repeat(np.arange(len(idx)), lens)
    pos = np.arange(len(values)) - offsets[:-1][row_of]
    order = offsets[:-1][row_of] + (lens[row_of] - 1 - pos)
    flipped = pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values.take(pa.array(order)))
    sep = pa.scalar(b"/", pa.binary())
    joined = pc.binary_join(flipped, sep)
    absolute = pc.binary_join_element_wise(pa.scalar(b"", pa.binary()), joined, sep)
    where = np.zeros(len(paths), dtype=np.int64)
    where[idx] = np.arange(len(idx))
    return pc.if_else(pa.array(rows), absolute.take(pa.array(where)), paths)


def empty_binary(n: int) -> pa.Array:
    """n empty byte strings, without a Python list."""
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(np.zeros(n + 1, dtype=np.int32)),
                                                   pa.py_buffer(b"")])


def comm_column(mat: np.ndarray, offset: int) -> pa.Array:
    """A task name (char[16], NUL-terminated unless 16 long) from each row of a record matrix."""
    comm_bytes = mat[:, offset : offset + 16]
    nul = comm_bytes == 0
    comm_len = np.where(nul.any(axis=1), nul.argmax(axis=1), 16)
    return binary_column(mat, comm_len, offset, 16)


def comm_runs(comm16: np.ndarray) -> pa.Array:
    """``comm_column`` of an (n, 16) byte matrix whose rows come in runs of one task name (a
    syscall stream: one thread's calls follow each other): each run's name is cut once and
    repeated, so the cost is one comparison pass plus the output. Many short runs: ``comm_column``."""
    n = len(comm16)
    words = np.ascontiguousarray(comm16).view("<u8").reshape(n, 2)
    change = np.flatnonzero((words[1:] != words[:-1]).any(axis=1)) + 1
    if len(change) > n // 16:
        return comm_column(comm16, 0)
    starts = np.concatenate([[0], change])
    counts = np.diff(np.append(starts, n))
    heads = [comm16[i].tobytes().split(b"\0", 1)[0] for i in starts]
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.repeat(np.array([len(h) for h in heads], dtype=np.int64), counts), out=offsets[1:])
    values = b"".join(h * int(c) for h, c in zip(heads, counts, strict=True))
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(values)])


TRANSPOSE_BLOCK = 4096   # records a step of record_columns' transpose: their words stay in cache


class _WordView:
    """Records seen as rows of 8-byte words, stride kept: through the array interface, which numpy
    reads for a view (a strided structured array has no buffer to view any other way)."""

    def __init__(self, recs: np.ndarray) -> None:
        self.recs = recs   # kept alive by the view
        self.__array_interface__ = {"data": (recs.__array_interface__["data"][0], True),
                                    "shape": (len(recs), recs.dtype.itemsize // 8),
                                    "strides": (recs.strides[0], 8), "typestr": "<i8", "version": 3}


def record_columns(recs: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Fields of fixed-size records as columns. Copying one field at a time out of 100-byte records
    reads every record's cache lines once per field; instead the records' 8-byte words are
    transposed in blocks that stay in cache, and each field is then a row of words (or a short
    stride within one): 36 against 120 ns a syscall record for its 13 columns, measured here.
    A field of a sub-array (``regs``) is its rows, one per element (shape (elements, n))."""
    dt = recs.dtype
    if len(recs) == 0 or dt.itemsize % 8 or recs.strides[0] % 8 or dt.byteorder == ">":
        return {name: np.ascontiguousarray(recs[name]) if recs.dtype.fields[name][0].subdtype is None
                else np.ascontiguousarray(recs[name].T) for name in names}
    words = np.asarray(_WordView(recs))
    spans = {}
    for name in names:
        ft, off = dt.fields[name][:2]
        spans[name] = (off // 8, (off + ft.itemsize + 7) // 8)
    lo, hi = min(a for a, _ in spans.values()), max(b for _, b in spans.values())
    n = len(recs)
    rows = np.empty((hi - lo, n), dtype=np.int64)
    for start in range(0, n, TRANSPOSE_BLOCK):
        rows[:, start : start + TRANSPOSE_BLOCK] = words[start : start + TRANSPOSE_BLOCK, lo:hi].T
    out = {}
    for name in names:
        ft, off = dt.fields[name][:2]
        first, last = spans[name]
        if ft.subdtype is not None:
            base, shape = ft.subdtype
            out[name] = rows[first - lo : last - lo].view(base).reshape(*shape, n) if base.itemsize == 8 \
                else np.ascontiguousarray(recs[name].T)
        elif ft.itemsize == 8 and off % 8 == 0:
            out[name] = rows[first - lo].view(ft)
        elif ft.itemsize in (1, 2, 4) and off % ft.itemsize == 0:
            per = 8 // ft.itemsize
            out[name] = rows[first - lo].view(ft)[(off % 8) // ft.itemsize :: per]
        else:
            out[name] = np.ascontiguousarray(recs[name])
    return out


def _matrix(recs: np.ndarray) -> np.ndarray:
    recs = np.ascontiguousarray(recs)
    return recs.view(np.uint8).reshape(len(recs), recs.dtype.itemsize)


def sched_columns(recs: np.ndarray, mat: np.ndarray | None = None) -> dict:
    """Columns of scheduler-lane records (``records.DTYPES['sched_rec']``): next comm in ``path``.
    ``mat``: the same records as a byte matrix, if the caller has one (``records.records_and_matrix``)."""
    mat = _matrix(recs) if mat is None else mat
    dt = records.DTYPES["sched_rec"]
    cols = record_columns(recs, ["ts", "kind", "tgid", "tid", "a0", "a1", "a2", "a3", "dur", "cpu", "len1"])
    len1 = cols.pop("len1")
    return {**cols, "comm": comm_column(mat, dt.fields["comm"][1]),
            "path": binary_column(mat, len1, dt.fields["str"][1], 16)}


_SYSCALL = records.KIND_CODES["syscall"]


class SyscallStream:
    """The syscall lane's records (``records.DTYPES['sc_call']``, one per call, written when it
    returned) as ``syscall`` facts, vectorised.

    Task names: a record carries its thread's name only when the kernel sends it (the first syscall
    of a thread, and the first after its name changed: ``records.SC_COMM``); every other syscall
    takes the last name sent for its thread, in this batch or in an earlier one (``names``, a
    per-thread map, saved with the spool's checkpoints).
    """

    def __init__(self, arch: str | None = None) -> None:
        import platform

        arch = arch or platform.machine()
        self.arg_words = list(records.REGS_ARGS.get(arch, (0, 1, 2, 3, 4, 5)))
        self.names: dict[int, bytes] = {}      # tid -> its task name, as last sent by the kernel

    def held(self) -> dict[str, np.ndarray]:
        """What is carried to the next batch (a spool checkpoint saves it): the task names."""
        names = np.array(list(self.names.items()), dtype=records.TID_COMM_DTYPE) if self.names else \
            np.zeros(0, dtype=records.TID_COMM_DTYPE)
        return {"tid_comm": names}

    def restore(self, held: dict[str, np.ndarray]) -> None:
        """Carry on from :meth:`held` of an earlier stream (recovering a spool)."""
        if "tid_comm" in held:
            self.names = {int(t): bytes(c) for t, c in held["tid_comm"]}

    def _name_codes(self, comm: np.ndarray, tids: np.ndarray, flags: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
        """Each call's task name as an index into a list of names: the last one sent for its
        thread up to it (in the order the calls returned); ``names`` then holds each thread's latest.
        ``comm``: the calls' name fields (read only where a name was sent).

        A thread's calls come in runs (between its context switches), and within a run that sends no
        name every call has its first call's name: the names are worked out for the runs' first
        calls only (a run starts where the thread changes or a name is sent), then repeated."""
        n = len(tids)
        sent = (flags & records.SC_COMM) != 0
        head = np.ones(n, dtype=bool)
        if n > 1:
            head[1:] = (tids[1:] != tids[:-1]) | sent[1:]
        heads = np.flatnonzero(head)
        codes, names = self._first_call_codes(comm, heads, tids[heads], sent[heads])
        return np.repeat(codes, np.diff(heads, append=n)), names

    def _first_call_codes(self, comm: np.ndarray, at: np.ndarray, tids: np.ndarray,
                          sent: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
        """``_name_codes`` of the calls at positions ``at`` (their ``tids``, whether each ``sent`` its name)."""
        n = len(tids)
        order = np.argsort(tids, kind="stable")          # each thread's calls together, in order
        st = tids[order]
        sent = sent[order]
        first = np.ones(n, dtype=bool)
        first[1:] = st[1:] != st[:-1]
        pos = np.arange(n)
        src = np.maximum.accumulate(np.where(sent, pos, -1))
        group_start = np.maximum.accumulate(np.where(first, pos, 0))
        here = src >= group_start                        # a name sent earlier in this batch, same thread
        # the names: those sent in this batch, then those carried for threads that sent none yet
        sent_pos = np.flatnonzero(sent)
        sent_names = comm[at[order[sent_pos]]]
        dictionary, sent_code = np.unique(sent_names, return_inverse=True)
        names = [bytes(b) for b in dictionary]
        code_at = np.zeros(n, dtype=np.int32)
        code_at[sent_pos] = sent_code.reshape(-1)
        codes_sorted = code_at[np.maximum(src, 0)]
        if not here.all():                               # before the thread's first name in this batch
            carried, which = np.unique(st[~here], return_inverse=True)
            codes_sorted[~here] = len(names) + which.reshape(-1)
            names += [self.names.get(int(t), b"") for t in carried.tolist()]
        last = np.flatnonzero(np.append(first[1:], True) & here)   # each thread's last call, if named
        self.names.update(zip(st[last].tolist(), [names[c] for c in codes_sorted[last].tolist()], strict=True))
        codes = np.empty(n, dtype=np.int32)
        codes[order] = codes_sorted
        return codes, names

    def feed(self, calls: np.ndarray) -> dict | None:
        """Columns of this batch's syscalls (None if none)."""
        n = len(calls)
        if not n:
            return None
        cols = record_columns(calls, ["ts", "tgid", "tid", "ret", "dur", "nr", "cpu", "flags", "regs"])
        regs, flags = cols.pop("regs").view(np.int64), cols.pop("flags")
        cols["kind"] = np.full(n, _SYSCALL, dtype=np.int8)
        for i, w in enumerate(self.arg_words):
            cols[f"a{i}"] = regs[w]
        codes, names = self._name_codes(calls["comm"], cols["tid"], flags)
        cols["comm"] = pa.array(names, type=pa.binary()).take(pa.array(codes))
        return cols


def lane_tables(batches: list, stream: SyscallStream, run_id, seq_start: int) -> tuple[list[pa.Table], int]:
    """Decode drained batches (``records.Drained``) into ``events`` tables: the state lane's facts
    (with strings, then the compact ones), then the syscalls, then the scheduler's, numbered from
    ``seq_start``. Returns (tables, rows)."""
    def joined(ring: str) -> np.ndarray:
        # the drains' bytes joined first (one memcpy), then viewed as records once: concatenating the
        # strided record views instead copies field by field, several times slower
        raw = [b.raw[ring] for b in batches if ring in b.raw and len(b.raw[ring])]
        return np.zeros(0, dtype=np.uint8) if not raw else raw[0] if len(raw) == 1 else np.concatenate(raw)

    def lane(ring: str) -> np.ndarray:
        return records.records_of(joined(ring), records.RINGS[ring])

    state, mat = records.records_and_matrix(joined("events"), "event")
    extra = [b.state for b in batches if b.state is not None and len(b.state)]
    if extra:
        state = np.concatenate([state, *extra]) if len(state) else (
            extra[0] if len(extra) == 1 else np.concatenate(extra))
        mat = None
    tables = []
    seq = seq_start
    if len(state):
        tables.append(to_arrow(state, run_id, seq, mat))
        seq += len(state)
    short, smat = records.records_and_matrix(joined("rb_short"), "event_short")
    if len(short):
        tables.append(to_arrow(short, run_id, seq, smat))
        seq += len(short)
    facts, fmat = records.records_and_matrix(joined("rb_facts"), "fact")
    if len(facts):
        tables.append(table(fact_columns(facts, fmat), run_id, seq))
        seq += len(facts)
    cols = stream.feed(lane("rb_sc"))
    if cols is not None:
        t = table(cols, run_id, seq)
        tables.append(t)
        seq += len(t)
    sched, schmat = records.records_and_matrix(joined("rb_sched"), "sched_rec")
    if len(sched):
        tables.append(table(sched_columns(sched, schmat), run_id, seq))
        seq += len(sched)
    return tables, seq - seq_start


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


def lost_row(run_id: uuid.UUID | str, ts: int, seq: int, count: int, cause: int = 0) -> pa.Table:
    """A ``lost`` fact: ``count`` records were dropped before ``ts``, at ``cause``
    (``records.DROPS``: a full ring of a lane, a full map)."""
    ev = np.zeros(1, dtype=records.EVENT_DTYPE)
    ev["ts"] = ts
    ev["kind"] = records.KIND_CODES["lost"]
    ev["a0"] = count
    ev["a1"] = cause
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


def agg_records(agg: np.ndarray) -> np.ndarray:
    """``syscall_agg`` facts as kernel-layout records (``records.EVENT_DTYPE``) from what
    ``Probe.agg_sweep`` took out of the kernel (``records.DTYPES['sc_agg']``), one per thread and
    syscall number: ts = first entry, dur = time spent summed, nr, a0 = calls, a1 = failed ones,
    a2 = last exit (the window is [ts, a2])."""
    ev = np.zeros(len(agg), dtype=records.EVENT_DTYPE)
    if not len(agg):
        return ev
    ev["ts"] = agg["first"]
    ev["kind"] = records.KIND_CODES["syscall_agg"]
    ev["tgid"] = agg["tgid"]
    ev["tid"] = agg["tid"]
    ev["nr"] = agg["nr"]
    ev["dur"] = agg["dur"]
    ev["a0"] = agg["count"]
    ev["a1"] = agg["errors"]
    ev["a2"] = agg["last"]
    ev["comm"] = agg["comm"]
    return ev
