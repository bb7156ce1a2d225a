"""The store's tables: an append-only OS state log.

- ``runs``: one row per state change of a recording (ReplacingMergeTree on ``updated_ns``; read with
  FINAL). A run is a UUID; a host has a name and a boot id.
- ``events``: every recorded fact, never updated. ``ts`` is CLOCK_MONOTONIC ns (the clock of
  bpf_ktime_get_ns and time.monotonic_ns); ``seq`` is the order the recorder read them in, to break
  ties. Lost records are facts too: a ``lost`` row says how many were dropped before its ``ts``.
- ``snapshot_procs`` / ``snapshot_fds``: the /proc baseline taken when recording started, so the
  state at any instant is complete and not only what changed.
- ``tests``: the tests of a recorded pytest session (``pytest --osrewind``), with their windows.

Codecs were chosen by measurement (bench/codecs.py, a file-heavy real recording of 122k events):
Delta+ZSTD(1) on timestamps and sequence numbers, T64+ZSTD(1) on pids, fds and flags, ZSTD(1) on
strings: 6.3 bytes/event, against 7.2 with DoubleDelta on timestamps (their gaps are irregular),
7.3 with plain ZSTD(1) and 15.3 with LZ4. ZSTD(3) saves another 5% for more insert CPU, which
the recorder needs more.
"""

from __future__ import annotations

from osrewind.probes.records import KINDS

SCHEMA_VERSION = 1

_KIND_ENUM = ", ".join(f"'{name}' = {code}" for code, name in sorted(KINDS.items()))
KIND_TYPE = f"Enum8({_KIND_ENUM})"

TABLES = {
    "meta": """
CREATE TABLE IF NOT EXISTS meta (
    key String,
    value String
) ENGINE = ReplacingMergeTree ORDER BY key
""",
    "runs": """
CREATE TABLE IF NOT EXISTS runs (
    run_id UUID,
    name String,
    host String,
    boot_id String,
    kernel String,
    command Array(String),
    cwd String,
    scope LowCardinality(String),
    root_pid UInt32,
    start_ns Int64,
    end_ns Int64,
    wall_offset_ns Int64,
    events UInt64,
    lost UInt64,
    exit_code Nullable(Int32),
    status LowCardinality(String),
    version String,
    updated_ns Int64
) ENGINE = ReplacingMergeTree(updated_ns) ORDER BY run_id
""",
    "events": f"""
CREATE TABLE IF NOT EXISTS events (
    run_id UUID,
    ts Int64 CODEC(Delta, ZSTD(1)),
    seq UInt64 CODEC(Delta, ZSTD(1)),
    kind {KIND_TYPE},
    tgid UInt32 CODEC(T64, ZSTD(1)),
    tid UInt32 CODEC(T64, ZSTD(1)),
    ret Int64 CODEC(T64, ZSTD(1)),
    a0 Int64 CODEC(T64, ZSTD(1)),
    a1 Int64 CODEC(T64, ZSTD(1)),
    a2 Int64 CODEC(T64, ZSTD(1)),
    a3 Int64 CODEC(T64, ZSTD(1)),
    a4 Int64 CODEC(T64, ZSTD(1)),
    a5 Int64 CODEC(T64, ZSTD(1)),
    dur Int64 CODEC(T64, ZSTD(1)),
    nr UInt16 CODEC(T64, ZSTD(1)),
    cpu UInt16 CODEC(T64, ZSTD(1)),
    comm LowCardinality(String),
    path String CODEC(ZSTD(1)),
    path2 String CODEC(ZSTD(1)),
    argv Array(String) CODEC(ZSTD(1))
) ENGINE = MergeTree ORDER BY (run_id, ts, seq)
""",
    "snapshot_procs": """
CREATE TABLE IF NOT EXISTS snapshot_procs (
    run_id UUID,
    ts Int64,
    pid UInt32,
    ppid UInt32,
    start_ns Int64,
    uid UInt32,
    comm String,
    exe String,
    argv Array(String),
    cwd String,
    threads UInt32
) ENGINE = MergeTree ORDER BY (run_id, pid)
""",
    # the tests of a recorded pytest session (osrewind's pytest plugin), one row a test: its phases'
    # starts and ends (CLOCK_MONOTONIC ns, 0: the phase did not happen) and outcome ('died': its
    # process ended inside it, e.g. os._exit or SIGKILL; then end_ns is when it ended)
    "tests": """
CREATE TABLE IF NOT EXISTS tests (
    run_id UUID,
    nodeid String,
    outcome LowCardinality(String),
    pid UInt32,
    worker String,
    start_ns Int64,
    end_ns Int64,
    setup_start_ns Int64,
    setup_end_ns Int64,
    call_start_ns Int64,
    call_end_ns Int64,
    teardown_start_ns Int64,
    teardown_end_ns Int64,
    message String
) ENGINE = MergeTree ORDER BY (run_id, start_ns)
""",
    "snapshot_fds": """
CREATE TABLE IF NOT EXISTS snapshot_fds (
    run_id UUID,
    ts Int64,
    pid UInt32,
    fd Int32,
    target String,
    kind LowCardinality(String),
    flags UInt32,
    pos Int64
) ENGINE = MergeTree ORDER BY (run_id, pid, fd)
""",
}

EVENT_COLUMNS = ["run_id", "ts", "seq", "kind", "tgid", "tid", "ret", "a0", "a1", "a2", "a3", "a4", "a5", "dur",
                 "nr", "cpu", "comm", "path", "path2", "argv"]

# Columns added after the first release, for stores created before them: (table, column, type).
ADDED_COLUMNS = [
    ("events", "a4", "Int64 CODEC(T64, ZSTD(1)) AFTER a3"),
    ("events", "a5", "Int64 CODEC(T64, ZSTD(1)) AFTER a4"),
    ("events", "dur", "Int64 CODEC(T64, ZSTD(1)) AFTER a5"),
    ("events", "nr", "UInt16 CODEC(T64, ZSTD(1)) AFTER dur"),
    ("events", "cpu", "UInt16 CODEC(T64, ZSTD(1)) AFTER nr"),
    # why a run ended as it did, in words (a failed run): 'disk full (ENOSPC) at +12.3s'
    ("runs", "status_detail", "String AFTER status"),
    # how files were identified: 'kernel' (what the kernel opened, through its BTF) or 'path' (the
    # paths programs passed: a kernel without BTF)
    ("runs", "identity", "LowCardinality(String) AFTER status_detail"),
    # a baseline process's cgroup v2 path
    ("snapshot_procs", "cgroup", "String AFTER threads"),
]
