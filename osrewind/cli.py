"""The ``osrewind`` command: a thin click layer over the Python API (``osrewind.queries.api.Recording``,
``osrewind.queries.recording.Session`` for recording), with its text output in ``osrewind.render``.
Shared options (``--db``, ``--json``, ``--at``) are declared once, below.

Every command has ``--help`` with an example and ``--json``. User errors are ``OsrewindError``s and
print as one line, ``osrewind: error: ...``, with a non-zero exit; never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

from osrewind import __version__, render
from osrewind.errors import OsrewindError, StoreError, UsageError
from osrewind.queries.timespec import format_duration
from osrewind.text import safe

PID = click.IntRange(0, 4_194_304)  # PID_MAX_LIMIT: a larger number would wrap to another pid in the store
DB_HELP = ("Store: a directory for the embedded store, or http(s)://user:pass@host:8123/db for a "
           "ClickHouse server. Default: $OSREWIND_DB, else ~/.local/share/osrewind/store.")


def _finite(value: float, name: str) -> float:
    import math

    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds", param_hint=name)
    return value


def _store(db: str | None, purpose: str, write: bool = False, recover_spools: bool = True):
    """The store, as each command needs it: reading never creates or writes one."""
    from osrewind.ingest.store import Store

    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx is not None else None
    timeout = (root or {}).get("timeout")
    store = Store(db, purpose=purpose, mode="write" if write else "read", timeout=timeout)
    try:
        if recover_spools:
            _recover_spools(store)
    except BaseException:
        store.close()
        raise
    return store


def _recover_spools(store, strict: bool = False) -> list:
    """Runs whose recorder died (SIGKILL, power loss) left their spool: ingest it now, whenever a store
    is opened that this process may write (``osrewind.ingest.recover``). A store that cannot take it
    is warned about and read as it is (``strict``: the error is raised instead)."""
    from osrewind.ingest import recover

    orphans = recover.pending(store)
    if not orphans:
        return []
    if not recover.may_recover(store):
        if not strict:
            click.echo(f"osrewind: warning: {len(orphans)} run(s) in this store have records spooled by a "
                       "recorder that died; open it as its owner to recover them", err=True)
            return []
        raise StoreError(f"store {store.location} is read-only here: cannot recover its spooled runs")
    done = []
    for o in orphans:
        try:
            r = recover.recover(store, o, lambda msg: click.echo(f"osrewind: {safe(msg)}", err=True))
        except OsrewindError as exc:
            if strict:
                raise
            click.echo(f"osrewind: warning: {exc}; 'osrewind recover' retries", err=True)
            continue
        if r is None:
            continue
        try:
            _index(store, r.run_id, True)
        except OsrewindError:
            pass   # derived data: 'osrewind reindex' builds it
        click.echo(f"osrewind: run {r.run_id[:8]} '{safe(r.name)}' recovered: {r.from_spool} events from its "
                   f"spool, {r.events} in all, {r.lost} lost", err=True)
        done.append(r)
    return done


def echo(text: str = "", err: bool = False, nl: bool = True) -> None:
    """Every line a person reads goes through here: recorded text (argv, paths, names) is shown with
    its control characters and non-UTF-8 bytes escaped (osrewind.text.safe), so it can never act on
    the reader's terminal. JSON output does not: it is exact (see README, "Bytes, not text")."""
    click.echo(safe(text), err=err, nl=nl)


def _emit_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _echo_lines(lines) -> None:
    for line in lines:
        echo(line)


# ---------------------------------------------------------------------------- shared options
# Every command reads recordings through the one API (osrewind.queries.api.Recording), opened by
# _recording; these options mean the same everywhere.

AT_HELP = ("Instant: +1.25s / +300ms from start, -100ms from end, start, end, monotonic ns, "
           "a wall time (2026-11-22T16:31:02.5, 16:31:02) or a test's start or end "
           "(test:NODEID, test:NODEID:end).")


def _set_db(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_root().obj["db"] = value


def db_option(f):
    """``--db`` after the command too (``osrewind state last --db DIR``), as before it."""
    return click.option("--db", default=None, metavar="PATH|URL", expose_value=False, is_eager=True,
                        callback=_set_db, help="The store (as 'osrewind --db'; see 'osrewind --help').")(f)


def json_option(what: str):
    return click.option("--json", "as_json", is_flag=True, help=what)


def at_option(default: str | None = "end", what: str = AT_HELP):
    return click.option("--at", "at", default=default, show_default=default is not None, metavar="TIME", help=what)


def test_option(what: str):
    return click.option("--test", "test", default=None, metavar="NODEID",
                        help=f"A test of a recorded pytest session (a node id, or a unique tail of one: "
                             f"see 'osrewind tests RUN'): {what}")


def run_argument(f):
    return click.argument("run")(f)


@contextlib.contextmanager
def _recording(obj: dict, run: str, purpose: str):
    """The run RUN of the store, through the API (the store as every reading command opens it); RUN
    may be a run file (.osr) instead."""
    from osrewind.queries.api import Recording

    store, (name,) = _open_runs(obj, [run], purpose)
    with store:
        yield Recording.of(store, name)


def _open_runs(obj: dict, runs: list[str], purpose: str):
    """The store to read ``runs`` from, and how to name them in it: the --db store, or, when they are
    run files (.osr), a store of their own (imported once, kept in osrewind's cache, indexed)."""
    from osrewind.ingest import runfile
    from osrewind.ingest.store import Store

    files = [r for r in runs if runfile.is_run_file(r)]
    if not files:
        return _store(obj["db"], purpose), runs
    if len(files) != len(runs):
        raise UsageError("give runs of the store or run files (.osr), not both ('osrewind import FILE' brings a "
                         "file's run into the store)")
    ids = [runfile.manifest(f).run_id for f in files]

    def prepare(where: str) -> None:
        from osrewind.queries.api import Recording

        with Store(where, purpose=f"opening {files[0]}", mode="write") as store:
            store.ensure_schema()
            done: set[str] = set()
            for f, rid in zip(files, ids, strict=True):
                if rid not in done:
                    runfile.import_(store, f)
                    Recording.of(store, rid).reindex()
                    done.add(rid)

    return Store(runfile.opened(files, prepare), purpose=purpose, mode="read"), ids


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="osrewind")
@click.option("--db", envvar="OSREWIND_DB", default=None, metavar="PATH|URL", help=DB_HELP)
@click.option("--timeout", envvar="OSREWIND_TIMEOUT", default=60.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(0.1, 86400), callback=lambda _c, _p, v: _finite(v, "--timeout"),
              help="Give up on a ClickHouse server that does not answer within this.")
@click.pass_context
def cli(ctx: click.Context, db: str | None, timeout: float) -> None:
    """osrewind: record what a Linux machine did, then rewind it to any instant.

    \b
    Examples:
      sudo osrewind record -- make -C ~/project     record a command and its descendants
      osrewind runs                                 list recordings
      osrewind state last --at +1.25s               processes, fds and cwd at that instant
    """
    ctx.obj = {"db": db, "timeout": timeout}


