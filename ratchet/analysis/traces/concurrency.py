"""How many intervals (calls served, connections held) were in progress at once, and at a given instant.

A pool or worker limit shows twice in spans: never more than its size served at once, and a call that waits
does so while the service is held: from the moment its wait is long until its turn, the service serves no
more than it did then (one starts only as another ends). That holds for a pool per process too, where one
process drains its queue while another sits idle. A host whose CPU is taken by others shows the first sign
only: its event loop gets to the calls one after another, a few milliseconds apart, the number served rising
while they wait, and however many were asked at once it levels off below them.
"""

from __future__ import annotations

import bisect

Interval = tuple[int, int]


def max_concurrency(intervals: list[Interval]) -> int:
    """The most intervals in progress at one instant (one ending as another starts: not both)."""
    running = peak = 0
    for _, change in sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]):
        running += change
        peak = max(peak, running)
    return peak


class InProgress:
    """How many of ``intervals`` were in progress at an instant (one ending as another starts: not both)."""

    def __init__(self, intervals: list[Interval]) -> None:
        self._starts = sorted(start for start, _ in intervals)
        self._ends = sorted(end for _, end in intervals)

    def at(self, instant: int) -> int:
        return bisect.bisect_right(self._starts, instant) - bisect.bisect_right(self._ends, instant)
