"""Where osrewind keeps what it can make again: the user's cache directory (``$XDG_CACHE_HOME``, else
``~/.cache``; root's under sudo), ``osrewind/`` in it. Used by every stage: the kernel's BTF offsets
and tracepoint structs (probes), run files opened in place (ingest)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """``<cache>/osrewind/<parts...>`` (not created here)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "osrewind", *parts)