# ---------------------------------------------------------------------------- record


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", "-n", default="", help="Name for the run (default: the command's basename).")
@click.option("--system", is_flag=True, help="Record every process on the machine (until Ctrl-C or --duration).")
@click.option("--pid", "pids", type=int, multiple=True, help="Record this existing process and its descendants.")
@click.option("--cgroup", default=None, metavar="DIR",
              help="Record the processes in this cgroup directory (a container's) and any moved into it "
                   "or the cgroups beneath it later (until Ctrl-C, --duration, or the cgroup is removed).")
@click.option("--duration", default=None, metavar="TIME",
              help="Stop after this long (e.g. 10s, 500ms; more than 0: leave it out for no limit).")
@click.option("--redact", "redact", multiple=True, metavar="PATTERN",
              help="Python regex, repeatable: every match in argv, paths (socket addresses too), comm, exe "
                   "and cwd is stored as *** (the run's command and cwd too). Applied before anything is "
                   "stored.")
@click.option("--ring-mb", default=64, show_default=True, type=click.IntRange(1, 2048),
              help="Kernel ring buffer size (rounded up to a power of two).")
@click.option("--max-spool", default="4G", show_default=True, metavar="SIZE",
              help="Records are written to the run's spool (beside the store) before the store takes them; "
                   "past this many bytes not yet in the store, syscall and scheduler records are dropped "
                   "(counted) until it catches up, state facts never (e.g. 512M, 20G).")
@click.option("--no-sched", is_flag=True, help="Leave out the scheduler (context switches, wakeups): for long runs.")
@click.option("--no-syscalls", is_flag=True, help="Leave out the every-syscall stream (fd and process facts stay).")
@click.option("--aggregate-io", is_flag=True,
              help="Sum successful read/write/send/recv calls per process and fd (flushed every 0.1 s) "
                   "instead of a record per call: for I/O-heavy programs that would otherwise lose events.")
@click.option("--print-bpf", is_flag=True, help="Print the BPF C program as it would be compiled, then exit.")
@json_option("Print the run summary as one JSON line, the last line on stdout, on a line of its own: "
                   "after a newline, unless stdout is a regular file whose last byte already is one (on a pipe "
                   "or terminal osrewind cannot see what the command wrote, so the newline always comes).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@db_option
@click.pass_obj
def record(obj: dict, command: tuple[str, ...], name: str, system: bool, pids: tuple[int, ...],
           cgroup: str | None, duration: str | None, redact: tuple[str, ...], ring_mb: int, max_spool: str, no_sched: bool,
           no_syscalls: bool, aggregate_io: bool, print_bpf: bool, as_json: bool, quiet: bool) -> None:
    """Record COMMAND and all its descendants (or --pid / --cgroup / --system) into the store.

    Exits with the command's exit code (126 or 127, as a shell, when it cannot be run). Ctrl-C stops
    the recording when the command exits and keeps everything recorded up to that moment (the run is
    marked 'interrupted'); if the command ignores it, Ctrl-C again stops recording at once and leaves
    it running (exit 130). SIGTERM and SIGHUP end it the same way (and are passed on to the command).
    If the store fails while recording (a full disk, the store deleted), osrewind stops recording,
    still waits for the command and exits with its code; one line says when and why, and the run is
    'failed' with the reason and everything up to then kept (--pid / --system: exit 4).
    The command gets the signal dispositions, signal mask and umask osrewind was started with, and its
    scheduling (osrewind's own work runs at nice 19 while the command runs, on the CPU it leaves
    over). Environment variables are not recorded; argv, paths, comm, cwd and socket addresses are
    (--redact hides parts). Needs root.

    \b
    Examples:
      sudo osrewind record -- make -C ~/project
      sudo osrewind record --name build-42 -- ./build.sh --fast
      sudo osrewind record --pid 1234 --duration 30s
      sudo osrewind record --cgroup /sys/fs/cgroup/system.slice/docker-3f2a.scope --duration 1m
      sudo osrewind record --system --duration 5s
      sudo osrewind record --redact 'pass(word)?=\\S+' -- ./deploy.sh password=hunter2
      osrewind record --print-bpf -- true
    """
    from osrewind.errors import CommandNotRun
    from osrewind.ingest.recorder import RecordOptions, failure_line
    from osrewind.ingest.redact import Redactor
    from osrewind.probes.loader import ProbeOptions, check_environment, final_source
    from osrewind.queries.recording import Session
    from osrewind.queries.timespec import parse_duration

    scopes = sum([bool(command), system, bool(pids), cgroup is not None])
    pages = 1
    while pages * 4096 < ring_mb * 1024 * 1024:
        pages *= 2
    if print_bpf:
        click.echo(final_source(ProbeOptions(system_wide=system, ringbuf_pages=pages, sched=not no_sched,
                                             cgroup=(0, cgroup) if cgroup is not None else None,
                                             syscalls=not no_syscalls, aggregate_io=aggregate_io)))
        return
    if scopes == 0:
        raise UsageError("nothing to record: give a command after --, or --pid PID, --cgroup DIR or --system")
    if scopes > 1:
        raise UsageError("choose one of: a command, --pid, --cgroup, --system")
    dur = parse_duration(duration) / 1e9 if duration is not None else None
    if dur is not None and not dur > 0:
        raise UsageError(f"--duration {duration}: must be more than 0 (leave it out to record until the end)")
    Redactor(redact)  # a bad pattern is bad input: say so before anything starts
    scope = "system" if system else "pid" if pids else "cgroup" if cgroup is not None else "command"
    opts = RecordOptions(scope=scope, command=list(command), pids=list(pids), cgroup=cgroup or "", name=name,
                         duration=dur,
                         ringbuf_pages=pages, sched=not no_sched, syscalls=not no_syscalls,
                         aggregate_io=aggregate_io, redact=list(redact), max_spool=_parse_size(max_spool, "--max-spool"))

    def progress(msg: str) -> None:
        if not quiet and (msg.startswith("recording") or sys.stderr.isatty()):
            end = "\n" if msg.startswith("recording") else "\r"
            try:
                click.echo(f"osrewind: {safe(msg)}", err=True, nl=False)
                click.echo(end, err=True, nl=False)
            except OSError:  # stderr gone (a closed terminal): keep recording
                pass

    def notice(msg: str) -> None:  # what the user must hear, --quiet or not
        try:
            click.echo(f"osrewind: {safe(msg)}", err=True)
        except OSError:
            pass

    def at_line_start() -> bool:
        """Whether stdout is known to be at the start of a line: only a regular file can tell (its
        last byte written); a pipe or terminal cannot, so no."""
        import fcntl
        import stat

        sys.stdout.flush()
        try:
            st = os.fstat(1)
            if not stat.S_ISREG(st.st_mode):
                return False
            end = st.st_size if fcntl.fcntl(1, fcntl.F_GETFL) & os.O_APPEND else os.lseek(1, 0, os.SEEK_CUR)
            if end <= 0:
                return True
            try:
                last = os.pread(1, 1, end - 1)
            except OSError:  # opened write-only: read it through another open file
                with open("/proc/self/fd/1", "rb") as f:
                    f.seek(end - 1)
                    last = f.read(1)
            return last == b"\n"
        except OSError:
            return False

    def emit_summary(result) -> None:
        summary = {"run_id": str(result.run_id), "name": result.name, "status": result.status,
                   "status_detail": result.status_detail, "identity": result.extra.get("identity", ""),
                   "exit_code": result.exit_code, "events": result.events, "lost": result.lost,
                   "duration_s": (result.end_ns - result.start_ns) / 1e9,
                   # after the recording ended: until every event was in the store, then indexing it
                   "caught_up_s": result.extra.get("caught_up_ns", 0) / 1e9, "indexed_s": indexed_s}
        # one line, last on stdout: the command's own output comes before it
        click.echo(("" if at_line_start() else "\n") + json.dumps(summary))

    indexed_s = 0.0
    check_environment()  # before touching the store: not root, no BCC, no headers -> one line
    with _store(obj["db"], "recording", write=True) as store:
        session = Session(store, opts, progress, notice)
        try:
            result = session.run()
        except CommandNotRun as exc:  # one line (main), the shell's 126/127; a failed run's summary too
            if as_json and exc.result is not None:
                emit_summary(exc.result)
            raise
        failure = result.failure
        _index_session(session, result, quiet)
        indexed_s = session.indexed_s
    if as_json:
        emit_summary(result)
    if failure is not None:  # one line, --quiet or not; the exit code stays the command's
        notice(failure_line(result))
        if scope != "command":
            sys.exit(StoreError.exit_code)
        if result.exit_code is None and result.extra.get("stop_reason"):
            sys.exit(_stopped_code(result))
        sys.exit(result.exit_code or 0)
    if not quiet:
        lost = f", {result.lost} LOST" if result.lost else ", 0 lost"
        code = "" if result.exit_code is None else f", exit {result.exit_code}"
        try:
            click.echo(f"osrewind: run {str(result.run_id)[:8]} '{safe(result.name)}' {result.status}: "
                       f"{result.events} events{lost}{code}, {format_duration(result.end_ns - result.start_ns)}",
                       err=True)
        except OSError:  # stderr gone (a closed terminal): the run is saved, the exit code stands
            pass
    if result.status == "interrupted" and result.exit_code is None:
        sys.exit(_stopped_code(result))
    sys.exit(result.exit_code or 0)


def _parse_size(text: str, option: str) -> int:
    """'512M', '4G', '1.5GiB', '1000000' -> bytes (K/M/G/T are powers of 1024)."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"{option} {text!r}: give a size such as 512M, 4G or 1073741824")
    value = float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " ")
    if not 1 << 20 <= value < 1 << 60:
        raise UsageError(f"{option} {text!r}: give at least 1M")
    return int(value)


def _stopped_code(result) -> int:
    """Recording stopped by a signal with the command left running: 128 + that signal, as a shell
    reports a process the signal ended (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + (result.extra.get("stop_signal") or 2)


# ---------------------------------------------------------------------------- runs


@cli.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1), help="Newest N runs.")
@click.option("--host", default="", metavar="HOST",
              help="Only the runs recorded on HOST (a store several hosts record into: docs/cluster.md).")
@json_option("JSON array of runs.")
@db_option
@click.pass_obj
def runs(obj: dict, limit: int, host: str, as_json: bool) -> None:
    """List recorded runs, newest first.

    \b
    Columns: id, name, start (local time), duration, events, lost events, exit code, status, command.
    Status: complete; interrupted (Ctrl-C or SIGTERM, data kept); failed (an error stopped it,
    data kept; why and when on the line below it, e.g. 'failed: disk full (ENOSPC) at +12.3s');
    recovered (the recorder was killed; what its spool held was ingested afterwards, see 'recover');
    aborted (the recorder died and left no spool: data up to its last batch kept); recording.
    Example:
      osrewind runs --limit 5
    """
    from osrewind.ingest.store import StoreMissing
    from osrewind.queries.runs import list_runs

    try:
        with _store(obj["db"], "listing runs") as store:
            items = list_runs(store, limit, host)
    except StoreMissing:
        if obj["db"] is not None:  # a path the user typed: a typo must not look like an empty store
            raise
        items = []
    if as_json:
        _emit_json([r.to_json() for r in items])
        return
    if not items:
        echo("no runs yet: record one with 'sudo osrewind record -- CMD'", err=True)
        return
    _echo_lines(render.runs(items))


# ---------------------------------------------------------------------------- store


@cli.group("store")
def store_group() -> None:
    """The store itself: create its tables (on one node or laid out over a ClickHouse cluster).

    \b
    Example:
      osrewind store init --db http://ch.example:8123 --cluster osrewind
    """


@store_group.command("init")
@click.option("--cluster", default=None, metavar="NAME",
              help="Lay the tables out over this cluster of the server (--db http(s)://...): a local table on "
                   "every node, a Distributed table over them, rows sharded by run id (docs/cluster.md).")
@click.option("--replicated/--no-replicated", default=True, show_default=True,
              help="With --cluster: Replicated* engines (replicas kept in step by ClickHouse Keeper), or plain "
                   "ones (shards without replicas).")
@click.option("--database", default=None, metavar="DB",
              help="With --cluster: the database to create the tables in (default: the connection's).")
@click.option("--print", "print_only", is_flag=True, help="Print the DDL instead of running it.")
@json_option("What was created (or the DDL, with --print) as JSON.")
@db_option
@click.pass_obj
def store_init(obj: dict, cluster: str | None, replicated: bool, database: str | None, print_only: bool,
               as_json: bool) -> None:
    """Create the store's tables: the recorded facts, the index and its intervals. Every command
    creates them as it needs them; this does it up front, and on a cluster lays them out.

    \b
    Examples:
      osrewind store init --db /var/lib/osrewind
      osrewind store init --db https://ch.example:8443 --cluster osrewind
      osrewind store init --cluster osrewind --database osrewind --print
    """
    from osrewind.ingest import cluster as cluster_mod
    from osrewind.ingest import schema
    from osrewind.ingest.store import is_server_url
    from osrewind.queries import keyframes

    tables = {**schema.TABLES, **keyframes.derived_ddl()}

    def show(statements: list[str]) -> None:
        if as_json:
            _emit_json({"cluster": cluster, "statements": statements})
            return
        for st in statements:
            click.echo(st + ";")

    if cluster is None:
        if print_only:   # as the store of --db takes them: an embedded one, or a server
            on_server = schema.on_server if obj["db"] and is_server_url(obj["db"]) else (lambda ddl: ddl)
            show([on_server(ddl).strip() for ddl in tables.values()])
            return
        with _store(obj["db"], "creating tables", write=True) as store:
            store.ensure_schema()
            keyframes.ensure_table(store)
        if as_json:
            _emit_json({"store": store.location, "cluster": None, "tables": sorted(tables)})
            return
        echo(f"store {store.location}: tables ready")
        return
    try:
        if print_only:
            show(cluster_mod.cluster_ddl(tables, cluster, database or "osrewind", replicated,
                                          schema.ADDED_COLUMNS))
            return
        if obj["db"] is None or "://" not in obj["db"]:
            raise UsageError("--cluster lays the tables out on a ClickHouse server: give --db http(s)://... "
                             "(or --print for the DDL)")
        with _store(obj["db"], "creating tables", write=True) as store:
            db_name = database or store.query("SELECT currentDatabase()")[0][0]
            statements = cluster_mod.cluster_ddl(tables, cluster, db_name, replicated, schema.ADDED_COLUMNS)
            for st in statements:
                store.client.command(st)
    except cluster_mod.ClusterError as exc:
        raise UsageError(str(exc)) from None
    if as_json:
        _emit_json({"store": store.location, "cluster": cluster, "tables": sorted(tables)})
        return
    echo(f"cluster {cluster}: {len(tables)} tables laid out (local and Distributed)")


# ---------------------------------------------------------------------------- state


@cli.command()
@run_argument
@at_option(None, AT_HELP + " Default: end.")
@test_option("the state when it ended (or, for a test whose process died, just before).")
@click.option("--pid", "pids", type=PID, multiple=True, help="Only these processes (and their fds).")
@click.option("--no-fds", is_flag=True, help="Processes only.")
@json_option("Machine-readable state.")
@db_option
@click.pass_obj
def state(obj: dict, run: str, at: str | None, test: str | None, pids: tuple[int, ...], no_fds: bool,
          as_json: bool) -> None:
    """Rewind RUN to an instant: the process tree, each process's argv, cwd and open fds.

    RUN is a run id, a unique id prefix, a run name (newest of that name) or 'last'.

    \b
    Examples:
      osrewind state last --at +1.25s
      osrewind state build-42 --at 16:31:02.5 --pid 4242
      osrewind state 3f2a --at +300ms --json
      osrewind state pytest-3f2a --test test_upload      where a failing test left the machine
    """
    with _recording(obj, run, "reading state") as rec:
        st = rec.state_at(at or (f"test:{rec.test(test).nodeid}:end" if test else "end"), pids, label="--at")
    if as_json:
        _emit_json(st.to_json())
        return
    _print_state(st, show_fds=not no_fds)


def _print_state(st, show_fds: bool = True) -> None:
    lines = render.state(st, show_fds)
    echo(next(lines))
    if st.run.lost:
        echo(f"warning: {st.run.lost} events were lost in this run; state may be incomplete", err=True)
    _echo_lines(lines)


# ---------------------------------------------------------------------------- reindex


def _index_progress(quiet: bool):
    def progress(n: int) -> None:
        if not quiet and sys.stderr.isatty():
            click.echo(f"osrewind: indexing {n} facts\r", err=True, nl=False)

    return progress


def _index(store, run_id: str, quiet: bool) -> int:
    """Keyframes for a run asked for (reindex, a recovered run), rebuilt from its events: derived data."""
    from osrewind.queries.api import Recording

    return Recording.of(store, run_id).reindex(_index_progress(quiet))


def _index_session(session, result, quiet: bool) -> None:
    """The tail of a recording's keyframes (``Session.index``). The run is saved either way: a failure
    is a warning, and the exit code stays the command's."""
    try:
        session.index(result, _index_progress(quiet))
    except OsrewindError as exc:
        click.echo(f"osrewind: warning: run saved, but indexing it failed ({exc}); "
                   f"'osrewind reindex {str(result.run_id)[:8]}' retries", err=True)


@cli.command()
@json_option("Print the recovered runs as JSON.")
@db_option
@click.pass_obj
def recover(obj: dict, as_json: bool) -> None:
    """Ingest what recorders that died left in their spools.

    A recording's records reach its spool (a directory beside the store) before the store. When a
    recorder is killed (SIGKILL, power loss), the records it had not inserted stay there; every
    command that opens the store recovers them, and this command does it on its own. A recovered run
    has status 'recovered' and says how many events came from the spool.

    \b
    Examples:
      sudo osrewind recover
      osrewind recover --json
    """
    with _store(obj["db"], "recovering", write=True, recover_spools=False) as store:
        done = _recover_spools(store, strict=True)
    if as_json:
        _emit_json([r.to_json() for r in done])
    elif not done:
        echo("osrewind: nothing to recover", err=True)


@cli.command()
@click.argument("run")
@json_option("Print what was built as JSON.")
@db_option
@click.pass_obj
def reindex(obj: dict, run: str, as_json: bool) -> None:
    """Rebuild RUN's keyframes (checkpoints of the full state) from its events.

    Keyframes make `state --at` read one checkpoint plus the facts since it. They are written while a
    recording runs (the tail when it ends); this rebuilds them from the events, e.g. for a run
    recorded by an older osrewind.

    \b
    Example:
      osrewind reindex last
    """
    from osrewind.queries.api import Recording

    with _store(obj["db"], "indexing", write=True) as store:
        rec = Recording.of(store, run)
        info = rec.run
        n = rec.reindex(_index_progress(False))
    if as_json:
        _emit_json({"run_id": info.run_id, "keyframes": n})
    else:
        echo(f"run {info.run_id[:8]} '{info.name}': {n} keyframes")


# ---------------------------------------------------------------------------- tree / lineage


@cli.command()
@run_argument
@at_option(None, "The tree alive at this instant instead.")
@test_option("only the processes alive during it.")
@json_option("The tree as nested JSON.")
@db_option
@click.pass_obj
def tree(obj: dict, run: str, at: str | None, test: str | None, as_json: bool) -> None:
    """The process tree of RUN over its whole life: births, what each ran, exits with exit codes and
    durations. With --at, the processes alive at that instant.

    \b
    Examples:
      osrewind tree last
      osrewind tree last --at +1.5s
      osrewind tree build-42 --json
    """
    with _recording(obj, run, "reading a process tree") as rec:
        if at is not None:
            st = rec.state_at(at, label="--at")
        elif test is not None:
            t = rec.test(test)
            roots = rec.tree(t.start_ns, t.end_ns)
        else:
            roots = rec.tree()
    if at is not None:
        if as_json:
            _emit_json(st.to_json())
        else:
            _print_state(st, show_fds=False)
        return
    if as_json:
        _emit_json({"run_id": rec.run.run_id, "processes": [r.to_json(tree=True) for r in roots]})
        return
    _echo_lines(render.tree(rec.run, roots))


@cli.command()
@run_argument
@click.argument("path")
@click.option("--depth", default=1, show_default=True, type=click.IntRange(1, 20),
              help="Follow the inputs of each producer back this many steps.")
@click.option("--all-inputs", is_flag=True, help="Keep shared libraries, locale and /proc reads among inputs.")
@json_option("The lineage as nested JSON.")
@db_option
@click.pass_obj
def lineage(obj: dict, run: str, path: str, depth: int, all_inputs: bool, as_json: bool) -> None:
    """Where PATH came from in RUN: every process that created, wrote, renamed or deleted it, in
    order, each with its exec chain up to the recorded root and the files it had read (what the
    data could have come from). PATH is absolute, or relative to the current directory.

    \b
    Examples:
      osrewind lineage last /tmp/build/app.bin
      osrewind lineage last out/copy.txt --depth 3 --json
    """
    target = os.path.normpath(os.path.join(os.getcwd(), path))
    with _recording(obj, run, "tracing lineage") as rec:
        result = rec.lineage(target, depth, all_inputs)
    if as_json:
        _emit_json(result)
        return
    if not result["events"]:
        echo(f"no process of run {rec.run.run_id[:8]} created, wrote, renamed or deleted {target}", err=True)
        return
    _echo_lines(render.lineage(result))


# ---------------------------------------------------------------------------- sql


@cli.command()
@click.argument("query", required=False)
@click.option("--param", "-p", "params", multiple=True, metavar="NAME=VALUE",
              help="A {NAME:Type} parameter of the query (repeatable).")
@at_option(None, "Answer osquery's tables (processes, process_open_files, process_open_sockets, "
                 "listening_ports) as they were at this instant of the run (--run, default: the last run).")
@click.option("--run", "run", default=None, metavar="RUN",
              help="The run of --at; without --at, osquery's tables hold this run's history only.")
@click.option("--list", "list_queries", is_flag=True, help="List the named queries and their parameters.")
@click.option("--schema", is_flag=True, help="List the tables and their columns, with what each column means.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default=None,
              help="Output: tab-separated with a header (default), CSV, or JSON objects.")
@json_option("Rows as JSON objects (--format json).")
@db_option
@click.pass_obj
def sql(obj: dict, query: str | None, params: tuple[str, ...], at: str | None, run: str | None, list_queries: bool,
        schema: bool, fmt: str | None, as_json: bool) -> None:
    """Run read-only SQL against the store: a named query from queries/sql/ or your own SELECT.

    Your own SELECT also sees osquery's tables over the recorded history: processes (pid, name,
    path, cmdline, cwd, parent, uid, start_time, threads), process_open_files (pid, fd, path),
    process_open_sockets (pid, fd, family, protocol, local_address, local_port, remote_address,
    remote_port, state) and listening_ports (pid, port, protocol, family, address), each with run_id,
    start_ns, valid_from_ns and valid_to_ns. With --at they hold the rows true at that instant;
    without it, every row of every run (a row holds from valid_from_ns until valid_to_ns).

    Store tables: runs (FINAL), events, snapshot_procs, snapshot_fds, tests (pytest --osrewind),
    keyframes, process_history (the index's processes table), file_access, process_intervals,
    fd_intervals (derived rows: the run's current generation is max(gen) in index_builds). See
    --schema. Values go in as {name:Type} parameters, never pasted into the text. One reading
    statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN); writes and INTO OUTFILE are refused.

    \b
    Examples:
      osrewind sql --at +2.5s "SELECT pid, path FROM process_open_files WHERE path LIKE '%.log'"
      osrewind sql "SELECT run_id, pid, valid_from_ns FROM listening_ports WHERE port = 8080"
      osrewind sql "SELECT DISTINCT run_id FROM process_open_files WHERE path = '/etc/shadow'"
      osrewind sql --schema
      osrewind sql runs_list -p limit=5
      osrewind sql "SELECT toString(kind) k, count() FROM events GROUP BY k ORDER BY 2 DESC" --format csv
    """
    from osrewind.queries import named, osquery, usersql

    fmt = "json" if as_json else (fmt or "table")
    if list_queries:
        if fmt == "json":
            _emit_json([{"name": n, "header": named.header(n)} for n in named.names()])
            return
        for name in named.names():
            echo(named.header(name))
        return
    if schema:
        from osrewind.ingest.schema import COLUMN_DOCS
        from osrewind.ingest.store import StoreMissing
        from osrewind.queries.keyframes import COLUMN_DOCS as INDEX_DOCS

        docs = {**COLUMN_DOCS, **INDEX_DOCS}
        try:
            with _store(obj["db"], "reading the schema") as store:
                columns = osquery.store_columns(store) if store.has_schema() else {}
        except StoreMissing:   # nothing recorded yet: the tables as osrewind declares them
            columns = {}
        if not columns:
            for table, col in docs:
                columns.setdefault(table, []).append((col, ""))
        lines = osquery.schema_lines(columns, docs)
        if fmt == "json":
            _emit_json([{"table": t, "column": c, "type": ty, "meaning": m} for t, c, ty, m in lines])
            return
        _print_rows(["table", "column", "type", "meaning"], lines, fmt)
        return
    if not query:
        raise UsageError("give a named query or a SELECT (see 'osrewind sql --list')")
    is_named = query in named.names()
    if is_named and at is not None:
        raise UsageError("--at is for your own SELECT over osquery's tables, not a named query")
    text = named.sql(query) if is_named else query
    values: dict[str, str] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"bad --param {item!r}: use NAME=VALUE")
        values[name] = value
    usersql.check_read_only(text)  # before the store is even opened
    if at is not None or run is not None:
        with _recording(obj, run or "last", "running SQL") as rec:
            cols, rows = rec.sql(text, values, at)
    else:
        with _store(obj["db"], "running SQL") as store:
            cols, rows = usersql.run(store, text, values, views=None if is_named else (None, None))
    if fmt == "json":
        _emit_json([dict(zip(cols, r, strict=True)) for r in rows])
        return
    _print_rows(cols, rows, fmt)


