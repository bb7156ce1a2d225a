"""The running kernel's struct offsets, read from its own BTF (``/sys/kernel/btf/vmlinux``).

BCC compiles against whatever kernel headers the distribution ships (Debian's 6.1 headers on a 6.18
kernel here), so a struct read through them lands at the wrong offsets. The kernel's BTF describes
its own structs exactly. :func:`offsets` parses it (the raw format of ``linux/btf.h``: a header, the
type records, the string table; no tool needed), resolves the members the probe walks
(``current->files->fdt->fd[n]->f_inode->i_ino`` and so on, anonymous unions included), and caches
the answer per kernel build. :func:`cflags` turns it into the ``-D OFF_...`` options the probe is
compiled with; the probe reads each field with ``bpf_probe_read_kernel`` at that offset.

A kernel without BTF gets ``None``: the probe is compiled without ``KERNEL_IDENTITY`` and files are
identified by the path a program passed, which the run notes.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from osrewind.userdirs import cache_dir

VMLINUX = Path("/sys/kernel/btf/vmlinux")
ENV = "OSREWIND_BTF"   # another BTF file to read instead (a path that does not exist: act as a kernel without)

# (macro, struct, member path): what the probe reads. A member path descends through embedded
# structs ("f_path.dentry"); anonymous unions and structs are searched on the way.
FIELDS: tuple[tuple[str, str, str], ...] = (
    ("TASK_FILES", "task_struct", "files"),
    ("TASK_FS", "task_struct", "fs"),
    ("TASK_MM", "task_struct", "mm"),
    ("MM_EXE_FILE", "mm_struct", "exe_file"),
    ("TASK_REAL_PARENT", "task_struct", "real_parent"),
    ("TASK_TGID", "task_struct", "tgid"),
    ("TASK_START_TIME", "task_struct", "start_time"),
    ("TASK_PID", "task_struct", "pid"),
    ("TASK_CHILDREN", "task_struct", "children"),
    ("TASK_SIBLING", "task_struct", "sibling"),
    ("TASK_PID_LINKS", "task_struct", "pid_links"),
    ("LIST_PREV", "list_head", "prev"),
    ("PID_TASKS", "pid", "tasks"),
    ("INODE_PRIVATE", "inode", "i_private"),
    ("FILES_FDT", "files_struct", "fdt"),
    ("FDT_MAX_FDS", "fdtable", "max_fds"),
    ("FDT_FD", "fdtable", "fd"),
    ("FILE_INODE", "file", "f_inode"),
    ("FILE_PATH_MNT", "file", "f_path.mnt"),
    ("FILE_PATH_DENTRY", "file", "f_path.dentry"),
    ("FS_PWD_MNT", "fs_struct", "pwd.mnt"),
    ("FS_PWD_DENTRY", "fs_struct", "pwd.dentry"),
    ("INODE_INO", "inode", "i_ino"),
    ("INODE_SB", "inode", "i_sb"),
    ("SB_DEV", "super_block", "s_dev"),
    ("DENTRY_PARENT", "dentry", "d_parent"),
    ("DENTRY_NAME_LEN", "dentry", "d_name.len"),
    ("DENTRY_NAME", "dentry", "d_name.name"),
    ("DENTRY_HASH_PPREV", "dentry", "d_hash.pprev"),
    ("MOUNT_MNT", "mount", "mnt"),
    ("MOUNT_PARENT", "mount", "mnt_parent"),
    ("MOUNT_MOUNTPOINT", "mount", "mnt_mountpoint"),
    ("VFSMOUNT_ROOT", "vfsmount", "mnt_root"),
)

# Raw tracepoints a program may be loaded for as a BTF raw tracepoint ("tp_btf"): the kernel
# declares each as the typedef btf_trace_<name>, whose type id the load names.
RAW_TPS: tuple[str, ...] = ("sys_enter", "sys_exit")

_STRUCT, _UNION, _TYPEDEF = 4, 5, 8
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type tag: look through
# bytes that follow a type record, per kind (vlen-sized ones as (fixed, per-vlen))
_TRAILER = {1: (4, 0), 3: (12, 0), 4: (0, 12), 5: (0, 12), 6: (0, 8), 13: (0, 8), 14: (4, 0),
            15: (0, 12), 17: (4, 0), 19: (0, 12)}


class BtfError(Exception):
    """The BTF could not be read or lacks a member the probe needs."""


@dataclass(frozen=True)
class Offsets:
    """Byte offsets of the probe's fields in the running kernel, and which kernel build they are of."""
    build: str
    fields: dict[str, int]
    raw_tps: dict[str, int] = field(default_factory=dict)   # RAW_TPS name -> its typedef's type id

    def cflags(self) -> list[str]:
        return ["-DKERNEL_IDENTITY"] + [f"-DOFF_{name}={off}" for name, off in sorted(self.fields.items())]


