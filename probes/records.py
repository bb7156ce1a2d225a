"""The recorder's kernel records, declared once for C and Python.

``record.bpf.c`` writes its facts into BPF ring buffers, one or two rings per *lane*:

- ``events`` and ``rb_facts`` (the state lane): process lifecycle and fd/file/socket facts, everything
  rewinding needs. A fact with a string (a path, argv, a socket address) is a ``struct event`` in
  ``events`` (624 bytes); one without (fork, exit, close, dup, pipe, wait, ...; also an open whose
  path pointer was NULL) is a ``struct fact`` in ``rb_facts``: the same fields without the string,
  112 bytes; and one with a single short string (a path of under ``STR_SHORT`` bytes, as most are) is
  a ``struct event_short`` in ``rb_short``: the same fields and a 128-byte string, 240 bytes. The
  kernel picks the ring per record, by the string it has to carry. Low volume; never shares space
  with the floods below.
- ``rb_sc`` (the syscall lane): every syscall of the scoped processes as one record, written by the
  raw ``sys_exit`` tracepoint when the call returns; the raw ``sys_enter`` tracepoint only notes the
  entry in a per-thread slot (an array, no ring). When the ring fills up faster than it is read,
  the lane degrades instead of dropping: the kernel counts each
  thread's syscalls per number (``sc_agg``: calls, failures, time, window) until there is room again,
  and user space stores those as ``syscall_agg`` facts.
- ``rb_sched`` (the scheduler lane): context switches, wakeups and migrations, one compact record each.

Each layout is declared here once (``LAYOUTS``); :func:`c_header` generates the C structs, the kind
codes and the drop causes that the loader prepends to ``record.bpf.c``, and :data:`DTYPES` holds the
numpy dtypes the decoder views whole drains with. A kernel test compares both with the compiled
program (``layout_<name>`` arrays), so the two sides cannot drift apart.

Ring-buffer framing (kernel/bpf/ringbuf.c): every record is preceded by an 8-byte header
``u32 len`` (with BUSY and DISCARD flag bits) + ``u32 page offset``, and records are 8-byte aligned.
All records of one ring have the same size, so a drain is one strided view: records are sized by
class (a ring per size), not one by one.
"""

from __future__ import annotations

import numpy as np

STR_HALF = 256
STR_LEN = 512
STR_SHORT = 128   # the string of an `event_short`

# C type -> numpy type
_NP = {"u64": "<u8", "s64": "<i8", "u32": "<u4", "s32": "<i4", "u16": "<u2", "s16": "<i2", "u8": "u1"}