def _print_rows(cols: list[str], rows: list, fmt: str) -> None:
    """Rows as tab-separated text with a header line, or as CSV."""
    if fmt == "csv":
        import csv

        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow([safe(c) for c in cols])
        for r in rows:
            w.writerow([safe(render.cell(v)) for v in r])
        return
    click.echo("\t".join(safe(c) for c in cols))
    for r in rows:
        click.echo("\t".join(safe(render.cell(v)) for v in r))


# ---------------------------------------------------------------------------- diff


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@json_option("The differences as JSON.")
@db_option
@click.pass_obj
def diff(obj: dict, run_a: str, run_b: str, as_json: bool) -> None:
    """What RUN_B did differently from RUN_A, most important first, and the first divergence.

    Processes are aligned by what they ran (argv, parent, order among siblings), never by pid.
    Reported: processes only in one run, different exit codes, syscalls that failed in one run only
    (with errno and path), file operations and network endpoints only in one, large timing
    differences.

    \b
    Examples:
      osrewind diff good-build bad-build
      osrewind diff 3f2a 9c1d --json
    """
    from osrewind.queries.api import Recording

    store, (name_a, name_b) = _open_runs(obj, [run_a, run_b], "diffing runs")
    with store:
        rec, other = Recording.of(store, name_a), Recording.of(store, name_b)
        result = rec.diff(other)
    if as_json:
        _emit_json(result)
        return
    _echo_lines(render.diff(rec.run, other.run, result))


