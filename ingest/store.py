"""Where recordings live: one clickhouse-connect client for two kinds of store.

- Embedded (default): chDB in this process, on a directory. chDB lets one process at a time open a
  directory, so osrewind takes an exclusive lock file there first and, when another osrewind process
  holds it, says which one (pid, what it is doing) instead of failing deep inside the engine.
- Server: ``--db http://user:password@host:8123/database`` (or https) reaches a ClickHouse server or
  cluster through the same client and the same SQL; many processes may use it at once.

The store location is ``--db``, else ``$OSREWIND_DB``, else ``$XDG_DATA_HOME/osrewind/store``
(``~/.local/share/osrewind/store``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from osrewind.errors import StoreError, UsageError
from osrewind.ingest.schema import (
    ADDED_COLUMNS,
    KIND_TYPE,
    SCHEMA_VERSION,
    TABLE_SETTINGS,
    TABLES,
    column_codecs,
    on_server,
)

# the driver logs its own copy of every error it raises; osrewind reports them once, in one line
logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
logging.getLogger("clickhouse_connect").propagate = False

LOCK_NAME = ".osrewind.lock"
# The embedded engine's configuration file (ingest/chdb.xml: compression by part size), given to
# every connection to an embedded store
CHDB_OPTIONS = {"config-file": str(Path(__file__).resolve().with_name("chdb.xml"))}
MARKER_NAME = "osrewind-store.json"  # written with the tables: a store that has it must have them


def _codec_key(codec: str) -> str:
    """A codec as written in DDL or as the engine shows it, alike: ``CODEC(Delta(8), Default)`` and
    ``Delta, Default`` give the same key."""
    text = codec.strip()
    if text.startswith("CODEC(") and text.endswith(")"):
        text = text[len("CODEC(") : -1]
    return re.sub(r"\(\d+\)", "", text).replace(" ", "")


def default_location() -> str:
    env = os.environ.get("OSREWIND_DB")
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "osrewind", "store")


def is_server_url(location: str) -> bool:
    return location.startswith(("http://", "https://"))


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# the tables every store has had from the start (a store from before the marker has all of them)
CORE_TABLES = ("meta", "runs", "events", "snapshot_procs", "snapshot_fds")
# tables whose loss a store's marker remembers (the derived ones can be rebuilt, but a store that
# silently lost them would answer differently)
KNOWN_TABLES = (*TABLES, "keyframes", "processes", "file_access")


def check_location(location: str) -> str:
    """``--db`` as given: a directory, or an http(s) URL that parses. Anything else is the user's error."""
    if not location.strip():
        raise UsageError("--db is empty: give a store directory or an http(s)://host:8123/database URL")
    if any(0xD800 <= ord(c) <= 0xDFFF for c in location):
        raise UsageError("the store path is not UTF-8 (the engine cannot open such paths): give --db another one")
    m = _SCHEME.match(location)
    if m and m.group(1).lower() not in ("http", "https"):
        raise UsageError(f"unknown store scheme {m.group(1)}://: give a directory or an http(s):// URL")
    if m:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(location)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise UsageError(f"bad store URL {location!r}: {exc}") from None
        if not parts.hostname:
            raise UsageError(f"bad store URL {location!r}: no host")
    return location


class StoreMissing(StoreError):
    """A command that only reads was pointed at a store that does not exist."""


def warn(message: str) -> None:
    import sys

    print(f"osrewind: warning: {message}", file=sys.stderr)


def _is_store(path: Path) -> bool:
    return (path / MARKER_NAME).exists() or (path / "metadata").is_dir()


# what a first open that failed may leave in a new store directory: still "empty"
_LEFTOVERS = {LOCK_NAME, "tmp", "status", "user_files", "format_schemas"}


def _has_other_files(path: Path) -> bool:
    return any(p.name not in _LEFTOVERS for p in path.iterdir())