# name -> fields (name, C type, count, numpy override). The C struct is laid out in this order, with
# the compiler's natural alignment; every declaration here is already naturally aligned (checked below).
LAYOUTS: dict[str, list[tuple]] = {
    # the state lane: one record per fact, strings inline
    "event": [
        ("ts", "u64", 1),      # bpf_ktime_get_ns(): CLOCK_MONOTONIC
        ("ret", "s64", 1),     # syscall return value (negative errno on failure)
        ("a0", "s64", 1), ("a1", "s64", 1), ("a2", "s64", 1),
        ("a3", "s64", 1), ("a4", "s64", 1), ("a5", "s64", 1),
        ("dur", "u64", 1),
        ("tgid", "u32", 1), ("tid", "u32", 1),
        ("kind", "u16", 1),
        ("len1", "u16", 1),    # bytes of str (or of its first half) without the NUL; 0 if unread
        ("len2", "u16", 1),    # bytes of the second half (rename target)
        ("nr", "u16", 1),
        ("cpu", "u32", 1), ("flags", "u32", 1),
        ("comm", "char", 16, "S16"),
        ("str", "char", STR_LEN, f"V{STR_LEN}"),
    ],
    # the state lane's facts without a string: `event` without `str`; with one short string: `event`
    # with a shorter `str` (both filled in below)
    "fact": [],
    "event_short": [],
    # the syscall lane: one record per syscall, written when it returns (raw sys_exit). Its entry
    # time, number and CPU were noted at raw sys_enter in a per-thread slot (no record, no string);
    # the argument registers are read at the return, from the same struct pt_regs (a syscall leaves
    # them as it found them; execve replaces them, so its arguments are kept from its entry). The
    # task name is read only on a thread's first syscall and after it changed (exec, prctl,
    # /proc/PID/comm: the task_rename tracepoint): `flags & SC_COMM` says `comm` holds it; the
    # decoder carries it forward per thread (reading it on every syscall cost ~60-100 ns a call).
    # exit and exit_group never return: theirs is written at entry, with dur 0.
    "sc_call": [
        ("ts", "u64", 1),      # entry
        ("dur", "u64", 1),     # return - entry
        ("ret", "s64", 1),
        ("tid", "u32", 1), ("tgid", "u32", 1),
        ("nr", "u32", 1), ("cpu", "u32", 1),   # the CPU it entered on
        ("flags", "u32", 1), ("pad", "u32", 1),
        ("regs", "u64", 8, "(8,)<u8"),
        ("comm", "char", 16, "S16"),
    ],
    # the syscall lane degraded (see record.bpf.c, "degraded syscalls"): the `sc_agg` map's key and
    # value, one entry per (epoch, thread, syscall number) whose syscalls were counted, not recorded
    "sc_agg_key": [
        ("tgid", "u32", 1), ("tid", "u32", 1), ("nr", "u32", 1), ("epoch", "u32", 1),
    ],
    "sc_agg": [
        ("count", "u64", 1),   # syscalls completed
        ("errors", "u64", 1),  # of them failed (-4095 <= ret < 0)
        ("dur", "u64", 1),     # time spent in them, summed
        ("first", "u64", 1),   # entry time of the first one
        ("last", "u64", 1),    # exit time of the last one
        ("tgid", "u32", 1), ("tid", "u32", 1), ("nr", "u32", 1), ("pad", "u32", 1),
        ("comm", "char", 16, "S16"),
    ],
    # the scheduler lane
    "sched_rec": [
        ("ts", "u64", 1),
        ("tgid", "u32", 1), ("tid", "u32", 1),
        ("kind", "u16", 1), ("len1", "u16", 1), ("cpu", "u32", 1),
        ("a0", "s64", 1), ("a1", "s64", 1), ("a2", "s64", 1), ("a3", "s64", 1),
        ("dur", "u64", 1),
        ("comm", "char", 16, "S16"),
        ("str", "char", 16, "V16"),
    ],
}

assert LAYOUTS["event"][-1][0] == "str"
LAYOUTS["fact"] = LAYOUTS["event"][:-1]
LAYOUTS["event_short"] = [*LAYOUTS["fact"], ("str", "char", STR_SHORT, f"V{STR_SHORT}")]

# Which ring each layout travels in, and the lane it belongs to (losses are counted per ring).
RINGS = {"events": "event", "rb_short": "event_short", "rb_facts": "fact", "rb_sc": "sc_call", "rb_sched": "sched_rec"}
LANES = {"events": "state", "rb_short": "state", "rb_facts": "state", "rb_sc": "syscall", "rb_sched": "sched"}

# The syscall argument registers inside the sc_call `regs` window, per architecture: the window
# starts at REGS_WINDOW_C (a C expression) and args[i] is regs[REGS_ARGS[arch][i]].
# x86_64 struct pt_regs (uapi, stable): ... r10 r9 r8 ax cx dx si di ...
REGS_WINDOW_C = {"x86_64": "offsetof(struct pt_regs, r10)", "aarch64": "offsetof(struct pt_regs, regs[0])"}
REGS_ARGS = {"x86_64": (7, 6, 5, 0, 2, 1), "aarch64": (0, 1, 2, 3, 4, 5)}
# Where the first argument is kept at sys_exit when the return value has taken its register (aarch64:
# x0 holds both; the kernel keeps the argument in orig_x0). Read over the window's word REGS_ARGS[0].
REGS_ARG0_AT_EXIT_C = {"aarch64": "offsetof(struct pt_regs, orig_x0)"}