# ---------------------------------------------------------------------------- events


@cli.command()
@click.argument("run")
@click.option("--from", "t_from", default=None, metavar="TIME", help="From this instant (same forms as --at).")
@click.option("--to", "t_to", default=None, metavar="TIME", help="Up to this instant.")
@click.option("--before", default=None, metavar="TIME",
              help="Newest first, strictly before TIME: step backwards (with --limit 1: the previous event).")
@click.option("--after", default=None, metavar="TIME", help="Strictly after TIME (the next event, with --limit 1).")
@click.option("--pid", "pids", type=PID, multiple=True, help="Only events of these processes (or threads).")
@click.option("--tree", is_flag=True, help="With --pid: include every descendant.")
@click.option("--kind", "kinds", multiple=True, help="Only these kinds (open, close, fork, exec, signal_generate, ...).")
@click.option("--syscall", "syscalls", multiple=True, metavar="NAME",
              help="Only these syscalls from the every-syscall stream (e.g. --syscall openat --syscall read).")
@click.option("--path", "path_glob", default="", metavar="GLOB",
              help="Only events on matching paths ('*' within a component, '**' across).")
@click.option("--failed", is_flag=True, help="Only syscalls that returned an error.")
@test_option("only the events during it (--from/--to still narrow it).")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N events.")
@json_option("One JSON object per line, streamed.")
@db_option
@click.pass_obj
def events(obj: dict, run: str, t_from: str | None, t_to: str | None, before: str | None, after: str | None,
           pids: tuple[int, ...], tree: bool, kinds: tuple[str, ...], syscalls: tuple[str, ...], path_glob: str,
           failed: bool, test: str | None, limit: int | None, as_json: bool) -> None:
    """List the recorded events of RUN, filtered, in time order.

    \b
    Examples:
      osrewind events last --failed                        every failed syscall, with errno and path
      osrewind events last --pid 4242 --tree --kind exec   what a process tree ran
      osrewind events last --path '/etc/**' --json         streamed JSON lines
      osrewind events last --before +1.5s --path /tmp/out.txt --limit 1   the previous touch of a file
    """
    from osrewind.queries.events import describe

    if before and after:
        raise UsageError("use one of --before and --after")
    with _recording(obj, run, "listing events") as rec:
        info = rec.run

        def at(text: str | None, label: str) -> int | None:
            return None if text is None else rec.instant(text, label)

        lo, hi = at(t_from, "--from"), at(t_to, "--to")
        if test is not None:
            t = rec.test(test)
            lo, hi = max(lo or t.start_ns, t.start_ns), min(t.end_ns if hi is None else hi, t.end_ns)
        if before:
            hi = at(before, "--before") - 1
        if after:
            lo = at(after, "--after") + 1
        rows = rec.events(t_from=lo, t_to=hi, pids=list(pids), tree=tree, kinds=list(kinds),
                          syscalls=list(syscalls), path_glob=path_glob, failed=failed, limit=limit,
                          backwards=bool(before))
        if as_json:
            for e in rows:
                e["offset_ns"] = e["ts"] - info.start_ns
                e["summary"] = describe(e)
                click.echo(json.dumps(e, default=str))
            return
        lines = (safe(render.event(info, e, describe(e))) + "\n" for e in rows)
        if sys.stdout.isatty():
            click.echo_via_pager(lines)
        else:
            for line in lines:
                click.echo(line, nl=False)