def _read_small(path: Path, limit: int = 65536) -> bytes:
    """A small file of the store (the marker), never through a link, a FIFO or a device: a store
    another user can write must not make root's reader hang or read /dev/zero."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"{path.name} is not a regular file")
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _read_only_fs(path: Path) -> bool:
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def _why_not_writable(path: Path) -> str:
    return "read-only filesystem" if _read_only_fs(path) else "permission denied"


def _chmod_nofollow(path: str, mode: int) -> None:
    try:
        if not os.path.islink(path):
            os.chmod(path, mode)
    except OSError:
        pass


def _private_umask() -> None:
    """This process's new files 0600, directories 0700 (a recorded command gets its own umask back,
    osrewind.INHERITED_UMASK)."""
    os.umask(0o077)


def _chmod_tree(path: Path) -> None:
    for root, dirs, files in os.walk(path):
        for d in dirs:
            _chmod_nofollow(os.path.join(root, d), 0o700)
        for f in files:
            _chmod_nofollow(os.path.join(root, f), 0o600)
    os.chmod(path, 0o700)


def _open_lock(lock_path: Path, flags: int) -> int:
    """The lock file, never through a symlink: a user who could plant ``.osrewind.lock -> /etc/x``
    must not get root to truncate the target."""
    try:
        fd = os.open(lock_path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"{lock_path} is not a regular file: refusing to use it; remove it")
        return fd
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreError(f"{lock_path} is a symbolic link: refusing to open it (someone may be trying to "
                             "make osrewind overwrite another file); remove it") from None
        if isinstance(exc, FileNotFoundError) or (isinstance(exc, PermissionError) and flags == os.O_RDONLY):
            raise
        raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from None


def _damaged(path: Path, missing: list[str]) -> StoreError:
    return StoreError(f"store {path} is damaged: table{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                      "cannot be loaded (metadata missing or unreadable); files left untouched: restore the store "
                      "from a backup, or move it aside and record into a new one")


def _flock(fd: int, lock_path: Path, how: int) -> int:
    """``fd`` locked (never waiting), or closed and a one-line error naming who holds the store."""
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"store {lock_path.parent} is in use by {_holder_text(lock_path)}; wait for it to "
                         "finish or use --db for another store") from None
    return fd


def _recording_holds(lock_path: Path) -> str | None:
    """If a live osrewind recording holds the store's lock (not a reader, a reindex or an import): the
    id of the run it records ('' before it has one); else None."""
    try:
        fd = _open_lock(lock_path, os.O_RDONLY)   # a regular file, never a FIFO or a symlink
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None   # nobody writes it
    except BlockingIOError:
        holder = lock_holder(lock_path)
        pid, purpose = holder.get("pid"), str(holder.get("purpose", ""))
        if not (pid and os.path.exists(f"/proc/{pid}") and purpose.startswith("recording")):
            return None
        words = purpose.split()
        return words[2] if len(words) > 2 and words[1] == "run" else ""
    finally:
        os.close(fd)


def _holder_text(lock_path: Path) -> str:
    holder = lock_holder(lock_path)
    pid = holder.get("pid")
    if pid and os.path.exists(f"/proc/{pid}"):
        return f"osrewind pid {pid} ({holder.get('purpose', 'in use')})"
    return "another process"


class _Serialized:
    """The client, one call at a time: a recording's writer thread inserts while other threads (a
    keyframe indexer, the live TUI) read, and the embedded engine takes one call at a time."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr
        lock = self._lock

        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return attr(*args, **kwargs)

        return call


def _column_list(names: list[str]) -> str:
    """Column names quoted for an INSERT's column list."""
    return ", ".join("`" + c.replace("`", "``") + "`" for c in names)


def _constant_uuid(column: Any) -> str | None:
    """The one UUID of a dictionary column whose every row is that one value (a batch's ``run_id``),
    else None. The engine then gets it as a constant in the INSERT's SELECT: parsing the same
    36-character text on every row was a sixth of a syscall row's insert (50 ns of 300)."""
    import pyarrow as pa

    if not pa.types.is_dictionary(column.type) or column.null_count:
        return None
    values = set()
    for chunk in getattr(column, "chunks", [column]):
        if len(chunk) == 0:
            continue
        if len(chunk.dictionary) != 1:
            return None
        values.add(chunk.dictionary[0].as_py())
    if len(values) != 1:
        return None
    try:
        return str(uuid.UUID(str(values.pop())))
    except ValueError:
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    errno_msg = re.search(r"\[Errno \d+\] [^'\")]+", line)
    if errno_msg:  # a network error buried in the HTTP driver's message
        return errno_msg.group(0)
    return line[:300]


VIEW_PREFIX = ".osrewind-view-"   # a live view's mirror inside the store: VIEW_PREFIX<pid>-<random>


