"""Load ``record.bpf.c`` with BCC and read its ring buffer in bulk.

The only module of osrewind that imports ``bcc`` (Debian's python3-bpfcc; the PyPI package named bcc
is unrelated). Everything here is about getting records out of the kernel; decoding the records into
columns is ``osrewind.ingest``'s job.

Reading: the ring buffer map is mmap'ed from Python (page 0: consumer position, read-write; from page
1: producer position, then the data pages mapped twice so that no record wraps). A drain views all
committed records at once as numpy structured rows (``records.SLOT_DTYPE``), copies them, and moves
the consumer position: no Python per record.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osrewind.errors import EnvironmentProblem
from osrewind.probes import records, syscall_table

SOURCE = Path(__file__).with_name("record.bpf.c")
TRACEFS = Path("/sys/kernel/tracing")
DEBUGFS = Path("/sys/kernel/debug")

# Syscalls that exist on some architectures only (aarch64 has none of these legacy entry points).
OPTIONAL_SYSCALLS = ("fork", "vfork", "open", "creat", "dup2", "pipe", "rename", "renameat", "unlink",
                     "rmdir", "mkdir")


@dataclass
class ProbeOptions:
    system_wide: bool = False
    syscalls: bool = True       # the generic stream of every syscall
    sched: bool = True          # context switches, wakeups, migrations
    aggregate_io: bool = False  # byte counts per (process, fd) instead of a record per read/write
    ringbuf_pages: int = 16384  # 64 MiB: ~110k records of headroom between drains
    self_tgid: int = field(default_factory=os.getpid)


def ensure_tracefs() -> None:
    """Mount tracefs (and debugfs) when they are not mounted yet. Idempotent."""
    for path, fstype in ((TRACEFS, "tracefs"), (DEBUGFS, "debugfs")):
        if os.path.ismount(path):
            continue
        rc = os.system(f"mount -t {fstype} nodev {path} >/dev/null 2>&1")
        if rc != 0 and path == TRACEFS:
            raise EnvironmentProblem(f"cannot mount tracefs at {path}: mount -t tracefs nodev {path} failed")


def check_environment() -> None:
    """One-line errors for the usual reasons a recording cannot start."""
    if os.geteuid() != 0:
        raise EnvironmentProblem("recording needs root (BPF programs): run with sudo")
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(
            "BCC is not importable: install Debian's python3-bpfcc (scripts/setup.sh does it)"
        ) from exc
    release = os.uname().release
    build = Path(os.environ.get("OSREWIND_MODULES_DIR", "/lib/modules")) / release / "build"
    if not build.exists() and not os.environ.get("BCC_KERNEL_SOURCE"):
        raise EnvironmentProblem(
            f"kernel headers not found at {build}: run scripts/setup.sh (installs headers and links them)"
        )


def syscall_exists(name: str) -> bool:
    return (TRACEFS / "events" / "syscalls" / f"sys_enter_{name}").is_dir()


def cflags(opts: ProbeOptions) -> list[str]:
    flags = [f"-DRINGBUF_PAGES={opts.ringbuf_pages}", f"-DSELF_TGID={opts.self_tgid}"]
    if opts.system_wide:
        flags.append("-DSYSTEM_WIDE")
    machine = platform.machine()
    flags.append({"x86_64": "-DOSREWIND_X86_64", "aarch64": "-DOSREWIND_ARM64"}.get(machine, "-DOSREWIND_OTHER"))
    if not opts.syscalls or machine not in syscall_table.TABLES:
        flags.append("-DNO_SYSCALLS")
    else:
        flags += [f"-DNR_EXIT={syscall_table.number('exit')}",
                  f"-DNR_EXIT_GROUP={syscall_table.number('exit_group')}"]
    if not opts.sched:
        flags.append("-DNO_SCHED")
    if opts.aggregate_io and "-DNO_SYSCALLS" not in flags:
        flags.append("-DAGGREGATE_IO")
    flags += [f"-DHAVE_{name}" for name in OPTIONAL_SYSCALLS if syscall_exists(name)]
    return flags


def final_source(opts: ProbeOptions) -> str:
    """The C program exactly as compiled: the -D options as #defines, then the source."""
    defines = []
    for flag in cflags(opts):
        name, _, value = flag[2:].partition("=")
        defines.append(f"#define {name} {value}".rstrip())
    return "// cflags: " + " ".join(cflags(opts)) + "\n" + "\n".join(defines) + "\n" + SOURCE.read_text()