# ---------------------------------------------------------------------------- tests


@cli.command()
@run_argument
@click.option("--failed", is_flag=True, help="Only the failing tests (failed, error, died).")
@json_option("The tests as a JSON array (offsets and phases in ns).")
@db_option
@click.pass_obj
def tests(obj: dict, run: str, failed: bool, as_json: bool) -> None:
    """The tests of a pytest session recorded with 'pytest --osrewind': node id, outcome (passed,
    failed, error, skipped, or died: its process ended inside it), start and duration. Every command
    that takes --at takes a test's start or end too (test:NODEID, test:NODEID:end), and state,
    events, top, tree and tui take --test NODEID.

    \b
    Examples:
      osrewind tests last
      osrewind tests pytest-3f2a --failed --json
      osrewind events pytest-3f2a --test tests/test_x.py::test_y --kind exec
    """
    with _recording(obj, run, "listing tests") as rec:
        items = [t for t in rec.tests() if t.failed or not failed]
    if as_json:
        _emit_json([t.to_json(rec.run) for t in items])
        return
    if not items:
        echo(f"run {rec.run.run_id[:8]} has no {'failing ' if failed else ''}tests "
             "(a pytest session recorded with 'pytest --osrewind' has)", err=True)
        return
    _echo_lines(render.tests(rec.run, items))


