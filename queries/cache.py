"""What an open recording store remembers between questions, in one place.

Scrubbing asks about nearby instants again and again: where a run's keyframes are, the last few
keyframes decoded, the facts between two keyframes, the baseline's uids. All of it lives in one
:class:`RecordingCache` per open store (:func:`cache_for`), behind one lock (the TUI asks from
worker threads), each part bounded, and dropped per run when a run is indexed again
(:meth:`RecordingCache.forget`). Nothing is hung on the store object itself.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DOCS_KEPT = 16          # decoded keyframes kept
INTERVALS_KEPT = 8      # spans of facts between two keyframes kept


class _Bounded:
    """A least-recently-used map of at most ``size`` entries (keys start with the run id)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple) -> Any:
        value = self.items.get(key)
        if value is not None:
            self.items.move_to_end(key)
        return value

    def put(self, key: tuple, value: Any) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def drop_run(self, run_id: str) -> None:
        for key in [k for k in self.items if k[0] == run_id]:
            del self.items[key]


class RecordingCache:
    """An open store's memory of its runs. Every method takes the lock; values are computed outside
    it (:meth:`remember` may compute one twice when two threads race, never a wrong one)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index_layout: str | None = None                 # "gen" once seen: tables are never dropped
        self.positions: dict[str, list[tuple[int, int]]] = {}  # run -> its keyframes' (ts, seq)
        self.generations: dict[str, int] = {}                # run -> its current index build
        self.docs = _Bounded(DOCS_KEPT)                      # (run, ts, seq) -> decoded keyframe
        self.intervals = _Bounded(INTERVALS_KEPT)            # (run, ts, seq) -> facts up to the next keyframe
        self.uids: dict[str, dict[int, int]] = {}            # run -> baseline pid -> uid
        self.tests: dict[str, list] = {}                     # run -> its tests (pytest --osrewind)

    def remember(self, table: dict, key, compute: Callable[[], Any]) -> Any:
        """``table[key]``, computed once (``table`` is one of the dicts above)."""
        with self.lock:
            if key in table:
                return table[key]
        value = compute()
        with self.lock:
            return table.setdefault(key, value)

    def bounded_get(self, part: _Bounded, key: tuple) -> Any:
        with self.lock:
            return part.get(key)

    def bounded_put(self, part: _Bounded, key: tuple, value: Any) -> None:
        with self.lock:
            part.put(key, value)

    def forget(self, run_id: str) -> None:
        """Everything remembered of one run (its keyframes were just (re)written)."""
        with self.lock:
            self.positions.pop(run_id, None)
            self.generations.pop(run_id, None)
            self.uids.pop(run_id, None)
            self.tests.pop(run_id, None)
            self.docs.drop_run(run_id)
            self.intervals.drop_run(run_id)


_caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def cache_for(store) -> RecordingCache:
    """The open store's cache (one per store object, gone with it)."""
    with _caches_lock:
        cache = _caches.get(store)
        if cache is None:
            cache = _caches[store] = RecordingCache()
        return cache
