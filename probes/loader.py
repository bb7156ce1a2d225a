"""Load ``record.bpf.c`` with BCC and read its ring buffer in bulk.

The only module of osrewind that imports ``bcc`` (Debian's python3-bpfcc; the PyPI package named bcc
is unrelated). Everything here is about getting records out of the kernel; decoding the records into
columns is ``osrewind.ingest``'s job.

Reading: each ring buffer map is mmap'ed from Python (page 0: consumer position, read-write; from page
1: producer position, then the data pages mapped twice so that no record wraps). A drain reads the
record headers (a strided view) to find the committed prefix, copies those bytes once, and moves the
consumer position: no Python per record, no decoding on the draining thread.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import re
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from osrewind.errors import EnvironmentProblem
from osrewind.probes import btf, records, syscall_table, tpstructs

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
    ringbuf_pages: int = 16384  # half the syscall ring (128 MiB: ~1M syscalls of headroom between drains)
    self_tgid: int = field(default_factory=os.getpid)
    kernel_identity: bool = True  # read what the kernel opened (inode, resolved path) where it has BTF
    cgroup: tuple[int, str] | None = None  # (hierarchy id, path): tasks moved into it come into scope


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


# the state lane's rings are never smaller than this (1 MiB: ~1,600 facts with a string, ~8,700
# without, between two drains), whatever size the stream lanes are given
STATE_RING_MIN_PAGES = 256


def pid_max() -> int:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 4194304  # the largest pid_max Linux allows


def _pages(n: int) -> int:
    """A ring size in pages: a power of two, at least one page."""
    n = max(1, int(n))
    return 1 << (n - 1).bit_length()


def ring_pages(opts: ProbeOptions) -> dict[str, int]:
    """Pages of each ring. The syscall lane's ring (the busiest) gets twice ``ringbuf_pages``, the
    scheduler ring its share (far fewer records). The state lane never degrades and its records are
    the largest (an fd-heavy flood fills it first), so its string ring gets ``ringbuf_pages``, its
    short-path ring (records 40% the size) half of that, its compact ring (a fifth) a quarter."""
    base = _pages(opts.ringbuf_pages)
    state = max(base, STATE_RING_MIN_PAGES)
    rings = {"events": state, "rb_short": max(state // 2, STATE_RING_MIN_PAGES),
             "rb_facts": max(state // 4, STATE_RING_MIN_PAGES)}
    if opts.syscalls and platform.machine() in syscall_table.TABLES:
        rings["rb_sc"] = base * 2
    if opts.sched:
        rings["rb_sched"] = _pages(base // 4)
    return rings


def cflags(opts: ProbeOptions) -> list[str]:
    rings = ring_pages(opts)
    flags = [f"-DRINGBUF_PAGES={rings['events']}", f"-DFACTS_PAGES={rings['rb_facts']}",
             f"-DSHORT_PAGES={rings['rb_short']}", f"-DSELF_TGID={opts.self_tgid}", f"-DPID_MAX={pid_max()}"]
    if opts.system_wide:
        flags.append("-DSYSTEM_WIDE")
    machine = platform.machine()
    if "rb_sc" not in rings:
        flags.append("-DNO_SYSCALLS")
    else:
        flags += [f"-DSC_PAGES={rings['rb_sc']}"]
        flags += [f"-DNR_{name.upper()}={nr}" for name in ("exit", "exit_group", "execve", "execveat")
                  if (nr := syscall_table.number(name)) is not None]
    if not opts.sched:
        flags.append("-DNO_SCHED")
    else:
        flags.append(f"-DSCHED_PAGES={rings['rb_sched']}")
    if opts.aggregate_io and "-DNO_SYSCALLS" not in flags:
        flags.append("-DAGGREGATE_IO")
    flags += [f"-DHAVE_{name}" for name in OPTIONAL_SYSCALLS if syscall_exists(name)]
    if opts.cgroup is not None:
        flags.append("-DCGROUP_SCOPE")
    offsets = kernel_offsets(opts)
    if offsets is not None:   # a kernel with BTF: task-local storage for the syscalls in flight too
        flags += offsets.cflags() + ["-DPENDING_TASK_STORAGE"]
    del machine
    return flags


def kernel_offsets(opts: ProbeOptions) -> btf.Offsets | None:
    """The running kernel's struct offsets (probes/btf.py), or None: no BTF (or not asked for), and
    files are then identified by the path a program passed."""
    if not opts.kernel_identity:
        return None
    try:
        return btf.offsets()
    except btf.BtfError:
        return None


def header() -> str:
    """The generated declarations (records.c_header) and this architecture's register window."""
    machine = platform.machine()
    lines = [records.c_header()]
    window = records.REGS_WINDOW_C.get(machine)
    if window:
        lines.append(f"#define REGS_WINDOW {window}")
        lines.append(f"#define REGS_ARG0 {records.REGS_ARGS[machine][0]}")
        if machine in records.REGS_ARG0_AT_EXIT_C:
            lines.append(f"#define REGS_ARG0_AT_EXIT {records.REGS_ARG0_AT_EXIT_C[machine]}")
    else:  # unknown architecture: the syscall lane is off (cflags), nothing reads registers
        lines.append("#define REGS_WINDOW 0\n#define REGS_ARG0 0")
    return "\n".join(lines) + "\n"


