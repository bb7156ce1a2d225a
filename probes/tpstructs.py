"""The argument structs of the program's tracepoints, made once per kernel build and kept on disk.

BCC makes ``struct tracepoint__CAT__EVENT`` for every ``TRACEPOINT_PROBE(CAT, EVENT)`` it compiles by
reading the tracepoint's tracefs ``format`` file, and reading one takes the kernel's ``event_mutex``.
A recording's detach helper (``loader._release_in_background``) holds that mutex through RCU grace
periods in every tracepoint it releases, so a recording started right after another waited for the
whole release in its compile: reading the program's 62 format files took 2.45 s right after a
``record`` against 7.6 ms idle, and ``record -- true`` took 4.3-4.9 s back to back against 2.9-3.3.

So the structs BCC makes are captured once (a small program of empty probes, compiled with BCC's
preprocessor output on), renamed ``struct osr_tp__CAT__EVENT`` and cached under the user's cache
directory, keyed by the kernel build, BCC's version and the list of tracepoints. The program is then
compiled with ``TRACEPOINT_PROBE`` defined to declare ``osr_tp__CAT__EVENT`` functions over those
structs (:func:`override`): BCC reads no format file for them, and ``loader.Probe`` attaches them by
name. Where anything of this fails, the program is compiled as BCC does it by itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
from pathlib import Path

from osrewind.userdirs import cache_dir

PREFIX = "osr_tp__"
_PROBE = re.compile(r"^TRACEPOINT_PROBE\((\w+),\s*(\w+)\)", re.M)
_STRUCT = re.compile(r"^struct tracepoint__(\w+?)__(\w+) \{\n.*?^\};\n", re.M | re.S)


def tracepoints(source: str, tracefs: Path) -> list[tuple[str, str]]:
    """The (category, event) of every ``TRACEPOINT_PROBE`` in ``source`` that this kernel has."""
    seen = dict.fromkeys(_PROBE.findall(source))
    return [tp for tp in seen if (tracefs / "events" / tp[0] / tp[1]).is_dir()]


def _key(tps: list[tuple[str, str]], bcc_version: str) -> str:
    uname = os.uname()
    text = "\n".join([uname.release, uname.version, uname.machine, bcc_version, *(f"{c}:{e}" for c, e in tps)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _path(bcc, tps: list[tuple[str, str]]) -> Path:
    return cache_dir() / f"tracepoint-structs-{_key(tps, getattr(bcc, '__version__', ''))}.h"


def cached(bcc, tps: list[tuple[str, str]]) -> str | None:
    """The structs for ``tps`` if the cache has them all (nothing is captured)."""
    try:
        text = _path(bcc, tps).read_text()
    except OSError:
        return None
    return text if tps and _complete(text, tps) else None


def structs(bcc, tps: list[tuple[str, str]]) -> str | None:
    """C declarations of ``struct osr_tp__CAT__EVENT`` for ``tps``, as BCC makes them on this kernel:
    from the cache, else captured from BCC (and cached). None when they cannot be had."""
    if not tps:
        return None
    text = cached(bcc, tps)
    if text is not None:
        return text
    path = _path(bcc, tps)
    text = _capture(bcc, tps)
    if text is None:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tracepoint-structs-")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError:
        pass   # no cache (a read-only home): made again next time, still right
    return text


def _complete(text: str, tps: list[tuple[str, str]]) -> bool:
    return all(f"struct {PREFIX}{c}__{e} {{" in text for c, e in tps)


def _capture(bcc, tps: list[tuple[str, str]]) -> str | None:
    """The structs BCC generates for ``tps``: an empty probe each, compiled with BCC's preprocessor
    output (written to this process's stderr by BCC's C++ side) caught in a file."""
    stub = "".join(f"TRACEPOINT_PROBE({c}, {e}) {{ return 0; }}\n" for c, e in tps)
    autoload = bcc.BPF._trace_autoload
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as out:
        saved = {fd: os.dup(fd) for fd in (1, 2)}   # BCC prints its debug output to both
        try:
            for fd in saved:
                os.dup2(out.fileno(), fd)
            bcc.BPF._trace_autoload = lambda self: None   # compiled only: nothing loaded or attached
            try:
                bcc.BPF(text=stub.encode(), debug=bcc.DEBUG_PREPROCESSOR).cleanup()
            finally:
                bcc.BPF._trace_autoload = autoload
                for fd, was in saved.items():
                    os.dup2(was, fd)
        except Exception:  # noqa: BLE001, S110 - the stubs need not build (some types come with the
            pass           # program's own headers): the structs are printed before, and checked below
        finally:
            for was in saved.values():
                os.close(was)
        out.seek(0)
        printed = out.read().decode(errors="replace")
    found = {(m.group(1), m.group(2)): m.group(0) for m in _STRUCT.finditer(printed)}
    if set(found) != set(tps):
        return None
    return "".join(found[tp].replace("struct tracepoint__", f"struct {PREFIX}", 1) for tp in tps)


def override(struct_text: str) -> str:
    """What goes before the program's first probe: ``TRACEPOINT_PROBE`` declaring ``osr_tp__``
    functions over the cached structs (BCC's own macro names ``tracepoint__`` ones, whose structs it
    makes from the format files)."""
    return ("#undef TRACEPOINT_PROBE\n"
            f"#define TRACEPOINT_PROBE(category, event) int {PREFIX}##category##__##event"
            f"(struct {PREFIX}##category##__##event *args)\n" + struct_text)


def attach_name(function: str) -> str | None:
    """``osr_tp__CAT__EVENT`` -> ``CAT:EVENT`` (the tracepoint to attach it to); None for others."""
    if not function.startswith(PREFIX):
        return None
    category, sep, event = function[len(PREFIX):].partition("__")
    return f"{category}:{event}" if sep and category and event else None
