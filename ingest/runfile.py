"""Portable run files (``.osr``): one run, self-contained, to hand to someone else's osrewind.

A run file is a ZIP archive (stored, not deflated: its members are compressed already) of
``manifest.json`` (format version, the osrewind that wrote it, host, kernel, boot id, the clock
offset, the window it holds, and per table its rows, file and SHA-256) and one Parquet file (zstd)
per table of the run: ``runs``, ``events``, ``snapshot_procs``, ``snapshot_fds`` and ``tests``.
Keyframes and the history are derived data: whoever imports a run builds them again, so a file
holds only what was recorded. Every member is checked against the manifest on import; a truncated,
corrupt or newer-format file is refused with one line and nothing is written.

A window (``export --test`` / ``--from --to``) keeps what rewinding needs: the /proc baseline and
every state fact up to the window's end (so the state at any instant in it is exact), and the
every-syscall and scheduler streams only inside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from osrewind import __version__
from osrewind.errors import StoreError, UsageError
from osrewind.userdirs import cache_dir

FORMAT = 1
SUFFIX = ".osr"
TABLES = ("runs", "events", "snapshot_procs", "snapshot_fds", "tests")
STREAM_KINDS = ("syscall", "syscall_agg", "sched_switch", "sched_wakeup", "sched_migrate")


class RunFileError(UsageError):
    """A file that is not a run file osrewind can read (bad input: exit 2)."""


@dataclass
class Manifest:
    raw: dict

    @property
    def run_id(self) -> str:
        return self.raw["run_id"]

    @property
    def name(self) -> str:
        return self.raw["name"]


def is_run_file(spec: str) -> bool:
    """Whether a RUN argument names a run file rather than a run of the store."""
    return spec.endswith(SUFFIX) and os.path.isfile(spec)


def _select(table: str, window: tuple[int, int] | None) -> str:
    src = "runs FINAL" if table == "runs" else table
    where = "run_id = {run:UUID}"
    if window is not None and table == "events":
        kinds = ", ".join(f"'{k}'" for k in STREAM_KINDS)
        where += f" AND ts <= {{hi:Int64}} AND (ts >= {{lo:Int64}} OR kind NOT IN ({kinds}))"
    if window is not None and table == "tests":
        where += " AND start_ns <= {hi:Int64} AND end_ns >= {lo:Int64}"
    return f"SELECT * FROM {src} WHERE {where}"


def _portable(t: pa.Table) -> pa.Table:
    """UUIDs as text (Parquet readers differ on the extension type); everything else as it is."""
    cols = []
    for f, c in zip(t.schema, t.columns, strict=True):
        if isinstance(f.type, pa.ExtensionType) or f.name == "run_id":
            c = pa.array([None if v is None else str(v) for v in c.to_pylist()], type=pa.string())
        cols.append(c)
    return pa.table(cols, names=t.column_names)


def export(store, run, path: str, window: tuple[int, int] | None = None, note: str = "") -> dict:
    """Write ``run`` (a RunInfo) to the run file ``path`` (atomically: a temporary beside it, then
    renamed). ``window``: (from, to) CLOCK_MONOTONIC ns. Returns the manifest."""
    from osrewind.ingest.recorder import host_identity

    params = {"run": run.run_id, **({"lo": window[0], "hi": window[1]} if window else {})}
    present = store.table_names()
    manifest = {"format": FORMAT, "osrewind": __version__, "run_id": run.run_id, "name": run.name,
                "host": run.host, "kernel": run.kernel, "boot_id": "", "exported_by": host_identity()[0],
                "exported_wall_ns": time.time_ns(), "wall_offset_ns": run.wall_offset_ns,
                "start_ns": run.start_ns, "end_ns": run.end_ns, "window": list(window) if window else None,
                "note": note, "tables": {}}
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            for table in TABLES:
                if table not in present:
                    continue
                data = _portable(store.query_arrow(_select(table, window), params, binary=True))
                if table == "runs" and window is not None and data.num_rows:   # the run ends where the window does
                    data = data.set_column(data.schema.get_field_index("end_ns"), "end_ns",
                                           pa.array([window[1]], type=pa.int64()))
                if table == "runs" and data.num_rows:
                    manifest["boot_id"] = data.column("boot_id")[0].as_py().decode(errors="replace")
                buf = io.BytesIO()
                pq.write_table(data, buf, compression="zstd")
                blob = buf.getvalue()
                z.writestr(f"{table}.parquet", blob)
                manifest["tables"][table] = {"file": f"{table}.parquet", "rows": data.num_rows,
                                             "sha256": hashlib.sha256(blob).hexdigest()}
            z.writestr("manifest.json", json.dumps(manifest, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return manifest


def read(path: str) -> tuple[Manifest, dict[str, pa.Table]]:
    """A run file's manifest and tables, every member checked; one-line errors for anything else."""
    try:
        with zipfile.ZipFile(path) as z:
            try:
                manifest = json.loads(z.read("manifest.json"))
            except KeyError:
                raise RunFileError(f"{path}: not an osrewind run file (no manifest)") from None
            if not isinstance(manifest, dict) or not isinstance(manifest.get("format"), int):
                raise RunFileError(f"{path}: not an osrewind run file (bad manifest)")
            if manifest["format"] > FORMAT:
                raise RunFileError(f"{path} was written by a newer osrewind ({manifest.get('osrewind', '?')}, "
                                   f"run file format {manifest['format']}); this one ({__version__}) reads up to "
                                   f"format {FORMAT}: upgrade osrewind")
            tables = {}
            for table, info in manifest.get("tables", {}).items():
                if table not in TABLES:
                    continue
                blob = z.read(info["file"])
                if hashlib.sha256(blob).hexdigest() != info["sha256"]:
                    raise RunFileError(f"{path}: {info['file']} is corrupt (its checksum does not match)")
                # one thread: Arrow's pool, started for a read just before the process exits (a
                # bad file's one-line error), aborted the interpreter's exit now and then
                # ("terminate called without an active exception", SIGABRT instead of exit 2)
                tables[table] = pq.read_table(io.BytesIO(blob), use_threads=False)
                if tables[table].num_rows != info["rows"]:
                    raise RunFileError(f"{path}: {info['file']} holds {tables[table].num_rows} rows, "
                                       f"the manifest says {info['rows']}")
    except FileNotFoundError:
        raise RunFileError(f"no file {path}") from None
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, pa.ArrowException) as exc:
        if isinstance(exc, RunFileError):
            raise
        raise RunFileError(f"{path}: not an osrewind run file, or truncated or corrupt ({_short(exc)})") from None
    if "runs" not in tables or tables["runs"].num_rows != 1:
        raise RunFileError(f"{path}: holds no run")
    return Manifest(manifest), tables


