"""The run's spool: every drained byte reaches a file first; decoding and inserts run behind it.

The recorder's drain copies each ring's committed records straight from the ring into the current
segment file of its run (one ``write`` per ring, no decode, no database) and gives the ring its
space back; the writer thread (``osrewind.ingest.writer``) reads the frames back behind it, decodes
them and inserts them, so a slow store never makes the kernel drop records: the spool absorbs the
difference, up to ``max_bytes`` (``record --max-spool``). The run is complete when the writer has
caught up.

The spool is also the crash log. After each insert the writer saves a checkpoint (how far the
store is complete: spool position, next ``seq``, the syscall lane's task names) and deletes the
segments behind it. When a recorder dies (SIGKILL, power loss), the segments that reached the disk
are still there: :func:`recover` deletes the rows its last insert may have left past the checkpoint,
ingests the rest and marks the run ``recovered``. Each spool holds ``spool.lock`` (flock) while its
recorder lives, so a spool can be recovered only once its recorder is gone.

Where: beside an embedded store (``STORE/osrewind-spool/RUN/``); for a server store, under
``$XDG_STATE_HOME/osrewind/spool/<host-port-db>/RUN/`` on the recording machine.

Segment files (``seg-00000001.spool``...) are a sequence of frames::

    header  <4sHHqQ   magic b"OSF1", type, number of parts, taken_ns, payload bytes
    parts   <H6xQ     per part: what it holds (PART_*), bytes
    check   <I4x      crc32 of header and parts table
    payload           the parts' bytes, one after another

A frame whose header does not check, or whose payload runs past the end of its file (a torn write),
ends its segment. Ring records keep their ring headers, so records the disk lost (zeros after a
power loss) are recognised on recovery and cut there.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osrewind.probes import records

SPOOL_DIR_NAME = "osrewind-spool"
SEGMENT_BYTES = 64 << 20
DEFAULT_MAX_BYTES = 4 << 30
META_NAME = "run.json"
CHECKPOINT_NAME = "checkpoint.json"
LOCK_NAME = "spool.lock"

HEADER = struct.Struct("<4sHHqQ")
PART = struct.Struct("<H6xQ")
CHECK = struct.Struct("<I4x")
MAGIC = b"OSF1"

# frame types
DRAIN, LOST, TABLE = 1, 2, 3
# what a part holds: the rings' raw slot bytes, state-lane records made in user space, the rest
# (1 and 2 were the syscall lane's enter and exit rings before it became one ring: a spool of an older
# osrewind recovers without its syscall stream)
RING_PARTS = {"events": 0, "rb_sched": 3, "rb_facts": 8, "rb_short": 9, "rb_sc": 10}
PART_RINGS = {v: k for k, v in RING_PARTS.items()}
PART_STATE, PART_LOST, PART_NAME, PART_ARROW = 4, 5, 6, 7
LOST_ROW = struct.Struct("<qqq")   # ts, count, cause


class SpoolError(OSError):
    """The spool cannot be written (a full disk, its directory gone)."""


@dataclass(frozen=True)
class Pos:
    """A place in a spool: segment number and byte offset in it."""

    seg: int
    off: int

    def __lt__(self, other: Pos) -> bool:
        return (self.seg, self.off) < (other.seg, other.off)


@dataclass
class Frame:
    """One frame, as the writer reads it back: where its payload is and where the next frame starts."""

    type: int
    taken_ns: int
    parts: list[tuple[int, int]]       # (PART_*, bytes)
    seg: int
    payload_off: int
    end: Pos
    data: dict[int, np.ndarray] | None = field(default=None, repr=False)   # filled by read_payload

    @property
    def nbytes(self) -> int:
        return sum(n for _, n in self.parts)

    def records(self) -> int:
        """Records in a DRAIN frame (ring slots plus user-space state records)."""
        n = 0
        for code, size in self.parts:
            if code in PART_RINGS:
                n += size // records.slot_size(records.RINGS[PART_RINGS[code]])
            elif code == PART_STATE:
                n += size // records.EVENT_DTYPE.itemsize
        return n


def segment_name(seg: int) -> str:
    return f"seg-{seg:08d}.spool"


_SEG_RE = re.compile(r"^seg-(\d{8})\.spool$")


def segments(path: Path) -> list[int]:
    """The segment numbers present in a spool directory, in order."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(int(m.group(1)) for m in map(_SEG_RE.match, names) if m)


