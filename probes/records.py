"""The recorder's kernel record, described once for Python.

``record.bpf.c`` writes one fixed-size ``struct event`` per fact into a BPF ring buffer; this module
holds the same layout as a numpy structured dtype so a whole drain decodes with one view and no
per-record Python. A kernel test compares this layout with the compiled program's (BCC's ctypes view of
``struct event``), so the two sides cannot drift apart silently.

Ring-buffer framing (kernel/bpf/ringbuf.c): every record is preceded by an 8-byte header
``u32 len`` (with BUSY and DISCARD flag bits) + ``u32 page offset``, and records are 8-byte aligned.
"""

from __future__ import annotations

import numpy as np

STR_HALF = 256
STR_LEN = 512

EVENT_DTYPE = np.dtype(
    [
        ("ts", "<u8"),
        ("ret", "<i8"),
        ("a0", "<i8"),
        ("a1", "<i8"),
        ("a2", "<i8"),
        ("a3", "<i8"),
        ("a4", "<i8"),
        ("a5", "<i8"),
        ("dur", "<u8"),
        ("tgid", "<u4"),
        ("tid", "<u4"),
        ("kind", "<u2"),
        ("len1", "<u2"),
        ("len2", "<u2"),
        ("nr", "<u2"),
        ("cpu", "<u4"),
        ("flags", "<u4"),
        ("comm", "S16"),
        ("str", f"V{STR_LEN}"),
    ]
)
assert EVENT_DTYPE.itemsize == 624
STR_OFFSET = EVENT_DTYPE.fields["str"][1]
COMM_OFFSET = EVENT_DTYPE.fields["comm"][1]

RB_HEADER = 8
RB_BUSY = 1 << 31
RB_DISCARD = 1 << 30
RECORD_SIZE = (RB_HEADER + EVENT_DTYPE.itemsize + 7) // 8 * 8  # one ring-buffer slot

SLOT_DTYPE = np.dtype(
    {
        "names": ["hlen", "hpgoff", "ev"],
        "formats": ["<u4", "<u4", EVENT_DTYPE],
        "offsets": [0, 4, RB_HEADER],
        "itemsize": RECORD_SIZE,
    }
)

# Kind codes, as in record.bpf.c `enum kind`. Names are what the store and users see.
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
    40: "syscall",
    41: "sched_switch",
    42: "sched_wakeup",
    43: "sched_migrate",
}
KIND_CODES: dict[str, int] = {v: k for k, v in KINDS.items()}

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


def slots_from_buffer(buf: np.ndarray) -> np.ndarray:
    """View raw ring-buffer bytes (whole slots) as slots. ``buf`` is a uint8 array."""
    n = len(buf) // RECORD_SIZE
    return buf[: n * RECORD_SIZE].view(SLOT_DTYPE)


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