def _parse(data: bytes) -> tuple[list[tuple[int, int, int, list]], bytes]:
    """Type records (kind, name_off, size_or_type, members) indexed by type id (id 0 is void)."""
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F:
        raise BtfError("not a little-endian BTF blob")
    types_at = hdr_len + type_off
    strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
    out: list[tuple[int, int, int, list]] = [(0, 0, 0, [])]
    pos, end = types_at, types_at + type_len
    unpack = struct.unpack_from
    while pos < end:
        name_off, info, size_type = unpack("<III", data, pos)
        pos += 12
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        members: list = []
        if kind in (_STRUCT, _UNION):
            kflag = info >> 31
            for i in range(vlen):
                m_name, m_type, m_off = unpack("<III", data, pos + 12 * i)
                members.append((m_name, m_type, (m_off & 0xFFFFFF) if kflag else m_off))
        fixed, per = _TRAILER.get(kind, (0, 0))
        pos += fixed + per * vlen
        out.append((kind, name_off, size_type, members))
    return out, strings


def _name(strings: bytes, off: int) -> str:
    return strings[off: strings.index(b"\0", off)].decode()


def _resolve(data: bytes) -> tuple[dict[str, int], dict[str, int]]:
    """(the FIELDS' offsets, the RAW_TPS' type ids: those the kernel has)."""
    types, strings = _parse(data)
    structs: dict[str, int] = {}
    traces = {f"btf_trace_{name}": name for name in RAW_TPS}
    raw_tps: dict[str, int] = {}
    for tid, (kind, name_off, _s, _m) in enumerate(types):
        if kind == _STRUCT and name_off:
            structs.setdefault(_name(strings, name_off), tid)
        elif kind == _TYPEDEF and name_off and (tp := traces.get(_name(strings, name_off))):
            raw_tps.setdefault(tp, tid)

    def strip(tid: int) -> int:
        while types[tid][0] in _MODIFIERS:
            tid = types[tid][2]
        return tid

    def find(tid: int, member: str) -> tuple[int, int] | None:
        """(bit offset, type id) of member in struct/union tid, through anonymous members."""
        for m_name, m_type, m_off in types[tid][3]:
            if m_name and _name(strings, m_name) == member:
                return m_off, m_type
            inner = strip(m_type)
            if not m_name and types[inner][0] in (_STRUCT, _UNION):
                hit = find(inner, member)
                if hit is not None:
                    return m_off + hit[0], hit[1]
        return None

    out = {}
    for macro, struct_name, path in FIELDS:
        if struct_name not in structs:
            raise BtfError(f"struct {struct_name} is not in the kernel's BTF")
        tid, bits = structs[struct_name], 0
        for part in path.split("."):
            hit = find(strip(tid), part)
            if hit is None:
                raise BtfError(f"struct {struct_name} has no member {path}")
            bits += hit[0]
            tid = hit[1]
        if bits % 8:
            raise BtfError(f"{struct_name}.{path} is a bit field")
        out[macro] = bits // 8
    return out, raw_tps


def _cache_dir() -> Path:
    return cache_dir("btf")


def offsets(vmlinux: Path | None = None, cache: Path | None = None) -> Offsets | None:
    """The probe's offsets in the kernel ``vmlinux`` describes (default: the running kernel's, or
    $OSREWIND_BTF); None where the kernel has no BTF. Parsed once per kernel build (release, version
    string and BTF size) and cached as JSON."""
    if vmlinux is None:
        vmlinux = Path(os.environ.get(ENV) or VMLINUX)
    try:
        size = vmlinux.stat().st_size
    except OSError:
        return None
    u = os.uname()
    build = hashlib.sha256(f"{u.release}|{u.version}|{u.machine}|{size}|{vmlinux}".encode()).hexdigest()[:16]
    cache = cache if cache is not None else _cache_dir()
    cached = cache / f"{build}.json"
    try:
        saved = json.loads(cached.read_text())
        fields, raw_tps = saved["fields"], saved["raw_tps"]
        if set(fields) == {f[0] for f in FIELDS} and set(raw_tps) <= set(RAW_TPS):
            return Offsets(build, {k: int(v) for k, v in fields.items()}, {k: int(v) for k, v in raw_tps.items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    try:
        fields, raw_tps = _resolve(vmlinux.read_bytes())
    except OSError:
        return None
    except (struct.error, ValueError, IndexError) as e:
        raise BtfError(f"cannot read {vmlinux}: {e}") from e
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"fields": fields, "raw_tps": raw_tps}))
        tmp.replace(cached)
    except OSError:
        pass  # a read-only home: parse again next time
    return Offsets(build, fields, raw_tps)
