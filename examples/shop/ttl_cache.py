"""A small in-process cache whose time-to-live is read at each lookup (it comes from a flag that may change)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from examples.shop.metrics import CACHE_HITS, CACHE_MISSES

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Values by key, served while younger than the TTL given at lookup; at most ``max_entries`` kept."""

    def __init__(self, name: str, *, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._hits, self._misses = CACHE_HITS.labels(cache=name), CACHE_MISSES.labels(cache=name)
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, ttl_s: float, compute: Callable[[], V]) -> V:
        """The cached value while younger than ``ttl_s``, else ``compute()`` (cached when ``ttl_s`` > 0).

        A TTL of 0 turns the cache off and forgets what it held, so switching it on later never serves
        something computed before it was switched off.
        """
        if ttl_s <= 0:
            if self._entries:
                with self._lock:
                    self._entries.clear()
            self._misses.inc()
            return compute()
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and now - entry[0] < ttl_s:
            self._hits.inc()
            return entry[1]
        self._misses.inc()
        value = compute()  # outside the lock: two misses on one key may both compute, never block each other
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))  # the oldest insertion
            self._entries[key] = (now, value)
        return value
