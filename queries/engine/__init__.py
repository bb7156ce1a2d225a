"""The rewind engine: a pure state machine over recorded facts (``machine``: one handler per fact
kind, by family in ``process``, ``files``, ``network``, ``scheduler``; what it holds in ``model``)
and its keyframe encoding (``codec``). Nothing here reads a store or keeps a cache: ``queries/state``
feeds it, ``queries/keyframes`` stores its snapshots, ``queries/cache`` keeps what an open recording
remembers."""

from osrewind.queries.engine.machine import Fact, Machine
from osrewind.queries.engine.model import CpuSlot, Fd, HistoryLog, Proc, Sock

__all__ = ["CpuSlot", "Fact", "Fd", "HistoryLog", "Machine", "Proc", "Sock"]