class RingReader:
    """Consumer side of a BPF ring buffer map, mmap'ed and read in bulk."""

    def __init__(self, map_fd: int, size: int) -> None:
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._bytes = np.frombuffer(self._data, dtype=np.uint8)
        # positions as aligned 8-byte words: one store the kernel can never see half-written
        self._cons_pos = np.frombuffer(self._cons, dtype=np.uint64, count=1)
        self._prod_pos = np.frombuffer(self._data, dtype=np.uint64, count=1)
        self._page = page

    def _positions(self) -> tuple[int, int]:
        return int(self._cons_pos[0]), int(self._prod_pos[0])

    def drain(self, max_records: int = 200_000) -> np.ndarray:
        """Copy out every committed record (up to max_records) and release their space."""
        cons, prod = self._positions()
        avail = prod - cons
        if avail <= 0:
            return np.zeros(0, dtype=records.EVENT_DTYPE)
        n = min(avail // records.RECORD_SIZE, max_records)
        start = self._page + (cons & self.mask)
        raw = self._bytes[start : start + n * records.RECORD_SIZE]
        ev, used = records.committed_prefix(records.slots_from_buffer(raw))
        ev = ev.copy()
        if used:
            self._cons_pos[0] = cons + used * records.RECORD_SIZE
        return ev

    def close(self) -> None:
        del self._bytes, self._cons_pos, self._prod_pos
        self._cons.close()
        self._data.close()


class Probe:
    """The loaded recorder program: scope map, ring buffer reader and lost-record counter."""

    def __init__(self, opts: ProbeOptions) -> None:
        check_environment()
        ensure_tracefs()
        import bcc

        self.opts = opts
        try:
            self.bpf = bcc.BPF(src_file=str(SOURCE).encode(), cflags=cflags(opts))
        except Exception as exc:  # BCC raises bare Exception on compile/attach failure
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise EnvironmentProblem(f"loading the BPF program failed: {msg}") from exc
        rb = self.bpf[b"events"]
        self.reader = RingReader(rb.map_fd, opts.ringbuf_pages * mmap.PAGESIZE)
        self._tracked = self.bpf[b"tracked"]
        self._lost = self.bpf[b"lost"]
        self._tids = self.bpf[b"tids"]
        if opts.aggregate_io:
            ionr = self.bpf[b"ionr"]
            for name in records.IO_SENDS + records.IO_RECVS:
                nr = syscall_table.number(name)
                if nr is not None and nr < 1024:
                    ionr[ctypes.c_int(nr)] = ctypes.c_uint8(1 if name in records.IO_SENDS else 2)

    def track(self, pids) -> None:
        """Put processes in scope: the tgid for syscalls, each thread's tid for the scheduler."""
        for pid in pids:
            self._tracked[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                threads = [pid]
            for tid in threads:
                self._tids[ctypes.c_uint32(tid)] = ctypes.c_uint32(pid)

    def drain(self) -> np.ndarray:
        return self.reader.drain()

    def io_sweep(self, older_than_ns: int | None) -> list[tuple[int, int, int, int, int]]:
        """--aggregate-io sums the kernel has not sent because their fd went quiet: taken out of
        the map as (tgid, fd, bytes out, bytes in, calls). ``None`` takes every one (at the end)."""
        if not self.opts.aggregate_io:
            return []
        table = self.bpf[b"io"]
        now = time.monotonic_ns()
        out = []
        for k, v in list(table.items()):
            if v.calls and (older_than_ns is None or now - v.first >= older_than_ns):
                out.append((int(k.tgid), int(k.fd), int(v.out), int(getattr(v, "in")), int(v.calls)))
                try:
                    del table[k]
                except KeyError:
                    pass
        return out

    def untrack(self, pid: int) -> None:
        try:
            del self._tracked[ctypes.c_uint32(pid)]
        except KeyError:
            pass

    def tracked_pids(self) -> set[int]:
        return {int(k.value) for k in self._tracked.keys()}

    def lost(self) -> int:
        total = 0
        for v in self._lost.values():
            total += sum(int(x) for x in v) if hasattr(v, "__len__") else int(v.value)
        return total

    def layout(self) -> dict:
        """Size and field offsets of ``struct event`` as the compiler laid it out (for the layout test)."""
        leaf = self.bpf[b"layout_check"].Leaf
        return {"size": ctypes.sizeof(leaf),
                **{name: getattr(leaf, name).offset for name, _ in leaf._fields_}}

    def close(self, background: bool = True) -> None:
        """Detach the program. Releasing ~90 tracepoints waits for RCU grace periods (seconds on
        this kernel), so by default a forked child holds the last references and pays that cost
        after the recorder has returned."""
        self.reader.close()
        if background:
            _release_in_background()
        self.bpf.cleanup()


def _release_in_background() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            keep = {r}
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                try:
                    target = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    continue
                if "bpf" in target or "perf_event" in target:
                    keep.add(fd)
            for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            os.setsid()
            os.read(r, 1)  # returns at EOF: the recorder has dropped its references
        finally:
            os._exit(0)
    os.close(r)
    # the write end closes when this process exits (CLOEXEC is not needed: we never exec)
    _RELEASE_PIPES.append(w)


_RELEASE_PIPES: list[int] = []