_EXIT_LINE = re.compile(r"^(EXIT|EXIT_KPATH)\((\w+)\)\s*$", re.M)
EXIT_PROGRAMS = {"EXIT": "state_exit", "EXIT_KPATH": "state_exit_kpath"}


def state_exits() -> list[tuple[str, str]]:
    """(syscall, program) for each state-lane exit: record.bpf.c's EXIT(name) and EXIT_KPATH(name)
    lines, whose programs are attached to sys_exit_<name> here (one compiled program for them all),
    on this kernel's syscalls only (as their enters are: HAVE_<name>). With the every-syscall stream
    on, the raw sys_exit hook completes these calls instead (``Probe``: record.bpf.c's state_nr)."""
    return [(name, EXIT_PROGRAMS[mark]) for mark, name in _EXIT_LINE.findall(SOURCE.read_text())
            if syscall_exists(name)]


def program_text(tracepoint_structs: str | None = None) -> str:
    """What BCC compiles: the generated header, then record.bpf.c. With ``tracepoint_structs``
    (``tpstructs.structs``), the probes are declared over them, before the first one, instead of
    BCC making them from the tracepoints' format files (see probes/tpstructs.py)."""
    src = SOURCE.read_text()
    # the header goes after the #includes (it uses the kernel's types and struct pt_regs)
    marker = "#include <uapi/linux/ptrace.h>\n"
    src = src.replace(marker, marker + header(), 1)
    if tracepoint_structs:
        first = re.search(r"^TRACEPOINT_PROBE\(", src, re.M)
        if first:
            src = src[: first.start()] + tpstructs.override(tracepoint_structs) + src[first.start() :]
    return src


def _cached_structs() -> str | None:
    try:
        import bcc
    except ImportError:
        return None
    return tpstructs.cached(bcc, tpstructs.tracepoints(SOURCE.read_text(), TRACEFS))


def final_source(opts: ProbeOptions) -> str:
    """The C program exactly as compiled: the -D options as #defines, then the source (over the
    tracepoint structs when they are cached, as a recording compiles it; probes/tpstructs.py)."""
    defines = []
    for flag in cflags(opts):
        name, _, value = flag[2:].partition("=")
        defines.append(f"#define {name} {value}".rstrip())
    return "// cflags: " + " ".join(cflags(opts)) + "\n" + "\n".join(defines) + "\n" + program_text(_cached_structs())


