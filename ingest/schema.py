"""The store's tables: an append-only OS state log.

- ``runs``: one row per state change of a recording (ReplacingMergeTree on ``updated_ns``; read with
  FINAL). A run is a UUID; a host has a name and a boot id.
- ``events``: every recorded fact, never updated. ``ts`` is CLOCK_MONOTONIC ns (the clock of
  bpf_ktime_get_ns and time.monotonic_ns); ``seq`` is the order the recorder read them in, to break
  ties. Lost records are facts too: a ``lost`` row says how many were dropped before its ``ts``.
- ``snapshot_procs`` / ``snapshot_fds``: the /proc baseline taken when recording started, so the
  state at any instant is complete and not only what changed.
- ``tests``: the tests of a recorded pytest session (``pytest --osrewind``), with their windows.

Codecs were chosen by measurement (bench/codecs.py: the merged parts of real recordings, a
file-heavy one and a dd flood, whose syscall stream is the bulk of a store), column by column:
Delta on timestamps and sequence numbers, and on results and the fourth argument (they repeat or
step); T64 on the first and third arguments (small numbers: fds, flags, counts), durations and
CPUs; no transform for pids, thread ids, the second, fifth and sixth arguments (pointers, inodes,
devices: T64 made them 1.6-2.2x larger on the file-heavy recording) and syscall numbers. Side by
side: 5.57 and 0.75 bytes/event against 6.99 and 0.79 with T64 on every number (the layout
before), 5.68 and 1.99 with plain ZSTD(1), 6.63 and 0.93 with DoubleDelta on timestamps (their gaps
are irregular), 13.6 and 8.6 with LZ4; ZSTD(3) saves another 2-16% for more CPU at every merge.
The last step is named ``Default``: the embedded engine (configured by ingest/chdb.xml) compresses
a part an insert writes with LZ4 and a part a merge writes with ZSTD(1), so a recorder's inserts
cost about a quarter less (a batch of 250k syscall rows through the writer's insert: 143-146
against 194-222 ns a row at best) and the parts that stay are as small as with ZSTD(1) by name. A
server decides ``Default`` for itself (LZ4 unless its ``<compression>`` section says otherwise):
there the tables name ZSTD(1) (:func:`on_server`).
"""

from __future__ import annotations

import re

from osrewind.probes.records import KINDS

SCHEMA_VERSION = 1

_KIND_ENUM = ", ".join(f"'{name}' = {code}" for code, name in sorted(KINDS.items()))
KIND_TYPE = f"Enum8({_KIND_ENUM})"

# Table settings, also set on stores made before them (ALTER ... MODIFY SETTING). A recorder's
# insert (up to 250k rows, about 25 MB of syscall rows) makes a compact part (one file for all
# columns) rather than a wide one (two files a column): 12% less insert time for a syscall batch,
# measured side by side (bench: 229-250 against 263-290 ns a row), and fewer files made and deleted.
# Parts over 64 MiB, which merges make, are wide as before: compact ones of 2M rows took 20% more
# room (bench/record_rate.py: 6.7 against 5.6 bytes an event).
TABLE_SETTINGS = {"events": {"min_bytes_for_wide_part": 64 << 20}}
_EVENTS_SETTINGS = ", ".join(f"{k} = {v}" for k, v in TABLE_SETTINGS["events"].items())

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
    ts Int64 CODEC(Delta, Default),
    seq UInt64 CODEC(Delta, Default),
    kind {KIND_TYPE},
    tgid UInt32 CODEC(Default),
    tid UInt32 CODEC(Default),
    ret Int64 CODEC(Delta, Default),
    a0 Int64 CODEC(T64, Default),
    a1 Int64 CODEC(Default),
    a2 Int64 CODEC(T64, Default),
    a3 Int64 CODEC(Delta, Default),
    a4 Int64 CODEC(Default),
    a5 Int64 CODEC(Default),
    dur Int64 CODEC(T64, Default),
    nr UInt16 CODEC(Default),
    cpu UInt16 CODEC(T64, Default),
    comm LowCardinality(String),
    path String CODEC(Default),
    path2 String CODEC(Default),
    argv Array(String) CODEC(Default)
) ENGINE = MergeTree ORDER BY (run_id, ts, seq) SETTINGS {_EVENTS_SETTINGS}
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

