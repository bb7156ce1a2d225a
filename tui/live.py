"""Record a command and watch it live: the recorder runs on a thread of this process (the embedded
store admits one process), the TUI reads the same store as the run grows."""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time

from osrewind.errors import OsrewindError
from osrewind.ingest.recorder import RecordOptions, failure_line
from osrewind.queries.recording import Session
from osrewind.queries.runs import RunInfo, resolve_run


class LiveSession:
    def __init__(self, store, opts: RecordOptions) -> None:
        self.store = store
        if opts.output is None:
            opts.output = tempfile.NamedTemporaryFile(prefix="osrewind-live-", suffix=".log", delete=False).name
        opts.handle_signals = False
        self.opts = opts
        self.session = Session(store, opts, self._progress)   # recorded and indexed as `osrewind record` does
        self.recorder = self.session.recorder
        self.run_id = self.session.run_id
        self.started = threading.Event()
        self.finished = False
        self.indexed = False
        self.result = None
        self.error: BaseException | None = None
        self.progress = ""
        self._info: RunInfo | None = None
        self._final = False
        self._thread = threading.Thread(target=self._run, name="osrewind-live-recorder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wait_started(self, timeout: float = 60) -> None:
        """Until the run is in the store (or the recording failed: its error is raised here)."""
        deadline = time.monotonic() + timeout
        while not self.started.wait(0.05):
            if self.error is not None:
                raise self.error
            if self.finished or time.monotonic() > deadline:
                break
        if self.error is not None and not self.started.is_set():
            raise self.error

    def _progress(self, msg: str) -> None:
        self.progress = msg
        if msg.startswith("recording run"):
            self.started.set()

    def _run(self) -> None:
        try:
            self.result = self.recorder.run()
        except BaseException as exc:  # noqa: BLE001 - shown by the TUI, raised by wait_started
            self.error = exc
        finally:
            self.finished = True
            self.started.set()
        if self.result is not None:
            try:
                self.session.index(self.result)   # the tail and the history
            except OsrewindError as exc:
                self.error = exc
        if self.result is not None:
            self.indexed = True   # a store that failed takes no keyframes ('osrewind reindex' later)

    def stop(self) -> None:
        """The first call stops as ``Recorder.stop()`` does: the command gets SIGTERM and the recording
        ends when it exits. Again while the command still runs: stop recording now, leave it running."""
        if not self.finished:
            self.recorder.stop()

    def waiting_for(self) -> str | None:
        """``CMD (pid N)`` while a stop was asked for and the command has not exited; else None."""
        return self.recorder.waiting_for() if not self.finished and self.recorder.stopping else None

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def run_info(self) -> RunInfo | None:
        """The run as it is now: while recording its end is now."""
        if not self.started.is_set():
            return None
        if self.finished and self.indexed:
            if not self._final:
                try:
                    self._info = resolve_run(self.store, self.run_id)   # the run row the recorder ended with
                except OsrewindError:   # the store failed under the recording (e.g. it was deleted)
                    if self._info is not None and self.result is not None:
                        self._info = dataclasses.replace(self._info, status=self.result.status,
                                                         exit_code=self.result.exit_code)
                self._final = True
            return self._info
        if self._info is None:
            try:
                self._info = resolve_run(self.store, self.run_id)
            except OsrewindError:
                return None
        return dataclasses.replace(self._info, status="recording", end_ns=time.monotonic_ns(),
                                   events=self.recorder.events_written)

    def status_text(self) -> str:
        if self.error is not None:
            return f"recording failed: {self.error}"
        if self.result is not None and self.result.failure is not None:
            return failure_line(self.result)
        if self.result is not None:
            r = self.result
            code = "" if r.exit_code is None else f", exit {r.exit_code}"
            tail = "" if self.indexed else ", indexing…"
            return f"{r.status}: {r.events} events, {r.lost} lost{code}{tail}"
        return f"recording… {self.progress}" if not self.progress.startswith("recording run") else "recording…"
