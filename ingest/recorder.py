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
from osrewind.errors import CommandNotRun, UsageError
from osrewind.ingest import decode
from osrewind.ingest.redact import Redactor
from osrewind.ingest.store import Store
from osrewind.ingest.writer import EventWriter
from osrewind.probes import procfs
from osrewind.probes.loader import Probe, ProbeOptions
from osrewind.text import safe

POLL_SECONDS = 0.01
IO_FLUSH_SECONDS = 0.1
# after a first Ctrl-C, a command that has not exited within this long is told about (notice)
STILL_RUNNING_SECONDS = 0.3
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RecordOptions:
    scope: str = "command"              # command | pid | system
    command: Sequence[str] = ()
    pids: Sequence[int] = ()
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


class Indexer(Protocol):
    """Derived data built during a recording, behind the writer."""

    def start(self, run_id: uuid.UUID) -> None:
        """The run row is written; the baseline and facts follow through the writer."""

    def inserted(self, upto_ns: int) -> None:
        """Every fact stamped before ``upto_ns`` is in the store (the writer's thread: return at once)."""

    def stop(self) -> None:
        """The last fact is in the store: stop working (the caller finishes the rest)."""


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
        self._first_interrupt = 0.0      # when the first Ctrl-C came (monotonic), 0 if none
        self._waiting_told = False
        self._leave_running = False      # stop recording now, the command keeps running
        self._hangup = False
        self._not_run: CommandNotRun | None = None
        self._lost_seen = 0
        self._io_flushed = 0.0
        self._writer: EventWriter | None = None
        self._child_pid: int | None = None
        self._exit_code: int | None = None

    def _default_name(self) -> str:
        if self.opts.scope == "command" and self.opts.command:
            return os.path.basename(self.opts.command[0])
        if self.opts.scope == "pid":
            return "pid-" + "-".join(str(p) for p in self.opts.pids)
        return "system"

    # ------------------------------------------------------------------ run row

    def _run_row(self, status: str, start_ns: int, end_ns: int, wall_offset: int) -> None:
        host, boot_id, kernel = host_identity()
        cmd = [self.redact(a) for a in self.opts.command] if self.opts.scope == "command" else []
        if self.opts.scope == "pid":
            cmd = [f"--pid {p}" for p in self.opts.pids]
        cwd = self.redact(self.opts.cwd or os.getcwd())
        self.store.insert_rows(
            "runs",
            [[self.run_id, self.name, host, boot_id, kernel, cmd, cwd, self.opts.scope,
              self._child_pid or (self.opts.pids[0] if self.opts.pids else 0), start_ns, end_ns, wall_offset,
              self._writer.written if self._writer else 0, self._lost_seen, self._exit_code, status, __version__, time.time_ns()]],
            ["run_id", "name", "host", "boot_id", "kernel", "command", "cwd", "scope", "root_pid", "start_ns",
             "end_ns", "wall_offset_ns", "events", "lost", "exit_code", "status", "version", "updated_ns"],
        )

    # ------------------------------------------------------------------ baseline

    def _baseline(self, pids: set[int] | None) -> None:
        assert self._writer is not None
        ts = time.monotonic_ns()
        procs, fds = procfs.snapshot(pids)
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
        ev = probe.drain()
        if len(ev):
            self._writer.put(ev, taken)
        if probe.opts.aggregate_io and (flush_io or time.monotonic() - self._io_flushed >= IO_FLUSH_SECONDS):
            self._io_flushed = time.monotonic()
            quiet = probe.io_sweep(None if flush_io else 150_000_000)
            if quiet:
                self._writer.put(decode.io_records(quiet, time.monotonic_ns()), taken)
        lost = probe.lost()
        if lost > self._lost_seen:
            self._writer.lost(time.monotonic_ns(), lost - self._lost_seen)
            self._lost_seen = lost

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
        if not self._command_running():
            return
        if signum == signal.SIGHUP and self._hangup:
            return   # one hang-up can arrive twice (from the kernel and from the shell): it is one request
        self._hangup |= signum == signal.SIGHUP
        self._stop_requests += 1
        if self._stop_requests > 1:
            self._leave_running = True
            return
        if signum == signal.SIGINT:
            self._first_interrupt = time.monotonic()
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

        self.store.ensure_schema()
        probe = Probe(ProbeOptions(system_wide=opts.scope == "system", ringbuf_pages=opts.ringbuf_pages,
                                   sched=opts.sched, syscalls=opts.syscalls, aggregate_io=opts.aggregate_io))
        # a signal osrewind's parent had ignored (SIGHUP under nohup, SIGINT in a background job)
        # stays ignored: it was not meant for this process
        old_handlers = ({s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS
                         if s not in INHERITED_SIGNALS_IGNORED} if opts.handle_signals else {})
        start_ns = time.monotonic_ns()
        wall_offset = time.time_ns() - time.monotonic_ns()
        status = "failed"
        gate_w = err_r = None
        self._writer = EventWriter(self.store, self.run_id,
                                   lambda n: self.progress(f"{n} events, {self._lost_seen} lost"),
                                   on_insert=self.indexer.inserted if self.indexer is not None else None,
                                   redact=self.redact)
        try:
            self._run_row("recording", start_ns, 0, wall_offset)
            if self.indexer is not None:
                try:
                    self.indexer.start(self.run_id)
                except Exception as exc:  # noqa: BLE001 - derived data: the run records without it
                    self.progress(f"live indexing off ({exc})")
                    self.indexer = None
            # the run starts now: the first insert above paid the store's one-time warm-up
            start_ns = time.monotonic_ns()
            wall_offset = time.time_ns() - time.monotonic_ns()
            if opts.scope == "command":
                self._child_pid, gate_w, err_r = self._spawn_gated()
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
            else:
                self._baseline(None)
            self.store.set_purpose(f"recording run {self.run_id} ({self.name})")
            self.progress(f"recording run {self.run_id} ({self.name})")

            deadline = time.monotonic() + opts.duration if opts.duration else None
            last_alive_check = 0.0
            while self._not_run is None:
                self._drain(probe)
                if self._child_pid is not None and self._exit_code is None:
                    pid, st = os.waitpid(self._child_pid, os.WNOHANG)
                    if pid:
                        self._exit_code = wait_status_to_code(st)
                        break
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
                    self.notice(f"waiting for {self.waiting_for()} to exit; "
                                "Ctrl-C again to stop recording and leave it running")
                if deadline and time.monotonic() >= deadline:
                    break
                time.sleep(POLL_SECONDS)
            # the last records of the exiting tree are already in the ring: take them all
            time.sleep(0.02)
            self._drain(probe)
            self._drain(probe, flush_io=True)
            status = "failed" if self._not_run is not None else self._stop_reason or "complete"
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            for fd in (gate_w, err_r):
                if fd is not None:
                    os.close(fd)
            try:
                try:
                    self._drain(probe)
                finally:
                    try:
                        self._writer.close()  # everything drained reaches the store before the run row
                    finally:
                        if self.indexer is not None:
                            self.indexer.stop()
                end_ns = time.monotonic_ns()
                self._run_row(status, start_ns, end_ns, wall_offset)
            finally:
                probe.close()
                self.store.set_purpose("idle")
        result = RunResult(self.run_id, self.name, status, self._exit_code, self._writer.written, self._lost_seen,
                           start_ns, end_ns)
        if self._not_run is not None:
            self._not_run.result = result
            raise self._not_run
        return result
