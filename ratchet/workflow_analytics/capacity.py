"""How many executions an hour a task queue's workers sustain, from the histories alone (pure).

The histories do not say how many activity slots the workers have; they show how many of the queue's steps
ran at once. While the queue was saturated (steps waited for a slot, which ``resource_exhaustion`` detects),
that peak is the slots in use, and the capacity is measured: that many slots, each busy for the executions'
mean work on the queue. Otherwise the workers were never all busy, and the same figure is a lower bound.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ratchet.workflow_analytics.steps import Execution

_HOUR_MS = 3_600_000.0
# A slot is freed when its activity returns, and the next task may be handed out before the completion is
# recorded: two steps "at once" for a few milliseconds on one slot. A peak counts once held this long.
_MIN_HELD_MS = 20.0


def _peak_running(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open together for at least ``_MIN_HELD_MS`` (a close before an open at one instant)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for (at, change), (following, _) in zip(events, [*events[1:], (float("inf"), 0)], strict=True):
        running += change
        if following - at >= _MIN_HELD_MS:
            peak = max(peak, running)
    return peak


def queue_capacity(executions: list[Execution], saturated_queues: set[str]) -> list[dict[str, Any]]:
    """Per task queue of the executions' activities: the peak of steps running at once, the mean work per
    execution on it, and the executions per hour that many slots sustain (measured on a saturated queue, a
    lower bound on the others)."""
    running: dict[str, list[tuple[float, float]]] = defaultdict(list)
    work: dict[str, float] = defaultdict(float)
    for execution in executions:
        base = execution.started_at.timestamp() * 1000
        for step in execution.steps:
            if step.kind != "activity" or step.started_ms is None or step.closed_ms is None:
                continue
            running[step.task_queue].append((base + step.started_ms, base + step.closed_ms))
            work[step.task_queue] += step.closed_ms - step.started_ms
    found = []
    for queue, intervals in sorted(running.items()):
        per_execution = work[queue] / len(executions)
        if per_execution <= 0:
            continue
        peak = _peak_running(intervals)
        found.append(
            {
                "task_queue": queue,
                "peak_running": peak,
                "work_ms_per_execution": round(per_execution, 3),
                "executions_per_hour": round(float(np.floor(peak * _HOUR_MS / per_execution))),
                "bound": "measured" if queue in saturated_queues else "at least",
            }
        )
    return found
