"""Record a command, a process tree or the whole system into the store.

The loop: load the probe, write the run row (status ``recording``), put the scope into the kernel's
tracked map, take the /proc baseline, then drain the ring buffer every few milliseconds and insert
columnar batches. Every batch that reaches the store stays there: a recording stopped by Ctrl-C, a
signal or an error keeps everything read up to that moment and its run row says how it ended.

Scopes:
- ``command``: osrewind forks, the child waits on a pipe until its pid is in the tracked map and the
  baseline is taken, then execs the command. Every descendant is added in the kernel at fork, so
  daemons that re-parent to init stay in scope. Recording ends when the command exits.
- ``pid``: an existing process and its descendants; ends when they have all exited (or on Ctrl-C).
- ``system``: every process but the recorder; ends on Ctrl-C or ``duration``.

The command runs as it would without osrewind: it gets back the fds, signal dispositions, signal
mask and umask osrewind was started with (Python ignores SIGPIPE and SIGXFSZ, the store blocks
SIGPIPE and narrows the umask), and exec failures exit as a shell's would (127 not found, 126 not
runnable).

Stopping: Ctrl-C (SIGINT), SIGTERM, SIGHUP (the terminal closed) or ``stop()`` end the recording
when the command exits (SIGTERM and SIGHUP are passed on to it; Ctrl-C at a terminal reached it
already); the run is ``interrupted`` and keeps everything. If the command does not exit, a second
Ctrl-C, SIGTERM or ``stop()`` stops recording at once and leaves it running.

Faults while recording: recording trouble never changes the outcome of the recorded command. When
the store fails (a full disk, its directory removed, any insert error) or draining fails, the
recorder stops producing records (the command is taken out of the kernel's scope, so it runs on at
the bare hooks' cost), keeps waiting for the command and ends with its exit code; the run is
``failed`` and its ``status_detail`` says why and when (``disk full (ENOSPC) at +12.3s``), with every
batch stored before then kept. A little space is set aside beside an embedded store while it
records (``RESERVE_NAME``) so that the run's last row can still be written on a full disk; when
even that fails, or the store's directory is gone, ``RunResult.failure`` says so (the CLI prints it).

Derived data (keyframes) can be built while the run records: the caller passes an ``indexer`` (the
CLI passes ``osrewind.queries.keyframes.LiveIndexer``; ingest does not import queries). The writer
tells it how far the store is complete after each insert; it reads the store behind the writer on
its own thread and never holds up the ring drain. The recorder stops it when the last insert is
done; the caller then has it finish the tail.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from osrewind import (
    INHERITED_FDS,
    INHERITED_SIGNAL_MASK,
    INHERITED_SIGNALS_IGNORED,
    INHERITED_UMASK,
    __version__,
)
from osrewind.errors import CommandNotRun, StoreError, UsageError
from osrewind.ingest import decode, spool
from osrewind.ingest.background import Background
from osrewind.ingest.redact import Redactor
from osrewind.ingest.store import MARKER_NAME, Store
from osrewind.ingest.writer import EventWriter
from osrewind.probes import procfs
from osrewind.probes.loader import Probe, ProbeOptions
from osrewind.text import safe

POLL_SECONDS = 0.01
# a drain that took this much: the rings are filling fast, the next comes after BUSY_POLL_SECONDS
BUSY_BYTES = 1 << 20
BUSY_POLL_SECONDS = 0.002
# how often threads made since (the store engine's, as it needs them) are moved to the background
BACKGROUND_SWEEP_SECONDS = 0.5
IO_FLUSH_SECONDS = 0.1
# after a first Ctrl-C, a command that has not exited within this long is told about (notice)
STILL_RUNNING_SECONDS = 0.3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# set aside beside an embedded store while recording, freed for the run's last row (the engine
# reserves 1 MiB for any insert)
RESERVE_NAME = "osrewind-reserve"
RESERVE_BYTES = 4 << 20
# a command still running this long after the recording failed: the user is told at once
FAILURE_NOTICE_SECONDS = 1.0


@dataclass
class RecordOptions:
    scope: str = "command"              # command | pid | cgroup | system
    command: Sequence[str] = ()
    pids: Sequence[int] = ()
    cgroup: str = ""                    # scope cgroup: a cgroup directory (a container's)
    name: str = ""
    duration: float | None = None       # seconds; None = until the scope ends or Ctrl-C
    ringbuf_pages: int = 16384
    sched: bool = True
    syscalls: bool = True
    aggregate_io: bool = False
    cwd: str | None = None
    env: dict[str, str] | None = None
    handle_signals: bool = True         # False when run off the main thread (the live TUI): use stop()
    output: str | None = None           # the command's stdout+stderr to this file, stdin from /dev/null
    redact: Sequence[str] = ()          # regexes: matches in argv, paths, cwd become *** before storing
    max_spool: int = spool.DEFAULT_MAX_BYTES   # bytes spooled ahead of the store before the stream lanes are shed


class Indexer(Protocol):
    """Derived data built during a recording, behind the writer."""

    def start(self, run_id: uuid.UUID) -> None:
        """The run row is written; the baseline and facts follow through the writer."""

    def inserted(self, upto_ns: int) -> None:
        """Every fact stamped before ``upto_ns`` is in the store (the writer's thread: return at once)."""

    def stop(self) -> None:
        """The last fact is in the store: stop working (the caller finishes the rest)."""


class StoreGone(StoreError):
    """The store's directory was removed or replaced while recording."""


@dataclass
class RecordingFailure:
    """Why and when a recording stopped keeping facts while its command ran on."""

    reason: str                 # 'disk full (ENOSPC)', 'store directory /x was removed', ...
    at_ns: int                  # since the run's start
    in_store: bool = True       # the store failed (not the probe): nothing more can be written there
    store_gone: bool = False    # the store's directory is gone: nothing was kept
    row_saved: bool = True      # the run row says 'failed' and why (False: it could not be written)
    noticed: float = 0.0        # time.monotonic() when the recorder noticed

    @property
    def detail(self) -> str:
        return f"{self.reason} at +{self.at_ns / 1e9:.1f}s"


def failure_reason(exc: BaseException) -> str:
    """A store or recording error in a few words: 'disk full (ENOSPC)' whatever layer reported it."""
    if isinstance(exc, StoreGone):
        return str(exc)
    chain, e = [], exc
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    codes = {e.errno for e in chain if isinstance(e, OSError)}
    text = " ".join(str(e) for e in chain)
    if errno.ENOSPC in codes or any(k in text for k in ("NOT_ENOUGH_SPACE", "No space left on device",
                                                        "errno: 28,", "Errno 28]")):
        return "disk full (ENOSPC)"
    if errno.EDQUOT in codes or "Disk quota exceeded" in text:
        return "disk quota exceeded (EDQUOT)"
    if errno.EROFS in codes or "Read-only file system" in text:
        return "the store's filesystem became read-only (EROFS)"
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


@dataclass
class RunResult:
    run_id: uuid.UUID
    name: str
    status: str                          # complete | interrupted | failed
    exit_code: int | None
    events: int
    lost: int
    start_ns: int
    end_ns: int
    extra: dict = field(default_factory=dict)
    status_detail: str = ""
    failure: RecordingFailure | None = None   # the recording failed while the command ran on


def failure_line(result: RunResult, command: str = "the command") -> str:
    """One line for the user about a recording that failed: when, why, what was kept, and what
    became of the command (its outcome is the command's own)."""
    f = result.failure
    assert f is not None
    parts = [f"recording failed at +{f.at_ns / 1e9:.1f}s: {f.reason}",
             "nothing kept" if f.store_gone else f"{result.events} events kept"]
    if not f.row_saved and not f.store_gone:
        parts.append("the run's last row could not be written, so it will read as aborted")
    if result.extra.get("scope") == "command":
        if result.exit_code is None:
            parts.append(f"{command} was left running, unrecorded")
        else:
            parts.append(f"{command} ran to the end (exit {result.exit_code})")
    return "; ".join(parts)


def host_identity() -> tuple[str, str, str]:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot_id = f.read().strip()
    except OSError:
        boot_id = ""
    return socket.gethostname(), boot_id, os.uname().release


def restore_signals() -> None:
    """In a forked child about to exec: every signal's disposition and the mask as osrewind's
    parent left them (ignored ones stay ignored, e.g. SIGHUP under nohup; all others default)."""
    for s in signal.valid_signals():
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(s, signal.SIG_IGN if s in INHERITED_SIGNALS_IGNORED else signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, INHERITED_SIGNAL_MASK)


def exec_failure_code(err: int) -> int:
    """A shell's exit code for a command it could not run: 127 not found, 126 found but not runnable."""
    return 127 if err == errno.ENOENT else 126


def wait_status_to_code(status: int) -> int:
    """Shell convention: the exit code, or 128 + signal number for a killed process."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


class Recorder:
    def __init__(self, store: Store, opts: RecordOptions,
                 progress: Callable[[str], None] | None = None, indexer: Indexer | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.opts = opts
        self.indexer = indexer
        self.progress = progress or (lambda msg: None)
        self.notice = notice or (lambda msg: None)   # things the user must hear, e.g. "waiting for..."
        self.redact = Redactor(opts.redact)
        self.run_id = uuid.uuid4()
        self.name = opts.name or self.redact(self._default_name())
        self._stop_reason: str | None = None
        self._stop_requests = 0          # Ctrl-C, SIGTERM, SIGHUP or stop() while the command runs
        self._first_interrupt = 0.0      # when the first Ctrl-C (or SIGTERM, SIGHUP) came (monotonic), 0 if none
        self._stop_signal = 0            # the last signal that asked the recording to stop
        self._waiting_told = False
        self._leave_running = False      # stop recording now, the command keeps running
        self._hangup = False
        self._not_run: CommandNotRun | None = None
        self._lost_seen = 0
        self._drops_seen: dict[int, int] = {}   # per drop cause: how many the kernel had counted at the last drain
        self._io_flushed = 0.0
        self._writer: EventWriter | None = None
        self._child_pid: int | None = None
        self._exit_code: int | None = None
        self._failure: RecordingFailure | None = None
        self._failure_told = False
        self._status_detail = ""
        self._identity = ""                 # the probe's: kernel | path (see probes/loader.py)
        self._start_ns = 0
        self._reserve: str | None = None
        self._spool: spool.Spool | None = None
        self._guard: Callable[[], None] | None = None   # raises StoreGone once the store is gone
        self._busy = False                  # the last drain was a big one: drain again soon
        self._sched: tuple | None = None    # this thread's scheduling policy before recording (restored)
        self._background = Background()    # the threads behind the spool, nice 19 while recording
        self._shed_told = False

    def _default_name(self) -> str:
        if self.opts.scope == "command" and self.opts.command:
            return os.path.basename(self.opts.command[0])
        if self.opts.scope == "pid":
            return "pid-" + "-".join(str(p) for p in self.opts.pids)
        if self.opts.scope == "cgroup":
            return "cgroup-" + (os.path.basename(self.opts.cgroup.rstrip("/")) or "root")
        return "system"

    # ------------------------------------------------------------------ run row

    def _run_row(self, status: str, start_ns: int, end_ns: int, wall_offset: int) -> None:
        host, boot_id, kernel = host_identity()
        cmd = [self.redact(a) for a in self.opts.command] if self.opts.scope == "command" else []
        if self.opts.scope == "pid":
            cmd = [f"--pid {p}" for p in self.opts.pids]
        if self.opts.scope == "cgroup":
            cmd = [f"--cgroup {self.redact(self.opts.cgroup)}"]
        cwd = self.redact(self.opts.cwd or os.getcwd())
        self.store.insert_rows(
            "runs",
            [[self.run_id, self.name, host, boot_id, kernel, cmd, cwd, self.opts.scope,
              self._child_pid or (self.opts.pids[0] if self.opts.pids else 0), start_ns, end_ns, wall_offset,
              self._writer.written if self._writer else 0, self._lost_seen, self._exit_code, status, self._status_detail,
              self._identity, __version__, time.time_ns()]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "status_detail", "identity",
             "version", "updated_ns"],
        )

    # ------------------------------------------------------------------ baseline

    @staticmethod
    def _ask_identities(procs) -> None:
        """The kernel's exact start and real parent of each baseline process (/proc gives start times
        in clock ticks): opening a pidfd on one makes the probe send them (an ``identity`` fact)."""
        me = os.getpid()
        for p in procs:
            if p.pid == me:  # the recorder records nothing of itself
                continue
            try:
                os.close(os.pidfd_open(p.pid))
            except OSError:  # gone meanwhile, or a kernel without pidfds
                pass

    def _baseline(self, pids: set[int] | None) -> None:
        assert self._writer is not None
        ts = time.monotonic_ns()
        procs, fds = procfs.snapshot(pids)
        if self._identity == "kernel":
            self._ask_identities(procs)
        rid = str(self.run_id)
        if procs:
            self._writer.insert("snapshot_procs", pa.table({
                "run_id": pa.array([rid] * len(procs)),
                "ts": pa.array([ts] * len(procs), type=pa.int64()),
                "pid": pa.array([p.pid for p in procs], type=pa.uint32()),
                "ppid": pa.array([p.ppid for p in procs], type=pa.uint32()),
                "start_ns": pa.array([p.start_ns for p in procs], type=pa.int64()),
                "uid": pa.array([p.uid for p in procs], type=pa.uint32()),
                # names, argv and paths are bytes kept as surrogateescape str: back to their bytes
                "comm": decode.text_array([p.comm for p in procs]),
                "exe": decode.text_array([p.exe for p in procs]),
                "argv": decode.text_array([p.argv for p in procs], depth=1),
                "cwd": decode.text_array([p.cwd for p in procs]),
                "threads": pa.array([p.threads for p in procs], type=pa.uint32()),
                "cgroup": decode.text_array([p.cgroup for p in procs]),
            }))
        if fds:
            self._writer.insert("snapshot_fds", pa.table({
                "run_id": pa.array([rid] * len(fds)),
                "ts": pa.array([ts] * len(fds), type=pa.int64()),
                "pid": pa.array([f.pid for f in fds], type=pa.uint32()),
                "fd": pa.array([f.fd for f in fds], type=pa.int32()),
                "target": decode.text_array([f.target for f in fds]),
                "kind": pa.array([f.kind for f in fds]),
                "flags": pa.array([f.flags for f in fds], type=pa.uint32()),
                "pos": pa.array([f.pos for f in fds], type=pa.int64()),
            }))

    # ------------------------------------------------------------------ draining

    def _drain(self, probe: Probe, flush_io: bool = False) -> None:
        assert self._writer is not None
        taken = time.monotonic_ns()
        got = probe.drain_into(lambda views: self._writer.put_rings(views, taken))   # ring -> spool, one copy
        self._busy = got >= BUSY_BYTES
        if flush_io or time.monotonic() - self._io_flushed >= IO_FLUSH_SECONDS:
            self._io_flushed = time.monotonic()
            if probe.opts.aggregate_io:
                quiet = probe.io_sweep(None if flush_io else 100_000_000)  # quiet for 100 ms: at most 0.2 s late
                if quiet:
                    self._writer.put(decode.io_records(quiet, time.monotonic_ns()), taken)
            # syscalls the kernel counted instead of recording while the stream lane was degraded
            agg = decode.agg_records(probe.agg_sweep(final=flush_io))
            if len(agg):
                self._writer.put(agg, taken)
        # every drop at its cause (a lane's ring full, a map full): one `lost` fact per cause and drain
        seen = self._drops_seen
        for cause, n in probe.drops().items():
            if n > seen.get(cause, 0):
                self._writer.lost(time.monotonic_ns(), n - seen.get(cause, 0), cause)
                seen[cause] = n
        # plus what the writer shed past --max-spool (it stores those `lost` facts itself)
        self._lost_seen = sum(seen.values()) + self._writer.shed

    # ------------------------------------------------------------------ scope

    def _spawn_gated(self) -> tuple[int, int, int]:
        """Fork the command; the child blocks on a pipe until released, then execs."""
        program = self._program
        gate_r, gate_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # child: no Python-level cleanup, only exec or _exit
            try:
                restore_signals()
                os.umask(INHERITED_UMASK)   # the store made this process's 077
                os.close(gate_w)
                os.close(err_r)
                os.read(gate_r, 1)
                os.close(gate_r)
                for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
                    if fd > 2 and fd != err_w and fd not in INHERITED_FDS:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                if self.opts.output:  # e.g. under the live TUI, whose screen the command must not write on
                    out = os.open(self.opts.output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(out, 1)
                    os.dup2(out, 2)
                    os.close(out)
                    os.close(null)
                if self.opts.cwd:
                    os.chdir(self.opts.cwd)
                env = self.opts.env if self.opts.env is not None else os.environ
                os.execve(program, list(self.opts.command), env)
            except BaseException as exc:  # noqa: BLE001 - report to the parent, never return
                code = getattr(exc, "errno", 0) or 0
                try:
                    os.write(err_w, f"{code}:{getattr(exc, 'strerror', None) or exc}".encode())
                finally:
                    os._exit(exec_failure_code(code))
        os.close(gate_r)
        os.close(err_w)
        return pid, gate_w, err_r

    def _resolve_program(self) -> str:
        """The command's executable, found here so the recording shows one exec, not a PATH search."""
        env = self.opts.env if self.opts.env is not None else os.environ
        program = self.opts.command[0]
        if "/" in program:
            return program
        path = env.get("PATH", os.defpath)
        found = shutil.which(program, path=path)
        if found:
            return found
        # as a shell: a file of that name that cannot be run is 126, none at all 127
        for d in path.split(os.pathsep):
            if os.path.isfile(os.path.join(d or ".", program)):
                raise CommandNotRun(f"cannot run '{safe(program)}': Permission denied", 126)
        raise CommandNotRun(f"cannot run '{safe(program)}': command not found", 127)

    def _command_running(self) -> bool:
        return self._child_pid is not None and self._exit_code is None

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._stop_reason is None:
            self._stop_reason = "interrupted"
        self._stop_signal = signum
        if not self._command_running():
            return
        if signum == signal.SIGHUP and self._hangup:
            return   # one hang-up can arrive twice (from the kernel and from the shell): it is one request
        self._hangup |= signum == signal.SIGHUP
        self._stop_requests += 1
        if self._stop_requests > 1:
            self._leave_running = True
            return
        self._first_interrupt = time.monotonic()   # "waiting for CMD" if it does not exit
        if signum == signal.SIGINT:
            return   # at a terminal the command had it too; what it does with it is its business
        try:
            os.kill(self._child_pid, signum)
        except ProcessLookupError:
            pass

    def waiting_for(self) -> str:
        """The recorded command as the user knows it, for "waiting for CMD (pid N) to exit"."""
        return f"{safe(os.path.basename(self.opts.command[0]) if self.opts.command else '?')} (pid {self._child_pid})"

    @property
    def events_written(self) -> int:
        """Facts in the store so far (for a progress display on another thread)."""
        return self._writer.written if self._writer is not None else 0

    @property
    def stopping(self) -> bool:
        """A stop was asked for and the recorded command has not exited yet."""
        return self._stop_reason is not None and self._command_running() and not self._leave_running

    def stop(self) -> None:
        """Stop from another thread, as SIGTERM would: the run keeps everything and is ``interrupted``;
        a recorded command gets SIGTERM and the recording ends when it exits. Called again while the
        command still runs: stop recording at once and leave it running."""
        self._on_signal(signal.SIGTERM, None)

    # ------------------------------------------------------------------ faults

    def _store_guard(self) -> Callable[[], None] | None:
        """For the writer: raises ``StoreGone`` once the embedded store's directory has been removed or
        replaced (the engine would recreate paths and write on into the void), or emptied."""
        if not getattr(self.store, "embedded", False):
            return None
        root = os.path.abspath(self.store.location)
        marker = os.path.join(root, MARKER_NAME)
        try:
            st = os.stat(root)
        except OSError:
            return None
        ident = (st.st_dev, st.st_ino)
        had_marker = os.path.exists(marker)

        def guard() -> None:
            try:
                now = os.stat(root)
            except FileNotFoundError:
                raise StoreGone(f"store {root} was deleted") from None
            except OSError:
                return
            if (now.st_dev, now.st_ino) != ident:
                raise StoreGone(f"store {root} was deleted (another directory is there now)")
            if had_marker and not os.path.exists(marker):
                raise StoreGone(f"store {root} was deleted")

        return guard

    def _gone_after_all(self) -> None:
        """A failure first seen as a file of the store (or of its spool) vanishing, while `rm -rf` of
        the store was still under way, is the store being gone: say that, as when the guard saw it."""
        assert self._failure is not None
        if self._failure.store_gone or self._guard is None:
            return
        try:
            self._guard()
        except StoreGone as gone:
            self._failure.reason = failure_reason(gone)
            self._failure.store_gone = True
            self._failure.in_store = True

    def _take_reserve(self) -> None:
        """Set aside a little space on the store's filesystem, freed for the run's last row: on a disk
        that fills up mid-run the run can still say that it failed, and why."""
        if not getattr(self.store, "embedded", False):
            return
        path = os.path.join(os.path.abspath(self.store.location), RESERVE_NAME)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            self._reserve = path
        except OSError:  # no room even for that, or no such call here: record without it
            try:
                os.unlink(path)
            except OSError:
                pass

    def _release_reserve(self) -> None:
        if self._reserve is not None:
            try:
                os.unlink(self._reserve)
            except OSError:
                pass
            self._reserve = None

    def _drain_or_fail(self, probe: Probe, flush_io: bool = False) -> None:
        """Drain as usual; a failure (the store's, seen through the writer, or the drain's own) ends
        the recording, never the command."""
        try:
            self._drain(probe, flush_io=flush_io)
        except Exception as exc:  # noqa: BLE001 - recording trouble: the command runs on
            self._failed(probe, exc)
            return
        if self._writer is not None and self._writer.error is not None:
            self._failed(probe, self._writer.error)

    def _failed(self, probe: Probe | None, exc: BaseException) -> None:
        """Note the first failure, take the recorded processes out of the kernel's scope (nothing more
        is produced for a store that cannot take it: the command pays only the bare hooks) and stop
        the live indexer when the store is the trouble."""
        if self._failure is not None:
            return
        writer = self._writer
        in_store = writer is not None and exc is writer.error
        when = writer.failed_ns if in_store and writer.failed_ns else time.monotonic_ns()
        reason = failure_reason(exc)
        if not in_store and not isinstance(exc, OSError | StoreError):
            reason = f"recording error: {type(exc).__name__}: {reason}"
        self._failure = RecordingFailure(reason, max(0, when - self._start_ns), in_store=in_store,
                                         store_gone=isinstance(exc, StoreGone), noticed=time.monotonic())
        try:
            for _ in range(2 if probe is not None else 0):   # again: a fork may have added a child
                for pid in probe.tracked_pids():
                    probe.untrack(pid)
        except Exception:  # noqa: BLE001, S110 - best effort: the records are not drained either way
            pass
        if in_store and self.indexer is not None:
            try:
                self.indexer.stop()
            except Exception:  # noqa: BLE001, S110 - derived data
                pass

    def _drain_first(self) -> None:
        """While recording, the draining thread (this one) runs before the recorded workload: the
        lowest real-time priority (SCHED_FIFO 1). A workload that keeps every CPU busy would otherwise
        starve it, and the state lane's ring, which never degrades, would overflow. Each drain is a
        short copy and the thread sleeps POLL_SECONDS between drains, so the workload loses little.
        The recorded command was forked before (it keeps its own policy); without the privilege the
        thread keeps its policy."""
        try:
            self._sched = (os.sched_getscheduler(0), os.sched_getparam(0))
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        except (OSError, AttributeError):
            self._sched = None
        self._background.lower()

    def _drain_normal(self) -> None:
        """This thread's policy back, and the threads behind the spool out of the background: the
        recorded program is done, the store's catch-up is what the user waits for now."""
        self._background.restore()
        if self._sched is not None:
            try:
                os.sched_setscheduler(0, self._sched[0], self._sched[1])
            except OSError:
                pass
            self._sched = None

    def _not_started(self, what_failed: str, exc: BaseException) -> StoreError:
        """The error for a recording that could not start: why, in a few words, and that nothing ran."""
        reason = failure_reason(exc)
        self._status_detail = f"{reason} before the start"
        what = "the command was not started" if self.opts.scope == "command" else "nothing was recorded"
        return StoreError(f"{what_failed}: {reason}; {what}")

    def _open_writer(self, start_ns: int) -> EventWriter:
        """The run's spool and the writer behind it (before the command starts: a spool that cannot
        be made stops the recording there)."""
        root = spool.spool_root(self.store.location, getattr(self.store, "embedded", False))
        self._guard = self._store_guard()
        meta = {"run_id": str(self.run_id), "name": self.name, "start_ns": start_ns, "pid": os.getpid(),
                "redact": list(self.opts.redact), "version": __version__}
        try:
            self._spool = spool.Spool(root, str(self.run_id), meta, max_bytes=self.opts.max_spool)
        except OSError as exc:
            raise self._not_started(f"cannot make the run's spool in {root}", exc) from exc
        return EventWriter(self.store, self.run_id, self._spool, self._ingest_progress,
                           on_insert=self.indexer.inserted if self.indexer is not None else None,
                           redact=self.redact, guard=self._guard)

    def _ingest_progress(self, written: int) -> None:
        behind = self._writer.backlog if self._writer is not None else 0
        tail = f", {behind / 1e6:.0f} MB spooled to insert" if behind >= 1_000_000 else ""
        self.progress(f"{written} events, {self._lost_seen} lost{tail}")

    def _close_writer(self, probe: Probe | None) -> None:
        """Everything drained reaches the store (before the run row); the store failing on the last
        batches fails the recording like any other insert."""
        assert self._writer is not None
        try:
            self._writer.close()
        except BaseException as exc:
            if exc is not self._writer.error:
                raise
            self._failed(probe, exc)

    def _finish_row(self, status: str, start_ns: int, end_ns: int, wall_offset: int) -> str:
        """The run's last row, with why it ended when it failed. A store that is gone gets nothing; one
        that cannot take the row (even with the reserve freed) leaves the run reading as aborted, and
        ``failure.row_saved`` tells the caller to say so."""
        if self._failure is not None:
            status = "failed"
            self._gone_after_all()
            self._status_detail = self._failure.detail
            if self._failure.store_gone:
                self._failure.row_saved = False
                return status
        elif self._not_run is not None:
            self._status_detail = str(self._not_run)
        self._release_reserve()
        try:
            self._run_row(status, start_ns, end_ns, wall_offset)
        except Exception as exc:  # noqa: BLE001 - the command's outcome stands; the caller says what was lost
            if self._failure is None:
                self._failure = RecordingFailure(failure_reason(exc), max(0, end_ns - start_ns),
                                                 noticed=time.monotonic())
                status = "failed"
            self._failure.row_saved = False
        return status

    # ------------------------------------------------------------------ main

    def run(self) -> RunResult:
        opts = self.opts
        if opts.scope == "command" and not opts.command:
            raise UsageError("nothing to record: give a command after --, or --pid / --system")
        if opts.duration is not None and not opts.duration > 0:
            raise UsageError("the duration must be more than 0 (leave it out to record until the end)")
        if opts.scope == "command":
            self._program = self._resolve_program()
        if opts.scope == "pid":
            missing = [p for p in opts.pids if not procfs.alive(p)]
            if missing:
                raise UsageError(f"no such process: {missing[0]}")

        cgroup = None
        if opts.scope == "cgroup":
            try:
                cgroup = procfs.cgroup_dir(opts.cgroup)
            except procfs.CgroupProblem as exc:
                raise UsageError(str(exc)) from exc

        self.store.ensure_schema()
        probe = Probe(ProbeOptions(system_wide=opts.scope == "system", ringbuf_pages=opts.ringbuf_pages,
                                   sched=opts.sched, syscalls=opts.syscalls, aggregate_io=opts.aggregate_io,
                                   cgroup=cgroup))
        self._identity = probe.identity
        if probe.identity == "path":
            self.notice("this kernel has no BTF (/sys/kernel/btf/vmlinux): files are identified by the paths "
                        "programs passed, so a rename over an open file or an open through a symlink may "
                        "rewind wrong (the run says identity: path)")
        # a signal osrewind's parent had ignored (SIGHUP under nohup, SIGINT in a background job)
        # stays ignored: it was not meant for this process
        old_handlers = ({s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS
                         if s not in INHERITED_SIGNALS_IGNORED} if opts.handle_signals else {})
        start_ns = time.monotonic_ns()
        wall_offset = time.time_ns() - time.monotonic_ns()
        status = "failed"
        caught_up_ns = 0
        gate_w = err_r = None
        self._start_ns = start_ns
        try:
            self._take_reserve()
            try:
                self._run_row("recording", start_ns, 0, wall_offset)
            except StoreError as exc:   # nothing has started yet: say why in a few words
                raise self._not_started(f"cannot record into store {self.store.location}", exc) from exc
            self._writer = self._open_writer(start_ns)
            if self.indexer is not None:
                try:
                    self.indexer.start(self.run_id)
                except Exception as exc:  # noqa: BLE001 - derived data: the run records without it
                    self.progress(f"live indexing off ({exc})")
                    self.indexer = None
            # the run starts now: the first insert above paid the store's one-time warm-up
            start_ns = self._start_ns = time.monotonic_ns()
            wall_offset = time.time_ns() - time.monotonic_ns()
            if opts.scope == "command":
                self._child_pid, gate_w, err_r = self._spawn_gated()
                self._spool.note(root_pid=self._child_pid)
                probe.track([self._child_pid])
                self._baseline({self._child_pid})
                os.write(gate_w, b"g")
                os.close(gate_w)
                gate_w = None
                failure = os.read(err_r, 4096)
                os.close(err_r)
                err_r = None
                if failure:
                    code, _, why = failure.decode(errors="replace").partition(":")
                    _, st = os.waitpid(self._child_pid, 0)
                    self._exit_code = wait_status_to_code(st)
                    if self._exit_code not in (126, 127):  # killed before it could say (a Ctrl-C)
                        self._exit_code = exec_failure_code(int(code) if code.isdigit() else 0)
                    self._not_run = CommandNotRun(f"cannot run '{safe(opts.command[0])}': {why}", self._exit_code)
            elif opts.scope == "pid":
                roots = set(opts.pids)
                probe.track(procfs.descendants(roots))
                watch = procfs.descendants(roots)  # again: catches forks that raced the first walk
                if not watch:
                    raise UsageError(f"process {min(roots)} exited before recording could start")
                probe.track(watch)
                self._baseline(watch)
            elif opts.scope == "cgroup":
                # the processes in it now; any moved in later come into scope in the kernel
                probe.track(procfs.descendants(procfs.cgroup_members(opts.cgroup)))
                watch = procfs.descendants(procfs.cgroup_members(opts.cgroup))
                probe.track(watch)
                self._baseline(watch)
            else:
                self._baseline(None)
            try:
                self.store.set_purpose(f"recording run {self.run_id} ({self.name})")
            except OSError:  # the lock file's note for other processes (a full disk refuses it)
                pass
            self.progress(f"recording run {self.run_id} ({self.name})")
            self._drain_first()

            deadline = time.monotonic() + opts.duration if opts.duration else None
            last_alive_check = last_background = 0.0
            while self._not_run is None:
                if self._failure is None:
                    self._drain_or_fail(probe)
                if self._failure is not None and opts.scope != "command":
                    break   # no command to wait for: the recording is over
                if self._child_pid is not None and self._exit_code is None:
                    pid, st = os.waitpid(self._child_pid, os.WNOHANG)
                    if pid:
                        self._exit_code = wait_status_to_code(st)
                        break
                if opts.scope == "cgroup" and time.monotonic() - last_alive_check > 0.2:
                    last_alive_check = time.monotonic()
                    if not os.path.isdir(opts.cgroup):
                        break   # the container is gone: the recording is complete
                if opts.scope == "pid" and time.monotonic() - last_alive_check > 0.2:
                    last_alive_check = time.monotonic()
                    # the kernel drops a process from the tracked map when its last thread exits
                    # (zombies included), so an empty map means the whole tree is gone
                    # a process that was already a zombie when attached never exits again: prune those
                    tracked = probe.tracked_pids()
                    for pid in tracked:
                        if not procfs.alive(pid):
                            probe.untrack(pid)
                    if not any(procfs.alive(p) for p in tracked):
                        break
                if self._stop_reason and self._child_pid is None:
                    break
                if self._leave_running:
                    time.sleep(0.05)   # it may be on its way out after all (two quick Ctrl-Cs)
                    pid, st = os.waitpid(self._child_pid, os.WNOHANG)
                    if pid:
                        self._exit_code = wait_status_to_code(st)
                    break   # else it keeps running, no longer recorded
                if (self._first_interrupt and not self._waiting_told
                        and time.monotonic() - self._first_interrupt >= STILL_RUNNING_SECONDS):
                    self._waiting_told = True
                    again = "Ctrl-C" if self._stop_signal == signal.SIGINT else f"{signal.Signals(self._stop_signal).name}"
                    self.notice(f"waiting for {self.waiting_for()} to exit; "
                                f"{again} again to stop recording and leave it running")
                if (self._failure is not None and not self._failure_told
                        and time.monotonic() - self._failure.noticed >= FAILURE_NOTICE_SECONDS):
                    self._failure_told = True
                    self._gone_after_all()
                    self.notice(f"recording failed at +{self._failure.at_ns / 1e9:.1f}s: {self._failure.reason}; "
                                f"waiting for {self.waiting_for()} to exit (no longer recorded)")
                if self._writer.shed and not self._shed_told:
                    self._shed_told = True
                    self.notice(f"the spool reached --max-spool ({self.opts.max_spool / 2**30:.1f} GiB) ahead of the "
                                "store: syscall and scheduler records are dropped (counted) until it catches up; "
                                "state facts are kept")
                if deadline and time.monotonic() >= deadline:
                    break
                if time.monotonic() - last_background > BACKGROUND_SWEEP_SECONDS:
                    last_background = time.monotonic()
                    self._background.lower()   # threads the store engine made since
                time.sleep(BUSY_POLL_SECONDS if self._busy else POLL_SECONDS)
            # the last records of the exiting tree are already in the ring: take them all
            if self._failure is None:
                time.sleep(0.02)
                self._drain_or_fail(probe)
                self._drain_or_fail(probe, flush_io=True)
            status = "failed" if self._not_run is not None else self._stop_reason or "complete"
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            for fd in (gate_w, err_r):
                if fd is not None:
                    os.close(fd)
            try:
                try:
                    if self._failure is None and self._writer is not None:
                        self._drain_or_fail(probe)
                finally:
                    end_ns = time.monotonic_ns()
                    self._drain_normal()   # before close: its helper process must not inherit the priority
                    probe.close()   # hooks off now: nobody pays for them while the store catches up
                    probe = None
                try:
                    if self._writer is not None:
                        self._close_writer(None)  # everything spooled reaches the store before the run row
                finally:
                    if self.indexer is not None:
                        self.indexer.stop()
                caught_up_ns = time.monotonic_ns() - end_ns
                status = self._finish_row(status, start_ns, end_ns, wall_offset)
                if self._spool is not None:
                    self._spool.remove()   # in the store now (or the run says it failed)
            finally:
                if probe is not None:
                    probe.close()
                self._release_reserve()
                try:
                    self.store.set_purpose("idle")
                except OSError:
                    pass
        kept = 0 if self._failure is not None and self._failure.store_gone or self._writer is None \
            else self._writer.written
        result = RunResult(self.run_id, self.name, status, self._exit_code, kept, self._lost_seen,
                           start_ns, end_ns, extra={"scope": opts.scope, "stop_reason": self._stop_reason,
                                                   "stop_signal": self._stop_signal, "caught_up_ns": caught_up_ns,
                                                   "identity": self._identity},
                           status_detail=self._status_detail,
                           failure=self._failure)
        if self._not_run is not None:
            self._not_run.result = result
            raise self._not_run
        return result