class RingReader:
    """Consumer side of a BPF ring buffer map of fixed-size records, mmap'ed and read in bulk."""

    def __init__(self, map_fd: int, size: int, layout: str) -> None:
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self.layout = layout
        self.slot = records.slot_size(layout)
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._data = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._bytes = np.frombuffer(self._data, dtype=np.uint8)
        # positions as aligned 8-byte words: one store the kernel can never see half-written
        self._cons_pos = np.frombuffer(self._cons, dtype=np.uint64, count=1)
        self._prod_pos = np.frombuffer(self._data, dtype=np.uint64, count=1)
        self._page = page

    def _positions(self) -> tuple[int, int]:
        return int(self._cons_pos[0]), int(self._prod_pos[0])

    def pending_bytes(self) -> int:
        cons, prod = self._positions()
        return prod - cons

    def committed(self, max_bytes: int | None = None) -> tuple[np.ndarray, int]:
        """Every committed record as raw slot bytes *inside the ring* (a view, no copy), and the
        consumer position that releases them: copy the view out, then :meth:`release` it.

        Only the headers are read to find the committed prefix (the first still-busy record ends it);
        the ring's pages are mapped twice, so a record never wraps."""
        cons, prod = self._positions()
        avail = prod - cons
        if max_bytes is not None:
            avail = min(avail, max_bytes)
        n = avail // self.slot
        if n <= 0:
            return np.zeros(0, dtype=np.uint8), cons
        start = self._page + (cons & self.mask)
        raw = self._bytes[start : start + n * self.slot]
        k = records.committed_count(raw, self.layout)
        return raw[: k * self.slot], cons + k * self.slot

    def release(self, pos: int) -> None:
        """Give the kernel back the ring's space up to ``pos`` (from :meth:`committed`)."""
        self._cons_pos[0] = pos

    def drain_bytes(self, max_bytes: int | None = None) -> np.ndarray:
        """Copy out every committed record, once, as raw slot bytes, and release their space."""
        view, pos = self.committed(max_bytes)
        out = view.copy()
        self.release(pos)
        return out

    def drain(self, max_records: int = 200_000) -> np.ndarray:
        """Committed records as structured rows (tests and tools; the recorder uses drain_bytes)."""
        return records.records_of(self.drain_bytes(max_records * self.slot), self.layout)

    def close(self) -> None:
        """Unmap the ring (once). A view still held elsewhere (an exception's traceback) keeps its
        mapping alive until it goes: the ring itself is released with the program either way."""
        if self._bytes is None:
            return
        self._bytes = self._cons_pos = self._prod_pos = None
        for m in (self._cons, self._data):
            try:
                m.close()
            except BufferError:
                pass