def manifest(path: str) -> Manifest:
    """A run file's manifest alone (its members are checked when it is read)."""
    try:
        with zipfile.ZipFile(path) as z:
            raw = json.loads(z.read("manifest.json"))
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as exc:
        raise RunFileError(f"{path}: not an osrewind run file, or truncated or corrupt ({_short(exc)})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("run_id"), str):
        raise RunFileError(f"{path}: not an osrewind run file (bad manifest)")
    return Manifest(raw)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


def import_(store, path: str, as_name: str | None = None) -> str:
    """Put the run of ``path`` into ``store`` (open for writing); returns its run id. A run already
    there is refused, unless ``as_name``: then it comes in as a new run (a new id) of that name."""
    manifest, tables = read(path)
    run_id = manifest.run_id
    exists = store.query("SELECT count() FROM runs WHERE run_id = {run:UUID}", {"run": run_id})[0][0]
    if as_name is None and exists:
        raise UsageError(f"run {run_id[:8]} '{manifest.name}' is already in this store: "
                         "'osrewind import FILE --as NAME' imports it as a new run")
    if as_name is not None:
        run_id = str(uuid.uuid4())
    for table, data in tables.items():
        if as_name is not None:
            data = data.set_column(data.schema.get_field_index("run_id"), "run_id",
                                   pa.array([run_id] * data.num_rows, type=pa.string()))
            if table == "runs":
                data = data.set_column(data.schema.get_field_index("name"), "name",
                                       pa.array([as_name.encode()], type=data.schema.field("name").type))
        store.insert_arrow(table, data)
    return run_id


# ------------------------------------------------------------------ reading a run file in place

OPENED_KEPT = 8   # run files kept imported in the cache (the least recently opened go)


def cache_root() -> str:
    return str(cache_dir("runfiles"))


def opened(paths: list[str], prepare) -> str:
    """A store holding the runs of these run files (each file's run id kept), for the reading commands
    that are given a file instead of a run: imported once into the cache, keyed by the files' paths,
    sizes and modification times, and reused while they are unchanged. ``prepare(location)`` fills a
    new store (imports, then indexes). Returns the store's location."""
    import shutil

    key = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        key.update(f"{os.path.realpath(p)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
    root = cache_root()
    where = os.path.join(root, key.hexdigest()[:20])
    if not os.path.exists(os.path.join(where, ".complete")):
        shutil.rmtree(where, ignore_errors=True)
        os.makedirs(root, mode=0o700, exist_ok=True)
        try:
            prepare(where)
        except BaseException:
            shutil.rmtree(where, ignore_errors=True)
            raise
        with open(os.path.join(where, ".complete"), "w"):
            pass
    os.utime(os.path.join(where, ".complete"))
    kept = sorted((os.path.join(root, d) for d in os.listdir(root)),
                  key=lambda d: os.path.getmtime(os.path.join(d, ".complete")) if os.path.exists(
                      os.path.join(d, ".complete")) else 0, reverse=True)
    for old in kept[OPENED_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)
    return where
