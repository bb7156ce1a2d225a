"""What the bench scripts share: a progress line, min/median summaries and their formatting, the dd
flood (its command and its own elapsed time), and the `--rev REV` export of osrewind as committed at
a git revision.

The scripts run as `python bench/X.py`, so this folder is on sys.path and they `import benchlib`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STDERR_TTY = sys.stderr.isatty()


# ---------------------------------------------------------------- progress on stderr

def progress(msg: str) -> None:
    """One progress line on stderr: rewritten in place on a terminal, one line per call otherwise."""
    sys.stderr.write(("\r\033[K" + msg[:200]) if STDERR_TTY else msg + "\n")
    sys.stderr.flush()


def progress_end() -> None:
    """Ends the in-place progress line (on a terminal) so that what follows starts on its own line."""
    if STDERR_TTY:
        sys.stderr.write("\n")


# ---------------------------------------------------------------- min / median over rounds

def summarize(xs: list[float | None]) -> dict:
    """n, min and median of the values that are not None."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"n": 0, "min": None, "median": None}
    return {"n": len(xs), "min": min(xs), "median": statistics.median(xs)}


def ratio(a: dict, b: dict | None) -> dict:
    """a / b of two summaries, of the mins and of the medians (None where either side has none)."""
    if not b or not a.get("n") or not b.get("n"):
        return {"min": None, "median": None}
    return {k: (a[k] / b[k] if a[k] and b[k] else None) for k in ("min", "median")}


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def pair(d: dict | None, spec: str) -> str:
    """A summary's "min/median"."""
    return "-" if not d else f"{fmt(d.get('min'), spec)}/{fmt(d.get('median'), spec)}"


# ---------------------------------------------------------------- the dd flood

DD = os.path.realpath(shutil.which("dd") or "/usr/bin/dd")  # one real path (bpftrace -c wants it)
DD_ENV = {**os.environ, "LC_ALL": "C", "LANG": "C"}          # dd's "copied, X s" line in English
COPIED = re.compile(r"copied, ([0-9.]+(?:e[-+]?\d+)?) s")


def dd_cmd(n: int) -> list[str]:
    """`dd if=/dev/zero of=/dev/null bs=1 count=N`: two syscalls per byte."""
    return [DD, "if=/dev/zero", "of=/dev/null", "bs=1", f"count={n}"]


def dd_seconds(text: str) -> float | None:
    """dd's own elapsed time, from the last "copied, X s" line of its stderr (None if there is none)."""
    m = COPIED.findall(text)
    return float(m[-1]) if m else None


def run_dd(n: int) -> float:
    """Runs dd_cmd(n) here; its own elapsed time (RuntimeError if dd failed)."""
    p = subprocess.run(dd_cmd(n), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=DD_ENV, text=True)
    t = dd_seconds(p.stderr)
    if p.returncode != 0 or t is None:
        raise RuntimeError(f"dd failed: {p.stderr.strip()[-200:]}")
    return t


# ---------------------------------------------------------------- osrewind record --json

def last_json_line(out: str) -> dict:
    """The summary `record --json` prints: the last stdout line that starts with "{" ({} if none parses)."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}


# ---------------------------------------------------------------- --rev REV

def export_rev(rev: str, dest: Path) -> None:
    """Exports REV of this repository into DEST (created here), runnable as `python -m osrewind` with
    PYTHONPATH=DEST: the package maps its stages from top-level folders (pyproject's package-dir), so
    they are linked in under osrewind/."""
    import tomllib  # noqa: PLC0415 - here, not at the top: Python 3.11+, and only --rev needs it

    dest.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    with open(dest / "pyproject.toml", "rb") as f:
        pkg_dirs = tomllib.load(f).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    for pkg, folder in pkg_dirs.items():
        parts = pkg.split(".")
        if len(parts) == 2 and parts[0] == "osrewind":
            link = dest / "osrewind" / parts[1]
            if not os.path.exists(link):
                os.symlink(dest / folder, link)


def tree_env(tree: Path | None, base: dict | None = None) -> dict:
    """The environment (``base``, else this process's) in which ``python -m osrewind`` runs osrewind
    from ``tree`` (an ``export_rev`` export), or with None the installed one: a PYTHONPATH left over
    from the caller would choose another. Run it outside the repository (cwd comes first on the path)."""
    env = dict(os.environ if base is None else base)
    if tree is None:
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(tree)
    return env


def describe_tree(rev: str | None, dirty_paths: list[str]) -> str:
    """What is benched: "git abc123" for --rev, else "working tree at abc123", plus " (with uncommitted
    changes)" when git status sees changes under DIRTY_PATHS."""
    short = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev or "HEAD"],
                           capture_output=True, text=True).stdout.strip()
    if rev:
        return f"git {short}"
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", *dirty_paths],
                           capture_output=True, text=True).stdout.strip()
    return f"working tree at {short}" + (" (with uncommitted changes)" if dirty else "")