def _mirror_store(src: Path, dst: Path) -> None:
    """The store's metadata, data and parts under ``dst``: directories made, files hard-linked,
    symlinks copied as they are (the engine's are relative, so they resolve inside the mirror).
    A ``tmp_*`` directory (an insert or merge in progress) is left out; a part removed while it is
    linked is left out whole. OSError when the filesystem cannot link."""
    for top in ("metadata", "store", "data"):
        root = src / top
        if not root.exists():
            continue
        for here, dirs, files in os.walk(root):
            rel = Path(here).relative_to(src)
            dirs[:] = [d for d in dirs if not d.startswith("tmp")]
            out = dst / rel
            out.mkdir(mode=0o700, exist_ok=True)
            for name in dirs[:]:
                if os.path.islink(os.path.join(here, name)):   # os.walk lists a symlinked directory as one
                    os.symlink(os.readlink(os.path.join(here, name)), out / name)
                    dirs.remove(name)
            for name in files:
                f = os.path.join(here, name)
                try:
                    if os.path.islink(f):
                        os.symlink(os.readlink(f), out / name)
                    else:
                        os.link(f, out / name)
                except FileNotFoundError:   # removed meanwhile (an outdated part): leave the part out
                    shutil.rmtree(out, ignore_errors=True)
                    dirs[:] = []
                    break