def segment_sizes(path: Path) -> dict[int, int]:
    """The bytes of each segment present in a spool directory (one removed meanwhile: left out)."""
    out = {}
    for s in segments(path):
        try:
            out[s] = (path / segment_name(s)).stat().st_size
        except OSError:
            continue
    return out


def spool_root(location: str, embedded: bool) -> Path:
    """Where the spools of a store's runs live (see the module docstring)."""
    if embedded:
        return Path(os.path.abspath(location)) / SPOOL_DIR_NAME
    from urllib.parse import urlsplit

    u = urlsplit(location)
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{u.hostname}-{u.port or ''}-{u.path.strip('/') or 'default'}")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "osrewind" / "spool" / key


def _frame_bytes(ftype: int, taken_ns: int, parts: list[tuple[int, int]]) -> bytes:
    head = HEADER.pack(MAGIC, ftype, len(parts), taken_ns, sum(n for _, n in parts))
    head += b"".join(PART.pack(code, n) for code, n in parts)
    return head + CHECK.pack(zlib.crc32(head))


class Spool:
    """The writing side, owned by the recorder: frames appended to segment files, rotated at
    ``SEGMENT_BYTES``; the writer's checkpoints and segment deletions go through it too."""

    def __init__(self, root: Path, run_id: str, meta: dict, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = Path(root) / str(run_id)
        old = os.umask(0o077)
        try:
            self.path.mkdir(parents=True, exist_ok=False, mode=0o700)
        finally:
            os.umask(old)
        self.max_bytes = max_bytes
        self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.meta = dict(meta)
        _write_json(self.path / META_NAME, self.meta)
        self.seg = 0
        self.off = 0
        self._fd = -1
        self.appended = 0          # payload bytes appended so far
        self.consumed = 0          # payload bytes the writer has inserted (its checkpoints)
        self._mutex = threading.Lock()
        self._on_disk: dict[int, int] = {}   # segment -> bytes written to it
        self._rotate()

    @classmethod
    def reopen(cls, path: Path) -> Spool:
        """A dead recorder's spool, for its recovery (the caller holds its lock): checkpoints and
        deletions as the recorder's writer would make them; nothing is appended. What its segments
        hold past the last checkpoint counts as appended and not yet consumed (the backlog), as it
        was when the recorder died, so the writer catches up on it as after a flood (e.g. merges
        wait)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.max_bytes = DEFAULT_MAX_BYTES
        self._lock_fd = -1
        self.seg = 0
        self.off = 0
        self._fd = -1
        self._mutex = threading.Lock()
        self._on_disk = {s: 0 for s in segments(self.path)}
        self.appended, self.consumed = self._past_checkpoint(), 0
        return self

    def _past_checkpoint(self) -> int:
        """Bytes of the segments after the last checkpoint (all of them without a readable one)."""
        try:
            cp = load_checkpoint(self.path)
        except SpoolError:
            cp = None
        start = cp["pos"] if cp else Pos(0, 0)
        return sum(max(0, n - (start.off if s == start.seg else 0))
                   for s, n in segment_sizes(self.path).items() if s >= start.seg)

    # --------------------------------------------------------------- recorder thread

    def _rotate(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self.seg += 1
        self.off = 0
        self._fd = os.open(self.path / segment_name(self.seg),
                           os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        with self._mutex:
            self._on_disk[self.seg] = 0

    def note(self, **items) -> None:
        """Add to the run's description kept with the spool (e.g. the command's pid once forked)."""
        self.meta.update(items)
        _write_json(self.path / META_NAME, self.meta)

    @property
    def backlog(self) -> int:
        """Bytes spooled but not yet in the store."""
        return self.appended - self.consumed

    @property
    def full(self) -> bool:
        return self.backlog >= self.max_bytes

    def append(self, ftype: int, taken_ns: int, parts: list[tuple[int, np.ndarray | bytes]]) -> Frame:
        """Write one frame (its parts copied once, from wherever they are: a ring, a buffer)."""
        if self.off >= SEGMENT_BYTES:
            self._rotate()
        sizes = [(code, len(b) if isinstance(b, bytes) else b.nbytes) for code, b in parts]
        head = _frame_bytes(ftype, taken_ns, sizes)
        start = self.off
        try:
            _write_all(self._fd, head)
            for _, b in parts:
                _write_all(self._fd, b if isinstance(b, bytes) else memoryview(np.ascontiguousarray(b)).cast("B"))
        except OSError as exc:
            raise SpoolError(exc.errno, f"cannot write the spool {self.path}: {os.strerror(exc.errno or 0)}") from exc
        total = sum(n for _, n in sizes)
        self.off = start + len(head) + total
        self.appended += total
        with self._mutex:
            self._on_disk[self.seg] = self.off
        return Frame(ftype, taken_ns, sizes, self.seg, start + len(head), Pos(self.seg, self.off))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def remove(self) -> None:
        """The run is in the store: the spool goes (its lock last)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        _rmdir_if_empty(self.path.parent)

    # --------------------------------------------------------------- writer thread

    def checkpoint(self, pos: Pos, seq: int, written: int, held: dict[str, np.ndarray], consumed: int) -> None:
        """Everything before ``pos`` is in the store (rows numbered below ``seq``); segments wholly
        before it are deleted."""
        save_checkpoint(self.path, pos, seq, written, held)
        self.consumed = consumed
        with self._mutex:
            gone = [s for s in self._on_disk if s < pos.seg]
            for s in gone:
                del self._on_disk[s]
        for s in gone:
            with contextlib.suppress(OSError):
                os.unlink(self.path / segment_name(s))


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while len(view):
        n = os.write(fd, view)
        view = view[n:]


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        _write_all(fd, json.dumps(doc).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _rmdir_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()


def save_checkpoint(path: Path, pos: Pos, seq: int, written: int, held: dict[str, np.ndarray]) -> None:
    _write_json(path / CHECKPOINT_NAME, {
        "seg": pos.seg, "off": pos.off, "seq": seq, "written": written,
        "held": {k: base64.b64encode(v.tobytes()).decode() for k, v in held.items()}})


def load_checkpoint(path: Path) -> dict | None:
    """The last checkpoint (``held`` decoded back to arrays: the syscall lane's task names), None if
    none was saved."""
    try:
        with open(path / CHECKPOINT_NAME, "rb") as f:
            doc = json.loads(f.read(1 << 24))
        doc["pos"] = Pos(int(doc["seg"]), int(doc["off"]))
        doc["held"] = {k: np.frombuffer(base64.b64decode(v), dtype=records.TID_COMM_DTYPE).copy()
                       for k, v in doc.get("held", {}).items() if k == "tid_comm"}
        return doc
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpoolError(errno.EINVAL, f"spool checkpoint {path / CHECKPOINT_NAME} is unreadable: {exc}") from exc


# ------------------------------------------------------------------- reading back


def _read_frame(fd: int, path: Path, frame: Frame, bufs: list[np.ndarray]) -> None:
    """``frame``'s parts into ``bufs`` (one array each, in order), from its segment open as ``fd``."""
    want = frame.nbytes
    if want and os.preadv(fd, [b for b in bufs if len(b)], frame.payload_off) != want:
        raise SpoolError(errno.EIO, f"spool segment {frame.seg} of {path} is shorter than its frames")


def read_payload(path: Path, frame: Frame) -> dict[int, np.ndarray]:
    """A frame's parts, read from its segment (page cache, most often) into fresh arrays."""
    out = {code: np.empty(n, dtype=np.uint8) for code, n in frame.parts}
    fd = os.open(path / segment_name(frame.seg), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _read_frame(fd, path, frame, [out[code] for code, _ in frame.parts])
    finally:
        os.close(fd)
    return out


def read_drains(path: Path, frames_: list[Frame]) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """The DRAIN frames ``frames_`` read back as one: each ring's parts of all of them read straight
    into one array (in frame order, one copy out of the page cache: no joining afterwards, which
    copied a catch-up's records a second time into fresh memory), and their state parts."""
    sizes: dict[int, int] = {}
    for f in frames_:
        for code, n in f.parts:
            if code in PART_RINGS:
                sizes[code] = sizes.get(code, 0) + n
    rings = {code: np.empty(n, dtype=np.uint8) for code, n in sizes.items()}
    filled = dict.fromkeys(rings, 0)
    state: list[np.ndarray] = []
    fd, fd_seg = -1, -1
    try:
        for f in frames_:
            if f.seg != fd_seg:
                if fd >= 0:
                    os.close(fd)
                    fd = -1
                fd = os.open(path / segment_name(f.seg), os.O_RDONLY | os.O_CLOEXEC)
                fd_seg = f.seg
            bufs = []
            for code, n in f.parts:
                if code in rings:
                    bufs.append(rings[code][filled[code] : filled[code] + n])
                    filled[code] += n
                else:
                    bufs.append(np.empty(n, dtype=np.uint8))
                    if code == PART_STATE:
                        state.append(bufs[-1])
            _read_frame(fd, path, f, bufs)
    finally:
        if fd >= 0:
            os.close(fd)
    return {PART_RINGS[code]: buf for code, buf in rings.items()}, state


def frames(path: Path, start: Pos | None = None) -> Iterator[Frame]:
    """Every whole frame of a spool from ``start`` (recovery): a torn or damaged frame ends its
    segment, and the next segment carries on."""
    for seg in segments(path):
        if start is not None and seg < start.seg:
            continue
        off = start.off if start is not None and seg == start.seg else 0
        try:
            fd = os.open(path / segment_name(seg), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            size = os.fstat(fd).st_size
            while off + HEADER.size <= size:
                head = os.pread(fd, HEADER.size, off)
                magic, ftype, nparts, taken, total = HEADER.unpack(head)
                if magic != MAGIC or nparts > 64:
                    break
                table = os.pread(fd, nparts * PART.size + CHECK.size, off + HEADER.size)
                if len(table) != nparts * PART.size + CHECK.size:
                    break
                (crc,) = CHECK.unpack(table[-CHECK.size:])
                if zlib.crc32(head + table[: -CHECK.size]) != crc:
                    break
                parts = [PART.unpack_from(table, i * PART.size) for i in range(nparts)]
                payload_off = off + HEADER.size + len(table)
                end = payload_off + total
                if end > size or sum(n for _, n in parts) != total:
                    break   # torn: the recorder died in the middle of this write
                yield Frame(ftype, taken, parts, seg, payload_off, Pos(seg, end))
                off = end
        finally:
            os.close(fd)


def valid_prefix(raw: np.ndarray, layout: str) -> np.ndarray:
    """Ring slots up to the first whose header is not a committed record of ``layout`` (after a power
    loss a segment may hold zeros where records did not reach the disk)."""
    slot = records.slot_size(layout)
    n = len(raw) // slot
    if not n:
        return raw[:0]
    hdr = raw[: n * slot].reshape(n, slot)[:, :4].copy().view("<u4").ravel()
    ok = (hdr & ~np.uint32(records.RB_BUSY | records.RB_DISCARD)) == records.DTYPES[layout].itemsize
    bad = np.flatnonzero(~ok)
    k = int(bad[0]) if len(bad) else n
    return raw[: k * slot]


# ------------------------------------------------------------------- recovery


@dataclass
class Orphan:
    """A spool whose recorder is gone: what :func:`recover` would ingest."""

    path: Path
    run_id: str
    meta: dict
    bytes: int

    def lock(self) -> int | None:
        """Hold the spool's lock (None if its recorder still runs)."""
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd


def orphans(root: Path) -> list[Orphan]:
    """Spools under ``root`` whose recorder has died, oldest first."""
    out = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    for name in names:
        path = root / name
        if not path.is_dir() or path.is_symlink():
            continue
        o = Orphan(path, name, {}, 0)
        fd = o.lock()
        if fd is None:
            continue   # its recorder is alive (or the directory is not ours to read)
        os.close(fd)
        try:
            with open(path / META_NAME, "rb") as f:
                o.meta = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            o.meta = {}
        o.bytes = sum(segment_sizes(path).values())
        out.append(o)
    out.sort(key=lambda o: o.meta.get("start_ns", 0))
    return out
