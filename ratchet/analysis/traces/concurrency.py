"""How many intervals (calls served, connections held) were in progress at once, and when a limit held.

A pool or worker limit of N shows twice in spans: never more than N served at once, and every call that
waited did so while N were being served (it starts when one of them ends). A host whose CPU is taken by
others shows the first sign too: its event loop gets to one call after another, a few milliseconds apart,
and however many were asked at once the number served levels off below them. But there the calls wait
while fewer than that level are served, the service still getting to the ones already there; so the
detectors keep a wait only when the service sat at its most-served-at-once for most of it.
"""

from __future__ import annotations

import bisect
from itertools import accumulate

Interval = tuple[int, int]


def _steps(intervals: list[Interval]) -> list[tuple[int, int]]:
    """(instant, change) sorted so that one interval ending as another starts counts as one, not both."""
    return sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])


def max_concurrency(intervals: list[Interval]) -> int:
    """The most intervals in progress at one instant (one ending as another starts: not both)."""
    running = peak = 0
    for _, change in _steps(intervals):
        running += change
        peak = max(peak, running)
    return peak


class TimeAtLimit:
    """The stretches of time during which ``limit`` or more of ``intervals`` were in progress."""

    def __init__(self, intervals: list[Interval], limit: int) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        running = 0
        for instant, change in _steps(intervals):
            was_at_limit = running >= limit
            running += change
            if not was_at_limit and running >= limit:
                self._starts.append(instant)
            elif was_at_limit and running < limit:
                self._ends.append(instant)
        self._covered_before = [
            0,
            *accumulate(end - start for start, end in zip(self._starts, self._ends, strict=True)),
        ]

    def _covered_until(self, instant: int) -> int:
        """Time at the limit from the beginning until ``instant``."""
        i = bisect.bisect_right(self._starts, instant)
        if i == 0:
            return 0
        return self._covered_before[i - 1] + min(instant, self._ends[i - 1]) - self._starts[i - 1]

    def share_of(self, start: int, end: int) -> float:
        """The share of [start, end] spent at the limit (0 for an empty window)."""
        if end <= start:
            return 0.0
        return (self._covered_until(end) - self._covered_until(start)) / (end - start)