# One line of meaning for every column above (osrewind sql --schema; a test checks none is missing).
COLUMN_DOCS = {
    ("meta", "key"): "a setting of the store (schema_version, ...)",
    ("meta", "value"): "its value",
    ("runs", "run_id"): "the run",
    ("runs", "name"): "the run's name",
    ("runs", "host"): "the host that recorded it",
    ("runs", "boot_id"): "that host's boot id (CLOCK_MONOTONIC instants compare within one boot)",
    ("runs", "kernel"): "the kernel's release",
    ("runs", "command"): "the recorded command",
    ("runs", "cwd"): "the directory it was recorded from",
    ("runs", "scope"): "what was recorded: command, pid, cgroup or system",
    ("runs", "root_pid"): "the recorded command's pid",
    ("runs", "start_ns"): "when recording started (CLOCK_MONOTONIC ns)",
    ("runs", "end_ns"): "when it ended",
    ("runs", "wall_offset_ns"): "add to a CLOCK_MONOTONIC instant for ns since the epoch",
    ("runs", "events"): "facts recorded",
    ("runs", "lost"): "facts lost (counted at their cause)",
    ("runs", "exit_code"): "the recorded command's exit code",
    ("runs", "status"): "recording, complete, interrupted, failed, recovered, aborted",
    ("runs", "status_detail"): "why it ended so (a failed run): 'disk full (ENOSPC) at +12.3s'",
    ("runs", "identity"): "how files were identified: kernel (what it opened) or path (the path passed)",
    ("runs", "version"): "the osrewind that recorded it",
    ("runs", "updated_ns"): "when this row was written (the newest row of a run is its state)",
    ("events", "run_id"): "the run",
    ("events", "ts"): "when it happened (CLOCK_MONOTONIC ns)",
    ("events", "seq"): "the order the recorder read it in (breaks ties)",
    ("events", "kind"): "what kind of fact: open, close, fork, exec, syscall, sched_switch, ...",
    ("events", "tgid"): "process id",
    ("events", "tid"): "thread id",
    ("events", "ret"): "the syscall's result (negative: -errno)",
    ("events", "a0"): "first argument (its meaning per kind: probes/record.bpf.c)",
    ("events", "a1"): "second argument",
    ("events", "a2"): "third argument (flags, for an open)",
    ("events", "a3"): "fourth argument (a rename's number, for a rename)",
    ("events", "a4"): "inode, kernel start time or a fifth argument, per kind",
    ("events", "a5"): "device, real parent or a sixth argument, per kind",
    ("events", "dur"): "a syscall's duration (ns)",
    ("events", "nr"): "syscall number",
    ("events", "cpu"): "the CPU it happened on",
    ("events", "comm"): "the thread's name",
    ("events", "path"): "the path passed",
    ("events", "path2"): "the kernel's path of what it opened, or a rename's target",
    ("events", "argv"): "an exec's arguments",
    ("snapshot_procs", "run_id"): "the run",
    ("snapshot_procs", "ts"): "when /proc was read (CLOCK_MONOTONIC ns)",
    ("snapshot_procs", "pid"): "a process running when recording started",
    ("snapshot_procs", "ppid"): "its parent",
    ("snapshot_procs", "start_ns"): "when it started (CLOCK_MONOTONIC ns)",
    ("snapshot_procs", "uid"): "its real user id",
    ("snapshot_procs", "comm"): "its name",
    ("snapshot_procs", "exe"): "its executable",
    ("snapshot_procs", "argv"): "its command line",
    ("snapshot_procs", "cwd"): "its working directory",
    ("snapshot_procs", "threads"): "its threads",
    ("snapshot_procs", "cgroup"): "its cgroup v2 path",
    ("snapshot_fds", "run_id"): "the run",
    ("snapshot_fds", "ts"): "when /proc was read",
    ("snapshot_fds", "pid"): "the process holding it",
    ("snapshot_fds", "fd"): "an fd open when recording started",
    ("snapshot_fds", "target"): "what /proc/PID/fd shows for it",
    ("snapshot_fds", "kind"): "file, pipe, socket, anon or other",
    ("snapshot_fds", "flags"): "its open flags (/proc/PID/fdinfo)",
    ("snapshot_fds", "pos"): "its file position",
    ("tests", "run_id"): "the run (a recorded pytest session)",
    ("tests", "nodeid"): "the test's node id",
    ("tests", "outcome"): "passed, failed, skipped or died",
    ("tests", "pid"): "the process that ran it",
    ("tests", "worker"): "its xdist worker ('' without xdist)",
    ("tests", "start_ns"): "when its setup started",
    ("tests", "end_ns"): "when its teardown ended (or its process did)",
    ("tests", "setup_start_ns"): "setup's start (0: no setup)",
    ("tests", "setup_end_ns"): "setup's end",
    ("tests", "call_start_ns"): "the test's call: start",
    ("tests", "call_end_ns"): "its end",
    ("tests", "teardown_start_ns"): "teardown's start",
    ("tests", "teardown_end_ns"): "teardown's end",
    ("tests", "message"): "why it failed (the first line)",
}

EVENT_COLUMNS = ["run_id", "ts", "seq", "kind", "tgid", "tid", "ret", "a0", "a1", "a2", "a3", "a4", "a5", "dur",
                 "nr", "cpu", "comm", "path", "path2", "argv"]

# Columns added after the first release, for stores created before them: (table, column, type).
ADDED_COLUMNS = [
    ("events", "a4", "Int64 CODEC(Default) AFTER a3"),
    ("events", "a5", "Int64 CODEC(Default) AFTER a4"),
    ("events", "dur", "Int64 CODEC(T64, Default) AFTER a5"),
    ("events", "nr", "UInt16 CODEC(Default) AFTER dur"),
    ("events", "cpu", "UInt16 CODEC(T64, Default) AFTER nr"),
    # why a run ended as it did, in words (a failed run): 'disk full (ENOSPC) at +12.3s'
    ("runs", "status_detail", "String AFTER status"),
    # how files were identified: 'kernel' (what the kernel opened, through its BTF) or 'path' (the
    # paths programs passed: a kernel without BTF)
    ("runs", "identity", "LowCardinality(String) AFTER status_detail"),
    # a baseline process's cgroup v2 path
    ("snapshot_procs", "cgroup", "String AFTER threads"),
]


_DEFAULT_CODEC = re.compile(r"(CODEC\([^()]*?)Default\)")
_COLUMN_CODEC = re.compile(r"^\s+(\w+) [^\n]*?CODEC\(((?:[^()]|\([^()]*\))*)\)", re.M)


def on_server(ddl: str) -> str:
    """A statement (or column type) of this module as it is run on a ClickHouse server: a codec's
    ``Default`` step (compression by part size, in the embedded engine) is ZSTD(1) there."""
    return _DEFAULT_CODEC.sub(r"\1ZSTD(1))", ddl)


def column_codecs(table: str) -> dict[str, str]:
    """The codec each column of ``table`` names in its DDL (what goes inside ``CODEC(...)``)."""
    return dict(_COLUMN_CODEC.findall(TABLES[table]))