def _dtype(fields: list[tuple]) -> np.dtype:
    out = []
    for f in fields:
        name, ctype, count = f[:3]
        np_type = f[3] if len(f) > 3 else _NP[ctype]
        out.append((name, np_type))
    return np.dtype(out)


DTYPES: dict[str, np.dtype] = {name: _dtype(fields) for name, fields in LAYOUTS.items()}
for _name, _dt in DTYPES.items():  # natural alignment, so the C compiler adds no padding we do not know of
    for _f in _dt.names:
        _t, _off = _dt.fields[_f][:2]
        _align = min(_t.base.itemsize if _t.base.kind != "V" and _t.base.kind != "S" else 1, 8)
        assert _off % _align == 0, (_name, _f)
    assert _dt.itemsize % 8 == 0, _name

EVENT_DTYPE = DTYPES["event"]
assert EVENT_DTYPE.itemsize == 624
STR_OFFSET = EVENT_DTYPE.fields["str"][1]
COMM_OFFSET = EVENT_DTYPE.fields["comm"][1]
FACT_DTYPE = DTYPES["fact"]
assert FACT_DTYPE.itemsize == STR_OFFSET == 112 and FACT_DTYPE.fields["comm"][1] == COMM_OFFSET

SC_COMM = 1        # sc_call.flags: `comm` holds the thread's task name
EV_KPATH = 1       # event.flags: the second string is the kernel's path of what the call opened (or
                   # the new cwd), its components leaf first ("f/dir/tmp" for /tmp/dir/f, "" for /)
EV_UNLINKED = 2    # event.flags: what was opened has no name any more (O_TMPFILE, a deleted file
                   # reopened through /proc/PID/fd): /proc shows its path with " (deleted)"

# what the syscall decoder carries between batches: the task name of each thread
TID_COMM_DTYPE = np.dtype([("tid", "<u4"), ("comm", "S16")])

RB_HEADER = 8
RB_BUSY = 1 << 31
RB_DISCARD = 1 << 30


def slot_size(layout: str) -> int:
    """Bytes one record of ``layout`` takes in its ring: header + record, 8-byte aligned."""
    return (RB_HEADER + DTYPES[layout].itemsize + 7) // 8 * 8


def slot_dtype(layout: str) -> np.dtype:
    return np.dtype({"names": ["hlen", "hpgoff", "ev"], "formats": ["<u4", "<u4", DTYPES[layout]],
                     "offsets": [0, 4, RB_HEADER], "itemsize": slot_size(layout)})


RECORD_SIZE = slot_size("event")  # one slot of the state lane's string ring (`events`)
SLOT_DTYPE = slot_dtype("event")

# Kind codes: the store's Enum8 and the C side's K_* constants (generated, see c_header).
KINDS: dict[int, str] = {
    1: "fork",
    2: "exec",
    3: "exec_args",
    4: "exec_fail",
    5: "exit_call",
    6: "task_exit",
    7: "wait",
    8: "lost",
    10: "open",
    11: "close",
    12: "close_range",
    13: "dup",
    14: "setfd",
    15: "pipe",
    16: "chdir",
    17: "fchdir",
    18: "rename",
    19: "unlink",
    20: "mkdir",
    21: "socket",
    22: "socketpair",
    23: "accept",
    24: "anonfd",
    25: "bind",
    26: "connect",
    27: "listen",
    28: "shutdown",
    29: "sock_state",
    30: "signal_generate",
    31: "signal_deliver",
    32: "oom_victim",
    33: "sockname",
    34: "io",
    35: "identity",
    36: "cgroup",
    40: "syscall",
    41: "sched_switch",
    42: "sched_wakeup",
    43: "sched_migrate",
    44: "syscall_agg",
}
KIND_CODES: dict[str, int] = {v: k for k, v in KINDS.items()}