# ---------------------------------------------------------------------------- hunt


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("--runs", default=20, show_default=True, type=click.IntRange(2, 10_000),
              help="Give up after this many runs.")
@click.option("--name", "-n", default="", help="Runs are named NAME-1, NAME-2, ... in order (default NAME: the "
                                                "command's basename); the kept ones keep theirs.")
@click.option("--no-sched", is_flag=True, help="Leave out the scheduler.")
@click.option("--no-syscalls", is_flag=True, help="Leave out the every-syscall stream.")
@json_option("Print what was found (the kept runs, every attempt's exit code, the diff) as JSON.")
@db_option
@click.pass_obj
def hunt(obj: dict, command: tuple[str, ...], runs: int, name: str, no_sched: bool, no_syscalls: bool,
         as_json: bool) -> None:
    """Run a flaky COMMAND under recording until it has both passed (exit 0) and failed, keep one run of
    each, and show how they differ, first divergence first.

    Each run's output goes to a log file (named at the end), not the terminal; a progress line says how
    it goes. The other runs are deleted. Exits 0 when both were seen, 1 when --runs went by without
    (the runs of the one outcome seen are kept: one of them). Needs root.

    \b
    Examples:
      sudo osrewind hunt -- pytest -x tests/test_x.py::test_y
      sudo osrewind hunt --runs 50 --name upload -- ./upload_test.sh
    """
    import tempfile

    from osrewind.ingest.recorder import RecordOptions
    from osrewind.probes.loader import check_environment
    from osrewind.queries.api import Recording
    from osrewind.queries.recording import hunt as run_hunt

    if not command:
        raise UsageError("nothing to hunt: give the command after --, e.g. osrewind hunt -- pytest -x tests/test_x.py")
    check_environment()
    base = name or os.path.basename(command[0])
    logs = tempfile.mkdtemp(prefix="osrewind-hunt-")

    def options(i: int) -> RecordOptions:   # one output path for every run: it must not look like a divergence
        return RecordOptions(command=list(command), name=f"{base}-{i + 1}", sched=not no_sched,
                             syscalls=not no_syscalls, output=os.path.join(logs, "output.log"))

    def on_attempt(i: int, result, found) -> None:
        os.replace(os.path.join(logs, "output.log"), os.path.join(logs, f"run-{i + 1}.log"))
        code = "?" if result.exit_code is None else result.exit_code
        passes = sum(1 for r in found.attempts if r.exit_code == 0)
        click.echo(f"osrewind: hunt: run {i + 1}/{runs}: exit {code} ({passes} passed, "
                   f"{len(found.attempts) - passes} failed)", err=True)   # stderr: --json stays clean

    with _store(obj["db"], "hunting", write=True) as store:
        found = run_hunt(store, options, runs, on_attempt, notice=lambda m: click.echo(f"osrewind: {safe(m)}", err=True))
        kept = {}
        for label, r in (("pass", found.passed), ("fail", found.failed)):
            if r is not None:
                kept[label] = {"run_id": str(r.run_id), "exit_code": r.exit_code,
                               "log": os.path.join(logs, f"run-{found.attempts.index(r) + 1}.log")}
        result = None
        if found.found:
            a, b = Recording.of(store, kept["pass"]["run_id"]), Recording.of(store, kept["fail"]["run_id"])
            result = a.diff(b)
    report = {"runs": len(found.attempts), "exit_codes": [r.exit_code for r in found.attempts],
              "found": found.found, "kept": kept, "diff": result}
    if as_json:
        _emit_json(report)
    else:
        echo(f"osrewind: hunt: {len(found.attempts)} runs, "
             + ("a pass and a failure" if found.found else "only " + ("passes" if found.passed else "failures")))
        for label, k in kept.items():
            echo(f"  {label}: run {k['run_id'][:8]} (exit {k['exit_code']}), output in {k['log']}")
        if result is not None:
            _echo_lines(render.diff(a.run, b.run, result))
    if not found.found:
        sys.exit(1)


# ---------------------------------------------------------------------------- export / import


@cli.command("export")
@run_argument
@click.option("--output", "-o", required=True, metavar="FILE",
              help="The file to write: FILE.osr (a run file), or with --format perfetto FILE.pftrace.")
@click.option("--format", "fmt", type=click.Choice(["osr", "perfetto"]), default="osr", show_default=True,
              help="osr: a run file any osrewind opens; perfetto: a trace for ui.perfetto.dev (CPU lanes, process "
                   "and thread tracks, syscalls as slices, facts as instants, forks as flows, tests as slices).")