class _MappedArray:
    """A BPF array of 8-byte slots, mmap'ed: reads and writes are plain numpy. The arrays indexed by
    pid (``tracked``, ``tids``: u32 values, 8-aligned) and the scope generations (``scope_gen``)."""

    def __init__(self, table, entries: int) -> None:
        self.entries = entries
        size = (entries * 8 + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE  # values are 8-aligned
        self._mm = mmap.mmap(table.map_fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.values = np.frombuffer(self._mm, dtype=np.uint64, count=entries)

    def set(self, key: int, value: int) -> None:
        if 0 <= key < self.entries:
            self.values[key] = value

    def get(self, key: int) -> int:
        return int(self.values[key]) if 0 <= key < self.entries else 0

    def close(self) -> None:
        del self.values
        self._mm.close()


_BPF_SYSCALL = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD, _BPF_RAW_TRACEPOINT_OPEN = 5, 17
_BPF_PROG_TYPE_TRACING, _BPF_TRACE_RAW_TP = 26, 23


def _bpf(cmd: int, attr: bytearray) -> int:
    """The bpf(2) syscall; the new fd, or OSError."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = _BPF_SYSCALL.get(platform.machine())
    if nr is None:
        raise OSError(f"bpf(2) number unknown on {platform.machine()}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    fd = libc.syscall(nr, cmd, buf, len(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def attach_btf_raw_tp(insns: bytes, name: str, type_id: int) -> tuple[int, int]:
    """Load a program BCC compiled (its instructions, map fds already in them) as a BTF raw
    tracepoint ("tp_btf") on the tracepoint whose typedef btf_trace_<tp> has BTF type ``type_id``,
    and attach it: (program fd, link fd). Closing the link detaches it at once, as for a raw
    tracepoint. BCC loads no such program itself (it names the BTF target by prefix, and has none
    for this type). OSError with the verifier's last word when the kernel refuses it."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = bytearray(128)   # union bpf_attr, BPF_PROG_LOAD
    struct.pack_into("<IIQQIIQ", attr, 0, _BPF_PROG_TYPE_TRACING, len(insns) // 8, ctypes.addressof(code),
                     ctypes.addressof(license_), 0, 0, 0)
    attr[48:48 + min(len(name), 15)] = name.encode()[:15]            # prog_name
    struct.pack_into("<I", attr, 68, _BPF_TRACE_RAW_TP)              # expected_attach_type
    struct.pack_into("<I", attr, 108, type_id)                       # attach_btf_id
    try:
        prog = _bpf(_BPF_PROG_LOAD, attr)
    except OSError as exc:
        struct.pack_into("<IIQ", attr, 24, 1, len(log), ctypes.addressof(log))   # again, with the log
        try:
            os.close(_bpf(_BPF_PROG_LOAD, attr))
        except OSError:
            pass
        lines = [ln for ln in log.value.decode(errors="replace").splitlines() if ln.strip()]
        raise OSError(exc.errno, f"{exc.strerror}: {lines[-1] if lines else 'no verifier log'}") from exc
    link_attr = bytearray(24)   # BPF_RAW_TRACEPOINT_OPEN: name 0 (the program's own target), prog_fd
    struct.pack_into("<QI", link_attr, 0, 0, prog)
    try:
        return prog, _bpf(_BPF_RAW_TRACEPOINT_OPEN, link_attr)
    except OSError:
        os.close(prog)
        raise


class Probe:
    """The loaded recorder program: scope arrays, ring readers (one per ring) and drop counters."""

    def __init__(self, opts: ProbeOptions) -> None:
        check_environment()
        ensure_tracefs()
        import bcc

        self.opts = opts
        flags = cflags(opts)
        # "kernel": fd facts carry what the kernel opened; "path": the path passed (no BTF)
        self.identity = "kernel" if "-DKERNEL_IDENTITY" in flags else "path"
        self._btf_hooks: list[tuple[str, int, int]] = []   # (tracepoint, program fd, link fd)
        self.syscall_regs = ""   # how the every-syscall hooks read registers: "btf" loads, "probe_read"
        self.release_helper: int | None = None   # pid of the detach helper close() started
        try:
            self.bpf = self._compile(bcc, flags)
            if "-DNO_SYSCALLS" in flags:
                for name, program in state_exits():
                    self.bpf.attach_tracepoint(tp=f"syscalls:sys_exit_{name}".encode(), fn_name=program.encode())
            else:   # the raw sys_exit hook completes the state lane's calls too (record.bpf.c, state_nr)
                state_nr = self.bpf[b"state_nr"]
                for name, _program in state_exits():
                    nr = syscall_table.number(name)
                    if nr is not None and nr < state_nr.max_entries:
                        state_nr[ctypes.c_int(nr)] = ctypes.c_uint8(1)
                self._attach_syscall_hooks()
        except Exception as exc:  # BCC raises bare Exception on compile/attach failure
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise EnvironmentProblem(f"loading the BPF program failed: {msg}") from exc
        self.readers: dict[str, RingReader] = {}
        for ring, pages in ring_pages(opts).items():
            self.readers[ring] = RingReader(self.bpf[ring.encode()].map_fd, pages * mmap.PAGESIZE,
                                            records.RINGS[ring])
        entries = pid_max()
        self._tracked = _MappedArray(self.bpf[b"tracked"], entries)
        self._tids = _MappedArray(self.bpf[b"tids"], entries)
        # scope_gen[0].user (the record's second u64): bumped after pids are put in scope, so the
        # raw syscall hooks' scope memos go stale (record.bpf.c, in_memo and out_memo)
        self._scope_gen = None if opts.system_wide else _MappedArray(self.bpf[b"scope_gen"], 2)
        self._drops = self.bpf[b"drops"]
        if opts.cgroup is not None:
            root, path = opts.cgroup
            raw = path.encode()
            if len(raw) >= records.STR_HALF:
                raise EnvironmentProblem(f"cgroup path too long to scope by ({len(raw)} bytes): {path}")
            scope = self.bpf[b"cg_scope"]
            value = scope.Leaf()
            value.root, value.len = root, len(raw)
            value.path = raw
            scope[ctypes.c_int(0)] = value
        self._scope_drops = 0
        if opts.aggregate_io:
            ionr = self.bpf[b"ionr"]
            for name in records.IO_SENDS + records.IO_RECVS:
                nr = syscall_table.number(name)
                if nr is not None and nr < 1024:
                    ionr[ctypes.c_int(nr)] = ctypes.c_uint8(1 if name in records.IO_SENDS else 2)

    def _compile(self, bcc, flags: list[str]):
        """The program, compiled and loaded, its tracepoint probes attached.

        The probes are compiled over the cached tracepoint structs (probes/tpstructs.py: BCC then
        reads no format file, which waits while another recording's hooks are being released) and
        attached here by name; where that does not build or attach, as BCC makes them (BCC attaches
        those itself)."""
        structs = tpstructs.structs(bcc, tpstructs.tracepoints(SOURCE.read_text(), TRACEFS))
        if structs:
            module = None
            try:
                module = self._build(bcc, program_text(structs), flags)
                self._attach_named_probes(bcc, module)
                return module
            except Exception:  # noqa: BLE001 - BCC raises bare Exception; its own way below
                if module is not None:
                    module.cleanup()
        return self._build(bcc, program_text(), flags)

    @staticmethod
    def _build(bcc, text: str, flags: list[str]):
        """BPF(text). A kernel with BTF whose tracepoint programs may not use task-local storage
        (older than 5.11) gets the hash for the syscalls in flight instead: then
        -DPENDING_TASK_STORAGE is taken out of ``flags`` itself, so the caller's later checks of
        ``flags`` see what was compiled."""
        try:
            return bcc.BPF(text=text.encode(), cflags=flags)
        except Exception:  # BCC raises bare Exception on compile/load failure
            if "-DPENDING_TASK_STORAGE" not in flags:
                raise
            flags.remove("-DPENDING_TASK_STORAGE")
            return bcc.BPF(text=text.encode(), cflags=flags)

    @staticmethod
    def _attach_named_probes(bcc, module) -> None:
        """Each ``osr_tp__CAT__EVENT`` program to tracepoint CAT:EVENT (as BCC's autoload does its
        ``tracepoint__`` ones)."""
        lib = bcc.libbcc.lib
        for i in range(lib.bpf_num_functions(module.module)):
            name = lib.bpf_function_name(module.module, i).decode()
            tp = tpstructs.attach_name(name)
            if tp is not None:
                module.attach_tracepoint(tp=tp.encode(), fn_name=name.encode())

    def _attach_syscall_hooks(self) -> None:
        """sys_enter and sys_exit: as BTF raw tracepoints where the kernel's BTF declares them (the
        registers are then plain loads), else as raw tracepoints (a probe read)."""
        try:
            ids = (btf.offsets() or btf.Offsets("", {})).raw_tps
        except btf.BtfError:
            ids = {}
        if all(tp in ids for tp in ("sys_enter", "sys_exit")):
            try:
                for tp in ("sys_enter", "sys_exit"):
                    fn = f"sc_{tp[4:]}_btf"
                    self._btf_hooks.append((tp, *attach_btf_raw_tp(self.bpf.dump_func(fn.encode()), fn, ids[tp])))
                self.syscall_regs = "btf"
                return
            except OSError:
                self._detach_btf_hooks()
        self.bpf.attach_raw_tracepoint(tp=b"sys_enter", fn_name=b"sc_enter")
        self.bpf.attach_raw_tracepoint(tp=b"sys_exit", fn_name=b"sc_exit")
        self.syscall_regs = "probe_read"

    def _detach_btf_hooks(self) -> None:
        for _tp, prog, link in self._btf_hooks:
            os.close(link)
            os.close(prog)
        self._btf_hooks = []

    def raw_hooks(self) -> set[str]:
        """The raw tracepoints the every-syscall hooks are attached to (either way)."""
        return {tp for tp, _p, _l in self._btf_hooks} | {k.decode() for k in self.bpf.raw_tracepoint_fds}

    def track(self, pids) -> None:
        """Put processes in scope: the tgid for syscalls, each thread's tid for the scheduler."""
        for pid in pids:
            if not 0 < pid < self._tracked.entries:
                self._scope_drops += 1
                continue
            self._tracked.set(pid, 1)
            try:
                threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                threads = [pid]
            for tid in threads:
                self._tids.set(tid, pid)
        self._scope_changed()

    def drain(self) -> records.Drained:
        """Every ring's committed records, copied once each."""
        order = ("rb_sc", "events", "rb_short", "rb_facts", "rb_sched")
        return records.Drained({ring: self.readers[ring].drain_bytes() for ring in order if ring in self.readers})

    def drain_into(self, sink: Callable[[dict[str, np.ndarray]], None]) -> int:
        """Hand ``sink`` every ring's committed records as views into the rings (no copy: the sink
        copies them, e.g. into the run's spool), then release their space. Ring order as
        :meth:`drain`. Returns the bytes handed over."""
        views, ends = {}, []
        for ring in ("rb_sc", "events", "rb_short", "rb_facts", "rb_sched"):
            reader = self.readers.get(ring)
            if reader is None:
                continue
            view, pos = reader.committed()
            if len(view):
                views[ring] = view
                ends.append((reader, pos))
        if views:
            sink(views)
        for reader, pos in ends:
            reader.release(pos)
        return sum(len(v) for v in views.values())

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

    # how long after an epoch flip the final sweep waits before reading that epoch: a BPF program
    # runs to its end in microseconds, so none still adds to the previous epoch by then
    AGG_SETTLE_S = 0.002

    def agg_sweep(self, final: bool = False) -> np.ndarray:
        """Syscalls the kernel counted instead of recording them while the syscall lane was degraded,
        taken out of the ``sc_agg`` map: one row (``records.DTYPES['sc_agg']``) per thread and
        syscall number, empty when there are none or the syscall lane is off. Turn them into facts
        with ``osrewind.ingest.decode.agg_records``.

        The map is read by epoch, without racing the kernel's adds: each call takes (reads and
        deletes) the previous epoch's entries, then flips the epoch if the current one has any, so
        those are taken one call later (call every ~0.1 s: at most ~0.2 s late). ``final`` (at the
        end) also flips, waits AGG_SETTLE_S and takes the rest."""
        dt = records.DTYPES["sc_agg"]
        if "rb_sc" not in self.readers:
            return np.zeros(0, dtype=dt)
        table, ctl = self.bpf[b"sc_agg"], self.bpf[b"sc_ctl"]
        epoch = int(ctl[ctypes.c_int(0)].value)
        keys = list(table.keys())
        raw = self._agg_take(table, [k for k in keys if k.epoch != epoch])
        if final or any(k.epoch == epoch for k in keys):
            ctl[ctypes.c_int(0)] = ctypes.c_uint32(epoch ^ 1)
            if final:
                time.sleep(self.AGG_SETTLE_S)
                raw += self._agg_take(table, [k for k in table.keys() if k.epoch == epoch])
        return np.frombuffer(raw, dtype=dt).copy() if raw else np.zeros(0, dtype=dt)

    @staticmethod
    def _agg_take(table, keys: list) -> bytes:
        """The raw values of these entries, deleted from the map."""
        out = []
        for k in keys:
            try:
                out.append(bytes(table[k]))
                del table[k]
            except KeyError:
                pass
        return b"".join(out)

    def untrack(self, pid: int) -> None:
        """Take a process out of scope: a CPU's memo of one of its threads as in scope is stale from then on."""
        self._tracked.set(pid, 0)
        self._scope_changed()

    def _scope_changed(self) -> None:
        """Move the scope generation on (scope_gen[0].user), after the scope's stores (x86 keeps
        stores in order): the raw syscall hooks' memos taken before are stale."""
        if self._scope_gen is not None:
            self._scope_gen.set(1, self._scope_gen.get(1) + 1)

    def tracked_pids(self) -> set[int]:
        return {int(p) for p in np.flatnonzero(self._tracked.values)}

    def drops(self) -> dict[int, int]:
        """Records dropped so far, per cause (``records.DROPS`` codes), summed over CPUs."""
        out = {}
        for code in records.DROPS:
            try:
                v = self._drops[ctypes.c_int(code)]
            except (KeyError, IndexError):
                continue
            n = sum(int(x) for x in v) if hasattr(v, "__len__") else int(v.value)
            if n:
                out[code] = n
        if self._scope_drops:
            out[records.DROP_CODES["scope_range"]] = out.get(records.DROP_CODES["scope_range"], 0) + self._scope_drops
        return out

    def lost(self) -> int:
        return sum(self.drops().values())

    def layout(self, name: str = "event") -> dict:
        """Size and field offsets of a record struct as the compiler laid it out (for the layout test)."""
        leaf = self.bpf[f"layout_{name}".encode()].Leaf
        return {"size": ctypes.sizeof(leaf),
                **{fname: getattr(leaf, fname).offset for fname, _ in leaf._fields_}}

    def close(self, background: bool = True) -> None:
        """Detach the program: the hot hooks at once, here; the rest in a helper process, at once.

        Raw tracepoints (the every-syscall hooks) detach in microseconds, so they go first and
        synchronously: once this returns no process pays for them. Each classic tracepoint's release
        waits for RCU grace periods (~70 ms each on this kernel, ~100 of them, serialised by the
        kernel), so by default a helper process (``probes/release.py``, pid in ``release_helper``)
        holds the last references to those and closes them right away, from many threads, the
        syscall tracepoints first (while any is attached, every syscall on the machine takes the
        slow path); it exits when done (2-4 s here), whether or not the recorder has exited."""
        for reader in self.readers.values():
            reader.close()
        self._tracked.close()
        self._tids.close()
        if self._scope_gen is not None:
            self._scope_gen.close()
        self._detach_btf_hooks()
        for tp in list(self.bpf.raw_tracepoint_fds):
            self.bpf.detach_raw_tracepoint(tp)
        go = None
        if background:
            tps = sorted(self.bpf.tracepoint_fds.items(), key=lambda kv: not kv[0].startswith(b"syscalls:"))
            try:
                go, self.release_helper = _release_in_background([fd for _, fd in tps])
            except OSError:
                go = None   # released here instead, as BCC's cleanup does
        try:
            self.bpf.cleanup()
        finally:
            if go is not None:
                os.close(go)  # the helper starts closing now


RELEASE_HELPER = Path(__file__).with_name("release.py")


def _release_in_background(fds: list[int]) -> tuple[int, int]:
    """Start the detach helper (``probes/release.py``, a program of its own: not a fork of this
    large process) holding ``fds`` (tracepoint perf events); it closes them, in order, from many
    threads once the returned pipe end is closed (the caller has closed its own copies, so the
    helper's are the last). Returns that pipe end and the helper's pid."""
    import subprocess
    import sys

    r, w = os.pipe()
    try:
        helper = subprocess.Popen([sys.executable, "-S", "-I", str(RELEASE_HELPER), str(r), *map(str, fds)],
                                  pass_fds=[r, *fds], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)
    except BaseException:
        os.close(w)
        raise
    finally:
        os.close(r)
    threading.Thread(target=helper.wait, name="osrewind-detach-reaper", daemon=True).start()
    return w, helper.pid