# Where records are dropped, counted by the kernel per cause (the per-CPU `drops` array) and stored
# as `lost` facts: a0 = how many, a1 = the cause code. Code 0 is also what older runs' single ring was.
DROPS: dict[int, tuple[str, str]] = {
    0: ("ring_events", "state ring full"),   # facts with a string (older runs: every state fact)
    1: ("ring_sc_enter", "syscall ring full (enter; older runs)"),
    2: ("ring_sc_exit", "syscall ring full (exit; older runs)"),
    3: ("ring_sched", "scheduler ring full"),
    4: ("map_pending", "in-flight syscall map full: an fd/file fact lost"),
    5: ("map_cloneflags", "clone flags map full: a fork without its flags"),
    6: ("map_woken", "wakeup map full: a run-queue wait unknown"),
    7: ("map_tports", "TCP port map full: softirq TCP state changes may be missed"),
    8: ("map_io", "--aggregate-io sums map full: byte counts lost"),
    9: ("map_iocall", "--aggregate-io in-flight map full: a read/write lost (older runs)"),
    10: ("scope_range", "a pid beyond the scope array (pid_max raised while recording)"),
    11: ("spool_full", "the spool reached --max-spool ahead of the store: stream records shed, state facts kept"),
    12: ("map_sc_agg", "syscall aggregate map full: syscalls of a degraded stream lost"),
    13: ("ring_facts", "state ring full (facts without a string)"),
    14: ("map_sc_exec", "execve argument map full: an execve's syscall record has the new program's registers"),
}
DROP_CODES: dict[str, int] = {v[0]: k for k, v in DROPS.items()}


def drop_text(code: int) -> str:
    return DROPS.get(code, (f"cause {code}", f"cause {code}"))[1]


_C_TYPES = {"u64": "u64", "s64": "s64", "u32": "u32", "s32": "s32", "u16": "u16", "s16": "s16", "u8": "u8",
            "char": "char"}


def c_header() -> str:
    """The C declarations record.bpf.c is compiled with: kind codes, drop causes, record structs."""
    lines = ["// generated by osrewind/probes/records.py: do not edit"]
    lines += [f"#define K_{name.upper()} {code}" for code, name in sorted(KINDS.items())]
    lines += [f"#define DROP_{name.upper()} {code}" for code, (name, _) in sorted(DROPS.items())]
    lines.append(f"#define N_DROPS {max(DROPS) + 1}")
    lines.append(f"#define STR_HALF {STR_HALF}")
    lines.append(f"#define STR_LEN {STR_LEN}")
    lines.append(f"#define STR_SHORT {STR_SHORT}")
    lines.append(f"#define SC_COMM {SC_COMM}")
    lines.append(f"#define EV_KPATH {EV_KPATH}")
    lines.append(f"#define EV_UNLINKED {EV_UNLINKED}")
    for name, fields in LAYOUTS.items():
        lines.append(f"struct {name} {{")
        for f in fields:
            fname, ctype, count = f[:3]
            lines.append(f"    {_C_TYPES[ctype]} {fname}{f'[{count}]' if count > 1 else ''};")
        lines.append("};")
    return "\n".join(lines) + "\n"


ANON_NAMES = {1: "eventfd", 2: "eventpoll", 3: "memfd", 4: "timerfd", 5: "signalfd", 6: "inotify", 7: "pidfd"}

# Syscalls that move bytes on an fd (their result is the byte count): out, then in.
IO_SENDS = ("write", "writev", "sendto", "sendmsg", "pwrite64", "sendfile")
IO_RECVS = ("read", "readv", "recvfrom", "recvmsg", "pread64")