@test_option("only what rewinding its window needs.")
@click.option("--from", "t_from", default=None, metavar="TIME", help="With --to: only what rewinding this window needs.")
@click.option("--to", "t_to", default=None, metavar="TIME", help="The window's end.")
@json_option("Print the file's manifest as JSON.")
@db_option
@click.pass_obj
def export_run(obj: dict, run: str, output: str, fmt: str, test: str | None, t_from: str | None, t_to: str | None,
               as_json: bool) -> None:
    """Write RUN to one portable file (.osr) that any osrewind can open: a manifest (format version,
    osrewind version, host, kernel, boot id, clock offset) and the run's tables (Parquet), in one
    archive. Every reading command takes the file in place of a run; 'osrewind import' adds it to a
    store.

    A window (--test, or --from and --to) keeps the /proc baseline and every state fact up to its end,
    so the state at any instant in it is exact, and the syscall and scheduler streams inside it.

    \b
    Examples:
      osrewind export last -o run.osr
      osrewind export pytest-3f2a --test tests/test_x.py::test_y -o test_y.osr
      osrewind state test_y.osr --test test_y
      osrewind export last --format perfetto -o run.pftrace
    """
    if (t_from is None) != (t_to is None):
        raise UsageError("a window needs both --from and --to")
    if test is not None and t_from is not None:
        raise UsageError("use --test or --from/--to, not both")
    if fmt == "perfetto":
        if test is not None or t_from is not None:
            raise UsageError("--format perfetto writes the whole run (a window: export a run file first, then that)")
        with _recording(obj, run, "exporting a run") as rec:
            def progress(n: int) -> None:
                if sys.stderr.isatty():
                    click.echo(f"osrewind: exporting: {n} facts\r", err=True, nl=False)

            size = rec.perfetto(output, progress)
        if as_json:
            _emit_json({"run_id": rec.run.run_id, "format": "perfetto", "output": output, "bytes": size})
        else:
            echo(f"run {rec.run.run_id[:8]} '{rec.run.name}' -> {output} ({size} bytes): open it in ui.perfetto.dev")
        return
    if not output.endswith(".osr"):
        raise UsageError(f"--output {output!r}: a run file's name ends with .osr")
    with _recording(obj, run, "exporting a run") as rec:
        manifest = rec.export(output, (t_from, t_to) if t_from is not None else None, test)
    if as_json:
        _emit_json(manifest)
        return
    rows = sum(t["rows"] for name, t in manifest["tables"].items() if name == "events")
    echo(f"run {manifest['run_id'][:8]} '{manifest['name']}': {rows} events"
         + (f" ({manifest['note']})" if manifest["note"] else "") + f" -> {output} ({os.path.getsize(output)} bytes)")


@cli.command("import")
@click.argument("file")
@click.option("--as", "as_name", default=None, metavar="NAME",
              help="Import as a new run of this name (a run already in the store is refused otherwise).")
@json_option("Print the imported run as JSON.")
@db_option
@click.pass_obj
def import_run(obj: dict, file: str, as_name: str | None, as_json: bool) -> None:
    """Add the run of a run file (.osr, from 'osrewind export') to the store, and index it.

    \b
    Examples:
      osrewind import run.osr
      osrewind import run.osr --as flaky-ci-1234
    """
    from osrewind.ingest import runfile
    from osrewind.queries.api import Recording

    runfile.read(file)   # checked whole before the store is touched: a bad file writes nothing
    with _store(obj["db"], "importing a run", write=True) as store:
        store.ensure_schema()
        run_id = runfile.import_(store, file, as_name)
        _index(store, run_id, as_json)
        info = Recording.of(store, run_id).run
    if as_json:
        _emit_json(info.to_json())
    else:
        echo(f"run {info.run_id[:8]} '{info.name}' imported from {file}: {info.events} events")


# ---------------------------------------------------------------------------- top


@cli.command()
@click.argument("run")
@click.option("--at", "at", default=None, metavar="TIME", help="Centre of the window (default: the whole run).")
@click.option("--window", default="1s", show_default=True, metavar="DURATION", help="Window width around --at.")
@click.option("--by", "sections", multiple=True, type=click.Choice(["processes", "syscalls", "files", "endpoints"]),
              help="Only these tables (default: all four).")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1), help="Rows per table.")
@test_option("over its window (instead of --at/--window).")
@json_option("The tables as one JSON object.")
@db_option
@click.pass_obj
def top(obj: dict, run: str, at: str | None, window: str, sections: tuple[str, ...], limit: int,
        test: str | None, as_json: bool) -> None:
    """Where the time went in RUN: the busiest processes (on-CPU and syscall time), syscalls, files
    and network endpoints, over the whole run or a window around an instant.

    \b
    Examples:
      osrewind top last
      osrewind top build-42 --at +12s --window 2s --by syscalls --limit 5
      osrewind top last --json
    """
    from osrewind.queries.top import SECTIONS

    with _recording(obj, run, "summarising a run") as rec:
        if test is not None:
            t = rec.test(test)
            lo, hi = t.start_ns, t.end_ns
        else:
            lo, hi = rec.window(at, window)
        tables = rec.top(lo, hi, limit, tuple(sections) or SECTIONS)
    if as_json:
        _emit_json({"run_id": rec.run.run_id, "from_ns": lo, "to_ns": hi, **tables})
        return
    _echo_lines(render.top(rec.run, lo, hi, tables))


# ---------------------------------------------------------------------------- tui