def _remove_dead_views(store: Path) -> None:
    """Mirrors left by readers that died (their pid is gone)."""
    for view in store.glob(VIEW_PREFIX + "*"):
        pid = view.name[len(VIEW_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(view, ignore_errors=True)


class Store:
    """An open store. Use as a context manager; closing releases the embedded store's lock.

    ``mode="write"`` (recording, reindexing, the Python API's default) creates the embedded store
    if needed and takes it exclusively; ``mode="read"`` (every command that only reads) never
    creates anything: the store must exist, and one the user cannot write (a read-only
    filesystem, another user's store shared with them) is opened through a private read-only view.
    """

    def __init__(self, location: str | None = None, *, purpose: str = "reading", mode: str = "write",
                 timeout: float | None = None) -> None:
        self.location = check_location(default_location() if location is None else location)
        self.purpose = purpose
        self.mode = mode
        self.timeout = timeout
        self.read_only_view = False
        self.cluster: str | None = None   # the server's cluster the tables are laid out over, if any
        self.live_snapshot = False   # read while a recording writes the store: what it had stored when opened
        self.recording_run = ""      # then, the run being recorded ('' if its id is not known yet)
        self._lock_fd: int | None = None
        self._scratch: str | None = None
        self.embedded = not is_server_url(self.location)
        try:
            if self.embedded:
                self._open_embedded()
            else:
                self._open_server()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening

    def _open_embedded(self) -> None:
        try:
            self._open_embedded_at(Path(self.location))
        except OSError as exc:  # e.g. another user's private store: one line, not a traceback
            where = exc.filename or self.location
            raise StoreError(f"cannot open store {self.location}: {exc.strerror or exc} ({where})") from None

    def _open_embedded_at(self, path: Path) -> None:
        if path.exists() and not path.is_dir():
            raise StoreError(f"store path {path} exists and is not a directory")
        if not path.exists():
            if self.mode == "read":
                raise StoreMissing(f"no store at {path}: nothing recorded there yet "
                                   "(record with 'osrewind record -- CMD', or give --db)")
            try:
                old = os.umask(0o077)
                try:
                    path.mkdir(parents=True, exist_ok=True, mode=0o700)
                finally:
                    os.umask(old)
            except OSError as exc:
                raise StoreError(f"cannot create store directory {path}: {exc.strerror}") from exc
        if not _is_store(path) and _has_other_files(path):
            raise StoreError(f"{path} is not an osrewind store (it has other files): give --db a new "
                             "or empty directory, or an existing store")
        if self.mode == "read" and not _is_store(path):
            raise StoreMissing(f"no store at {path}: nothing recorded there yet "
                               "(record with 'osrewind record -- CMD', or give --db)")
        st = path.stat()
        foreign = st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022
        writable = os.access(path, os.W_OK) and not _read_only_fs(path)
        if self.mode == "write":
            if foreign:
                who = f"uid {st.st_uid}" if st.st_uid not in (os.geteuid(), 0) else f"mode {st.st_mode & 0o777:04o}"
                raise StoreError(f"store {path} can be written by another user ({who}): refusing to use it; "
                                 "make it yours and private (chown, chmod 700) or give --db another directory")
            if not writable:
                raise StoreError(f"store {path} is not writable here ({_why_not_writable(path)}): "
                                 "reading works, recording and reindexing need a writable store")
        recording = _recording_holds(path / LOCK_NAME) if writable and not foreign and self.mode == "read" else None
        if recording is not None:
            # a recording has the store: read what it has stored so far through a private view
            # (its parts are immutable once written; the engine loads them as they are now)
            self.live_snapshot = True
            self.recording_run = recording
            self._open_view(path, mirror=True)
            return
        if writable and not foreign:
            self._make_private(path, st)
            self._lock(path / LOCK_NAME)
            for stale in path.glob(".insert-*.arrow"):   # an insert's file left by a process that died
                stale.unlink(missing_ok=True)
            self._connect_chdb(str(path), path)
            _private_umask()  # the engine sets its own umask as it starts: narrow it again
            if not (path / MARKER_NAME).exists():  # new: what the engine made as it started, private too
                _chmod_tree(path)
        else:  # read through a private view: nothing is written into the store
            self._shared_lock(path / LOCK_NAME)
            self._open_view(path)

    def _make_private(self, path: Path, st: os.stat_result) -> None:
        """Stores are private to their owner (argv and paths may hold secrets): 0700, files 0600.
        One made by an older osrewind (0755) is fixed once, with a warning."""
        _private_umask()
        if st.st_uid != os.geteuid() or not st.st_mode & 0o077:
            return
        was = st.st_mode & 0o777
        _chmod_tree(path)
        warn(f"store {path} was readable by other users (mode {was:04o}); made it private (0700, files 0600)")

    def _connect_chdb(self, where: str, shown: Path) -> None:
        self._chdb_path = where
        try:
            import clickhouse_connect

            self.client = _Serialized(clickhouse_connect.get_client(interface="chdb", path=where,
                                                                    chdb_options=CHDB_OPTIONS))
            self.client.command("SELECT 1")
        except Exception as exc:
            raise StoreError(f"cannot open store {shown}: {_one_line(exc)}") from exc
        self._check_damage(shown)

    def _open_view(self, path: Path, mirror: bool = False) -> None:
        """chDB writes a status file and temporary files beside the data even to read: give it a
        private scratch directory whose data and metadata are the store's, read-only.

        ``mirror`` (a store a recording is writing): the scratch directory is a mirror of the store
        made of hard links, inside the store (hard links stay on one filesystem), not symlinks to
        its directories. The engine, even read-only, deletes a table's ``tmp_*`` part directories
        as it loads it: through symlinks that was the recording's insert in progress, whose
        failure ended the recording. Parts are immutable once named, so the mirror is what the
        recording had stored when it was made; the recording's later merges do not touch it."""
        import tempfile

        if mirror:
            _remove_dead_views(path)
            try:
                self._scratch = tempfile.mkdtemp(prefix=f"{VIEW_PREFIX}{os.getpid()}-", dir=path)
                _mirror_store(path, Path(self._scratch))
            except OSError:   # no hard links here: the directories themselves, as for other views
                if self._scratch is not None:
                    shutil.rmtree(self._scratch, ignore_errors=True)
                mirror = False
        if not mirror:
            self._scratch = tempfile.mkdtemp(prefix="osrewind-view-")
            for part in ("metadata", "store", "data"):
                if (path / part).exists():
                    os.symlink(path.resolve() / part, os.path.join(self._scratch, part))
        self.read_only_view = True
        self._connect_chdb(f"file:{self._scratch}?mode=ro", path)

    def _check_damage(self, path: Path) -> None:
        """A store that once had its tables must still have them: an engine that lost a table's
        metadata would otherwise start an empty one and old runs would read as empty."""
        marker = path / MARKER_NAME
        if not marker.exists():  # a store from before the marker: its core tables go together
            present = self.table_names() & set(CORE_TABLES)
            missing = sorted(set(CORE_TABLES) - present) if present else []
            if missing:
                raise _damaged(path, missing)
            return
        try:
            expected = set(json.loads(_read_small(marker)).get("tables") or CORE_TABLES)
        except (OSError, ValueError):
            expected = set(CORE_TABLES)
        present = self.table_names()
        missing = sorted(expected - present)
        if missing:
            raise _damaged(path, missing)

    def table_names(self) -> set[str]:
        rows = self.client.query("SELECT name FROM system.tables WHERE database = currentDatabase()").result_rows
        return {r[0] for r in rows}

    def _open_server(self) -> None:
        try:
            import clickhouse_connect

            kwargs = {}
            if self.timeout:
                kwargs = {"connect_timeout": self.timeout, "send_receive_timeout": self.timeout}
            # inserts into a cluster's Distributed tables land before they return (a recorder reads its
            # run's rows back); on a single server the setting changes nothing
            self.client = _Serialized(clickhouse_connect.get_client(dsn=self.location,
                                                                    settings={"insert_distributed_sync": 1}, **kwargs))
            rows = self.client.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                                     "AND name = 'events'").result_rows
        except Exception as exc:
            raise StoreError(f"cannot reach ClickHouse at {self._redacted()}: {_one_line(exc)}") from exc
        m = re.match(r"Distributed\('?(\w+)'?,", rows[0][0]) if rows else None
        self.cluster = m.group(1) if m else None   # laid out by 'store init --cluster' (ingest/cluster.py)

    def _redacted(self) -> str:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.location)
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        if parts.username:
            host = f"{parts.username}@{host}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))

    def _lock(self, lock_path: Path) -> None:
        fd = _flock(_open_lock(lock_path, os.O_RDWR | os.O_CREAT), lock_path, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "purpose": self.purpose, "since": time.time()}).encode())
        self._lock_fd = fd

    def _shared_lock(self, lock_path: Path) -> None:
        """A reader that cannot write the store still keeps a recording from starting under it."""
        try:
            fd = _open_lock(lock_path, os.O_RDONLY)
        except (FileNotFoundError, PermissionError):  # no lock to share: read without one
            return
        self._lock_fd = _flock(fd, lock_path, fcntl.LOCK_SH)

    def set_purpose(self, purpose: str) -> None:
        """Update what the lock file tells other osrewind processes (e.g. the run being recorded)."""
        self.purpose = purpose
        if self._lock_fd is not None and not self.read_only_view:
            os.ftruncate(self._lock_fd, 0)
            os.pwrite(self._lock_fd, json.dumps({"pid": os.getpid(), "purpose": purpose,
                                                 "since": time.time()}).encode(), 0)

    # ------------------------------------------------------------------ use

    def ensure_schema(self) -> None:
        self.has_schema()  # refuses a damaged store rather than creating empty tables over it
        try:
            for ddl in TABLES.values():
                self.client.command(ddl if self.embedded else on_server(ddl))
            self.client.command(
                "INSERT INTO meta (key, value) VALUES ('schema_version', {v:String})",
                parameters={"v": str(SCHEMA_VERSION)},
            )
            self._upgrade_kinds()
            for table, column, ctype in ADDED_COLUMNS:
                ctype = ctype if self.embedded else on_server(ctype)
                self.client.command(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {ctype}")
            self._upgrade_settings()
            self._upgrade_codecs()
            self.remember_tables()
        except Exception as exc:
            raise StoreError(f"cannot create tables in store {self.location}: {_one_line(exc)}") from exc

    def _upgrade_settings(self) -> None:
        """Table settings (schema.TABLE_SETTINGS) that a store made by an older osrewind lacks: a
        metadata-only change, for the parts made from then on. Only where the table itself is a
        MergeTree (a cluster's are its nodes' local tables, laid out by ``store init --cluster``);
        a server that refuses it (no ALTER right) keeps its settings: they are a matter of speed."""
        if self.cluster:
            return
        for table, settings in TABLE_SETTINGS.items():
            try:
                rows = self.client.query("SELECT engine_full FROM system.tables WHERE database = currentDatabase() "
                                         "AND name = {t:String}", parameters={"t": table}).result_rows
                if not rows or "MergeTree" not in rows[0][0]:
                    continue
                missing = {k: v for k, v in settings.items() if f"{k} = {v}" not in rows[0][0]}
                if missing:
                    listed = ", ".join(f"{k} = {v}" for k, v in missing.items())
                    self.client.command(f"ALTER TABLE {table} MODIFY SETTING {listed}")
            except Exception:  # noqa: BLE001, S112 - see above
                continue

    def _upgrade_codecs(self) -> None:
        """An embedded store made by an older osrewind names other codecs than the events table now
        does (ZSTD(1) where it names ``Default``, compression by part size; T64 where it names
        none): a metadata-only change, for the parts made from then on (the old ones are compressed
        anew when merges rewrite them). A server's tables keep theirs."""
        if not self.embedded:
            return
        want = column_codecs("events")
        rows = self.client.query("SELECT name, compression_codec FROM system.columns WHERE database = "
                                 "currentDatabase() AND table = 'events'").result_rows
        changes = [f"MODIFY COLUMN {name} CODEC({want[name]})" for name, have in rows
                   if name in want and _codec_key(have) != _codec_key(want[name])]
        if changes:
            self.client.command("ALTER TABLE events " + ", ".join(changes))

    def _upgrade_kinds(self) -> None:
        """A store made by an older osrewind knows fewer event kinds: extending an Enum is a
        metadata-only change in ClickHouse, existing rows are untouched."""
        rows = self.client.query("SELECT type FROM system.columns WHERE database = currentDatabase() "
                                 "AND table = 'events' AND name = 'kind'").result_rows
        if rows and rows[0][0].replace(" ", "") != KIND_TYPE.replace(" ", ""):
            self.client.command(f"ALTER TABLE events MODIFY COLUMN kind {KIND_TYPE}")

    def has_schema(self) -> bool:
        try:
            rows = self.client.query("SELECT count() FROM system.tables WHERE database = currentDatabase() "
                                     "AND name = 'runs'").result_rows
        except Exception as exc:
            raise StoreError(f"cannot read store {self.location}: {_one_line(exc)}") from exc
        present = bool(rows and rows[0][0])
        if not present and self.embedded and (Path(self.location) / MARKER_NAME).exists():
            raise StoreError(f"store {self.location} is damaged: its tables cannot be loaded "
                             "(files left untouched; move it aside or restore a backup)")
        return present

    def insert_channel(self) -> Store | None:
        """One more connection to this embedded store, for a second insert at the same time (the
        engine runs each insert on one thread, and two connections to one store in one process
        work side by side). It shares this store's lock and files; closing it closes only its
        connection. None where there is none to have (a read-only view, a server)."""
        if not self.embedded or self.read_only_view or getattr(self, "client", None) is None:
            return None
        import copy

        import clickhouse_connect

        other = copy.copy(self)
        other._lock_fd = None
        other._scratch = None
        try:
            other.client = _Serialized(clickhouse_connect.get_client(interface="chdb", path=self._chdb_path,
                                                                     chdb_options=CHDB_OPTIONS))
        except Exception:  # noqa: BLE001 - the writer then inserts one batch at a time, as before
            return None
        return other

    def pause_merges(self, table: str, paused: bool) -> bool:
        """Stop (or restart) the embedded engine's background merges of ``table``; False where that is
        not this process's to decide (a server's merges serve every client). Merges are only put off:
        the parts made meanwhile are merged once they restart."""
        if not self.embedded or self.read_only_view:
            return False
        self.client.command(f"SYSTEM {'STOP' if paused else 'START'} MERGES `{table}`")
        return True

    def insert_arrow(self, table: str, data: Any) -> None:
        try:
            if self.embedded and not self.read_only_view:
                if any(c.null_count for c in data.columns):
                    self._insert_arrow_file(table, data)
                else:
                    self._insert_arrow_in_process(table, data)
            else:
                self.client.insert_arrow(table, data)
        except Exception as exc:
            raise StoreError(f"writing {table} to store {self.location} failed: {_one_line(exc)}") from exc

    # One insert is one block, so one part: all of it is in the store or none of it (a full disk
    # mid-insert leaves nothing half-written for the spool's checkpoint to disagree with).
    _ONE_PART = ("SETTINGS max_threads = 1, max_insert_threads = 1, min_insert_block_size_rows = 1000000000000, "
                 "min_insert_block_size_bytes = 0")

    def _insert_arrow_in_process(self, table: str, data: Any) -> None:
        """The embedded engine reads the Arrow table where it lies, through chDB's ``Python()`` table
        function (which finds the table by its name among the caller's local variables): no copy
        into a file or a buffer first. Half the cost of sending the same table as an Arrow stream
        (bench: 270 against 580 ns a row for the syscall stream)."""
        consts = {"run_id": value} if "run_id" in data.column_names and len(data.column_names) > 1 and \
            (value := _constant_uuid(data.column("run_id"))) is not None else {}
        osrewind_insert_table = data.drop_columns(list(consts)) if consts else data  # noqa: F841 - read by name
        cols = _column_list(osrewind_insert_table.column_names)
        into = _column_list([*consts, *osrewind_insert_table.column_names])
        values = ", ".join([*(f"toUUID('{v}')" for v in consts.values()), cols])
        self.client.command(f"INSERT INTO `{table}` ({into}) SELECT {values} FROM Python(osrewind_insert_table) "
                            + self._ONE_PART)

    def _insert_arrow_file(self, table: str, data: Any) -> None:
        """A table with nulls (a few rows: a run's row, a test's) goes in as an Arrow stream read from
        a file, as a client's would: a null then becomes its column's default where the column is
        not Nullable, which the ``Python()`` path refuses."""
        import tempfile

        import pyarrow as pa

        fd, path = tempfile.mkstemp(prefix=".insert-", suffix=".arrow", dir=os.path.abspath(self.location))
        try:
            with pa.OSFile(path, "wb") as f, pa.ipc.new_stream(f, data.schema) as w:
                w.write_table(data)
            cols = _column_list(data.column_names)
            where = path.replace("\\", "\\\\").replace("'", "\\'")
            self.client.command(f"INSERT INTO `{table}` ({cols}) FROM INFILE '{where}' FORMAT ArrowStream")
        finally:
            os.close(fd)
            try:
                os.unlink(path)
            except OSError:
                pass

    # Text in the store is bytes: a ClickHouse String holds whatever a program gave the kernel, and a
    # path or argv need not be UTF-8. Recorded strings go in as their original bytes and come back as
    # Python's lossless text for bytes (str with surrogateescape, see osrewind.text): every String
    # column is read as bytes and decoded here, never by the driver (which shows bytes that are not
    # UTF-8 as hex digits). A parameter holding such text is sent as its bytes.

    def insert_rows(self, table: str, rows: list[list[Any]], columns: list[str]) -> None:
        """A few rows, sent as Arrow too (the driver's row path would import pandas: ~0.8 s). Text
        (also in lists) is written as its original bytes."""
        import uuid

        import pyarrow as pa

        data = {}
        for i, col in enumerate(columns):
            values = [str(r[i]) if isinstance(r[i], uuid.UUID) else r[i] for r in rows]
            try:
                data[col] = pa.array(values)
            except UnicodeEncodeError:  # str kept with surrogateescape: Arrow's string refuses it
                data[col] = pa.array(Store._to_bytes(values))
        self.insert_arrow(table, pa.table(data))

    @staticmethod
    def _to_bytes(value: Any) -> Any:
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, (list, tuple)):
            return [Store._to_bytes(v) for v in value]
        return value

    @staticmethod
    def _to_text(value: Any) -> Any:
        if isinstance(value, bytes):
            return value.decode("utf-8", "surrogateescape")
        if isinstance(value, list):
            return [Store._to_text(v) for v in value]
        if isinstance(value, tuple):
            return tuple(Store._to_text(v) for v in value)
        if isinstance(value, dict):
            return {Store._to_text(k): Store._to_text(v) for k, v in value.items()}
        return value

    @staticmethod
    def _params(params: dict[str, Any] | None) -> dict[str, Any]:
        """Parameters, with text that is not UTF-8 as its bytes (the driver cannot encode it)."""
        out = {}
        for key, value in (params or {}).items():
            try:
                if isinstance(value, str):
                    value.encode("utf-8")
                elif isinstance(value, (list, tuple)) and any(isinstance(v, str) for v in value):
                    for v in value:
                        if isinstance(v, str):
                            v.encode("utf-8")
            except UnicodeEncodeError:
                value = Store._to_bytes(value)
            out[key] = value
        return out

    def query_rows(self, sql: str, params: dict[str, Any] | None, keep_bytes: tuple[str, ...] = (),
                   settings: dict[str, Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Column names and rows; String values (also inside arrays, maps, tuples) as lossless text,
        except the ``keep_bytes`` columns, which stay bytes. Raises the driver's own exception, for
        callers that sort errors themselves (a user's SQL)."""
        res = self.client.query(sql, parameters=self._params(params), settings=settings,
                                query_formats={"String": "bytes", "FixedString": "bytes"})
        names = list(res.column_names)
        text = [i for i, (name, ctype) in enumerate(zip(names, res.column_types, strict=True))
                if "String" in ctype.name and name not in keep_bytes]
        rows = res.result_rows
        if not text:
            return names, list(rows)
        out = []
        for row in rows:
            row = list(row)
            for i in text:
                row[i] = Store._to_text(row[i])
            out.append(tuple(row))
        return names, out

    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """Rows; String columns as lossless text (str, surrogateescape for bytes that are not UTF-8)."""
        try:
            return self.query_rows(sql, params)[1]
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_bytes(self, sql: str, params: dict[str, Any], binary_columns: tuple[str, ...]) -> list[tuple]:
        """Rows, with the named String columns as bytes (blobs), the other String columns as text."""
        try:
            return self.query_rows(sql, params, keep_bytes=tuple(binary_columns))[1]
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_readonly(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """A user's query: refused if it would write (readonly=1). Parameter values arrive as text
        and are parsed by the engine into the {name:Type} each placeholder declares. String results
        are lossless text, as everywhere."""
        try:
            return self.query_rows(sql, params, settings={"readonly": 1})
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def query_arrow(self, sql: str, params: dict[str, Any] | None = None, binary: bool = False):
        """An Arrow table; ``binary`` keeps String columns as Arrow ``binary`` (recorded text need not
        be UTF-8; ``osrewind.queries.named.columns`` decodes it losslessly)."""
        try:
            return self.client.query_arrow(sql, parameters=self._params(params),
                                           use_strings=False if binary else None)
        except Exception as exc:
            raise StoreError(f"query failed: {_one_line(exc)}") from exc

    def delete_from(self, table: str) -> str:
        """``DELETE FROM table`` as this store takes it: on a cluster, from the local tables on every
        node (a Distributed table takes no deletes)."""
        return f"DELETE FROM {table}_local ON CLUSTER {self.cluster}" if self.cluster else f"DELETE FROM {table}"

    def delete_events_from(self, run_id: str, seq: int) -> None:
        """Delete the run's events numbered ``seq`` and after: rows a writer inserted past what its
        spool's checkpoint says (a recorder killed, or a failed insert's later batch)."""
        self.client.command(f"{self.delete_from('events')} WHERE run_id = {{run:UUID}} AND seq >= {{seq:UInt64}}",
                            parameters={"run": run_id, "seq": seq})

    def delete_run(self, run_id: str, keep: tuple[str, ...] = ()) -> None:
        """Every row of a run, in every table but ``keep`` (``osrewind hunt`` keeps one passing and one
        failing run; a passing pytest session keeps only its ``runs`` and ``tests`` rows)."""
        for table in sorted(self.table_names() & set(KNOWN_TABLES) - {"meta", *keep}):
            try:
                self.client.command(f"{self.delete_from(table)} WHERE run_id = {{run:UUID}}", parameters={"run": run_id})
            except Exception as exc:
                raise StoreError(f"cannot delete run {run_id[:8]} from {table}: {_one_line(exc)}") from exc

    def remember_tables(self) -> None:
        """Write down in the store's marker which tables it has, so that losing one later is noticed
        on open (``_check_damage``) instead of being papered over with an empty table."""
        if not self.embedded or self.read_only_view or getattr(self, "client", None) is None:
            return
        marker = Path(self.location) / MARKER_NAME
        try:
            old = json.loads(_read_small(marker)) if marker.exists() else {}
        except (OSError, ValueError):
            old = {}
        tables = set(old.get("tables") or ()) | (self.table_names() & set(KNOWN_TABLES))
        new = {"schema_version": SCHEMA_VERSION, "tables": sorted(tables)}
        if new != old:
            tmp = marker.with_name(MARKER_NAME + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(new) + "\n")
            os.replace(tmp, marker)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None and self._lock_fd is not None and not self.read_only_view:
            try:
                self.remember_tables()
            except Exception:  # noqa: BLE001 - closing must not fail over bookkeeping
                pass
        if client is not None:
            try:
                client.close()
            except Exception:
                pass
            self.client = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)  # links are removed, never followed
            self._scratch = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lock_holder(lock_path: Path) -> dict:
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            holder = json.loads(f.read(4096) or b"{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}