# Flag constants (same on x86_64 and aarch64).
O_CLOEXEC = 0o2000000
FD_CLOEXEC = 1
AT_FDCWD = -100
AT_REMOVEDIR = 0x200
SOCK_CLOEXEC = O_CLOEXEC
MFD_CLOEXEC = 1
CLONE_THREAD = 0x00010000
CLOSE_RANGE_CLOEXEC = 1 << 2


def slots_from_buffer(buf: np.ndarray, layout: str = "event") -> np.ndarray:
    """View raw ring-buffer bytes (whole slots) as slots. ``buf`` is a uint8 array."""
    size = slot_size(layout)
    n = len(buf) // size
    return buf[: n * size].view(slot_dtype(layout))


def committed_count(buf: np.ndarray, layout: str) -> int:
    """How many whole slots at the start of ``buf`` are committed: those before the first still-busy
    one (the consumer position can only advance in order). Reads only the headers (a strided view)."""
    size = slot_size(layout)
    n = len(buf) // size
    if n == 0:
        return 0
    hlen = np.lib.stride_tricks.as_strided(buf[: n * size].view(np.uint32), shape=(n,), strides=(size,))
    busy = np.flatnonzero(hlen & RB_BUSY)
    return int(busy[0]) if len(busy) else n


def records_of(buf: np.ndarray, layout: str) -> np.ndarray:
    """The records in ``buf`` (whole committed slots), discarded ones left out: a view when none were."""
    slots = slots_from_buffer(buf, layout)
    keep = (slots["hlen"] & RB_DISCARD) == 0
    return slots["ev"] if keep.all() else slots["ev"][keep]


def records_and_matrix(buf: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`records_of`, plus the same records as an (n, record size) byte matrix: both views of
    ``buf`` when no record was discarded (the decoder cuts strings out of the matrix without copying
    every record first)."""
    slots = slots_from_buffer(buf, layout)
    size, rec = slot_size(layout), DTYPES[layout].itemsize
    mat = buf[: len(slots) * size].reshape(len(slots), size)[:, RB_HEADER : RB_HEADER + rec]
    keep = (slots["hlen"] & RB_DISCARD) == 0
    if keep.all():
        return slots["ev"], mat
    return slots["ev"][keep], mat[keep]


def committed_prefix(slots: np.ndarray) -> tuple[np.ndarray, int]:
    """Records ready to read: those before the first still-busy slot, minus discarded ones.

    Returns (events, slots consumed). Slots after a busy one are not consumed even if committed,
    because the consumer position can only advance in order.
    """
    hlen = slots["hlen"]
    busy = np.flatnonzero(hlen & RB_BUSY)
    n = int(busy[0]) if len(busy) else len(slots)
    ready = slots[:n]
    keep = (ready["hlen"] & RB_DISCARD) == 0
    return ready["ev"][keep], n


def argv_bytes(raw: bytes, length: int) -> list[bytes]:
    """Split an exec_args record's NUL-separated argv blob: the arguments exactly as the kernel had them."""
    parts = bytes(raw[:length]).split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    return parts


def argv_of(raw: bytes, length: int) -> list[str]:
    """The same as text, losslessly: a byte that is not UTF-8 is kept as a lone surrogate
    (surrogateescape, see ``osrewind.text``)."""
    return [p.decode("utf-8", "surrogateescape") for p in argv_bytes(raw, length)]


class Drained:
    """One drain of the rings: each ring's committed slots as raw bytes (uint8, whole slots, copied
    once out of the ring), plus ``state``: state-lane records made in user space (EVENT_DTYPE)."""

    __slots__ = ("raw", "state")

    def __init__(self, raw: dict[str, np.ndarray] | None = None, state: np.ndarray | None = None) -> None:
        self.raw = raw or {}
        self.state = state

    def __len__(self) -> int:
        n = sum(len(b) // slot_size(RINGS[ring]) for ring, b in self.raw.items())
        return n + (len(self.state) if self.state is not None else 0)

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.raw.values()) + (self.state.nbytes if self.state is not None else 0)