class _TuiCommand(click.Command):
    """``osrewind tui [RUN] [-- CMD ...]``: what follows ``--`` is a command to record live."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["live_command"] = args[i + 1:]
            args = args[:i]
        return super().parse_args(ctx, args)


@cli.command(cls=_TuiCommand)
@click.argument("run", required=False)
@click.option("--diff", "diff_run", default=None, metavar="RUN", help="Show RUN beside the first, aligned.")
@click.option("--at", "at", default=None, metavar="TIME", help="Open at this instant (same forms as state --at).")
@test_option("open at its end (the failure).")
@click.option("--name", "-n", default="", help="With -- CMD: name for the recorded run.")
@click.option("--no-sched", is_flag=True, help="With -- CMD: leave out the scheduler.")
@click.option("--no-syscalls", is_flag=True, help="With -- CMD: leave out the every-syscall stream.")
@click.option("--redact", multiple=True, metavar="REGEX",
              help="With -- CMD: replace matches in argv, paths and cwd with *** before storing (repeatable).")
@click.option("--theme", type=click.Choice(["dark", "light"]), default="dark", show_default=True,
              help="Colour theme (ctrl+t toggles it in the app).")
@json_option("On exit, print where you were (run, instant, selected process) as one JSON line; "
                   "with -- CMD, the recorded run's summary too.")
@db_option
@click.pass_context
def tui(ctx: click.Context, run: str | None, diff_run: str | None, at: str | None, test: str | None, name: str,
        no_sched: bool,
        no_syscalls: bool, redact: tuple[str, ...], theme: str, as_json: bool) -> None:
    """The terminal UI: scrub through a run, inspect any process at any instant, step through the
    events that touched it, compare two runs, or watch a command live as it is recorded.

    Keys: arrows step through time (1-5 pick the step: event, 1ms, 100ms, 1s, 10s), g types an
    instant, p / n step to the selected process's previous / next event, ? lists every key.

    \b
    Examples:
      osrewind tui                          pick a run
      osrewind tui last --at +1.25s         one run, opened at an instant
      osrewind tui good-run --diff bad-run  two runs side by side; v jumps to the first divergence
      sudo osrewind tui -- make test        record a command and watch it live
      osrewind tui pytest-3f2a --test tests/test_x.py::test_y   a failing test of a recorded session
    """
    from osrewind.queries.api import Recording

    obj = ctx.obj
    live_cmd = ctx.meta.get("live_command")
    if live_cmd is not None and (run is not None or diff_run is not None):
        raise UsageError("either a run to show or -- CMD to record, not both")
    if live_cmd is not None and not live_cmd:
        raise UsageError("nothing to record after --")
    if test is not None and run is None:
        raise UsageError("--test needs a run: osrewind tui RUN --test NODEID")
    if diff_run is not None and run is None:
        raise UsageError("--diff needs a first run: osrewind tui RUN_A --diff RUN_B")

    def need_terminal() -> None:  # the UI reads keys from stdin and draws on stderr (stdout keeps --json)
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise UsageError("the terminal UI needs a terminal (stdin and stderr are not one); for scripts use "
                             "'osrewind state', 'events' or 'tree' (with --json)")

    live = None
    if live_cmd is not None:
        from osrewind.ingest.redact import Redactor
        from osrewind.probes.loader import check_environment

        Redactor(redact)  # a bad pattern is bad input: say so before anything starts
        check_environment()
        need_terminal()
    if live_cmd is not None:
        opened = _store(obj["db"], "recording (live TUI)", write=True)
    else:   # run files (.osr) open in a store of their own
        opened, names = _open_runs(obj, [r for r in (run, diff_run) if r is not None], "terminal UI")
        run, diff_run = (names + [None, None])[:2] if run is not None else (None, None)
    with opened as store:
        if live_cmd is not None:
            from osrewind.ingest.recorder import RecordOptions
            from osrewind.tui.live import LiveSession

            live = LiveSession(store, RecordOptions(command=list(live_cmd), name=name, sched=not no_sched,
                                                    syscalls=not no_syscalls, redact=list(redact)))
            live.start()
            live.wait_started()
        elif run is not None:  # '' is an empty run (an error), not the picker: bad input is said before the UI
            rec = Recording.of(store, run)
            if diff_run is not None:
                Recording.of(store, diff_run)
            if test is not None and at is None:
                at = f"test:{rec.test(test).nodeid}:end"
            if at is not None:
                at = str(rec.instant(at, "--at"))   # monotonic ns: the TUI reads it as any --at
        need_terminal()
        from osrewind.tui.app import OsrewindApp

        app = OsrewindApp(store, run=run, diff=diff_run, live=live, at=at,
                          theme="textual-light" if theme == "light" else "textual-dark")
        app.run()
        if live is not None:
            live.stop()
            live.join()
        where = app.where()
    if live is not None and live.result is not None:
        r = live.result
        where["recorded"] = {"run_id": str(r.run_id), "name": r.name, "status": r.status,
                             "exit_code": r.exit_code, "events": r.events, "lost": r.lost,
                             "output": live.opts.output}
        if not as_json:
            echo(f"osrewind: run {str(r.run_id)[:8]} '{r.name}' {r.status}: {r.events} events, {r.lost} lost"
                       + ("" if r.exit_code is None else f", exit {r.exit_code}")
                       + f"; the command's output is in {live.opts.output}", err=True)
    if as_json:
        click.echo(json.dumps(where))
    if app.return_code:
        sys.exit(app.return_code)


# ---------------------------------------------------------------------------- demo


@cli.command()
@json_option("Print the rewound state as JSON.")
@db_option
@click.pass_obj
def demo(obj: dict, as_json: bool) -> None:
    """Record the bundled demo workload, then rewind to the instant it held the most open files.

    The workload (osrewind/demo/workload.sh) starts a background worker, writes files through pipes,
    renames and deletes some, and exits. Needs root.

    \b
    Example:
      sudo osrewind demo
    """
    from osrewind.ingest.recorder import RecordOptions
    from osrewind.probes.loader import check_environment
    from osrewind.queries.api import Recording
    from osrewind.queries.recording import Session

    check_environment()
    script = Path(__file__).with_name("demo") / "workload.sh"
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"osrewind-demo-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    with _store(obj["db"], "recording demo", write=True) as store:
        echo(f"osrewind: recording {script.name} in {workdir} ...", err=True)
        session = Session(store, RecordOptions(command=["/bin/sh", str(script)], name="demo", cwd=str(workdir)))
        result = session.run()
        _index_session(session, result, True)
        echo(f"osrewind: run {str(result.run_id)[:8]} 'demo': {result.events} events, {result.lost} lost, "
                   f"exit {result.exit_code}", err=True)
        rec = Recording.of(store, str(result.run_id))
        info = rec.run
        checkpoint = store.query(
            "SELECT min(ts) FROM events WHERE run_id = {run:UUID} AND kind = 'open' AND endsWith(path, {p:String})",
            {"run": info.run_id, "p": "checkpoint"})
        st = rec.state_at(int(checkpoint[0][0]) if checkpoint and checkpoint[0][0] else (info.start_ns + info.end_ns) // 2)
    if as_json:
        _emit_json(st.to_json())
        return
    echo("")
    _print_state(st)
    me = _invocation()
    echo()
    echo(f"next: {me} runs   |   {me} state {str(result.run_id)[:8]} --at +0.1s   |   "
               f"{me} state demo --at end --json")


def _invocation() -> str:
    """How the user can type osrewind again: plain `osrewind` when that is on PATH."""
    import shutil

    argv0 = os.path.abspath(sys.argv[0])
    found = shutil.which("osrewind")
    if found and os.path.realpath(found) == os.path.realpath(argv0):
        return "osrewind"
    try:
        rel = os.path.relpath(argv0)
    except ValueError:
        rel = argv0
    return rel if rel.startswith(".") or rel.startswith("/") else "./" + rel


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush finds no broken pipe to report."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM (or a closed terminal) ends a command the way Ctrl-C does: the store is closed and its
    temporary files removed. `record` installs its own handlers while it records."""
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _terminated)
    try:
        cli.main(standalone_mode=False)
    except SystemExit:
        if type(sys.stdout).__name__.endswith("PacifyFlushWrapper"):  # click's sign of a reader gone (EPIPE)
            _quiet_stdout()
            sys.exit(141)
        raise
    except OsrewindError as exc:
        echo(f"osrewind: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        echo("osrewind: aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:  # one line, like every other error, with where to look
        where = exc.ctx.command_path if exc.ctx is not None else "osrewind"
        echo(f"osrewind: error: {' '.join(exc.format_message().split())} (see '{where} --help')", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        echo(f"osrewind: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        echo("osrewind: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:  # `osrewind events ... | head -1`: the reader is gone, say nothing
        _quiet_stdout()
        sys.exit(141)
    except Exception as exc:  # a bug, not a user error: one line, the traceback on request
        if os.environ.get("OSREWIND_DEBUG"):
            raise
        where = exc.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        loc = f" ({Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno})" if where else ""
        echo(f"osrewind: internal error: {type(exc).__name__}: {exc}{loc}; "
                   "set OSREWIND_DEBUG=1 for the traceback", err=True)
        sys.exit(70)


if __name__ == "__main__":
    main()
