"""The critical path of one execution (pure): the steps that set its end.

Walking back from the execution's close: the step that closed last, then the step that closed last before
that one was scheduled, and so on (the last-finishing predecessor). Steps overlapping a path step that closed
earlier did not delay the end. Time on the path splits into the path steps' queue wait, their work, timers
(and waits for people, whose gate timers close when the answer comes), and what is left: the workflow's own
tasks and waits for signals with no timer.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.workflow_analytics.steps import Execution, Step

_EPSILON_MS = 0.001


@dataclass(frozen=True)
class PathSplit:
    """How an execution's time divides along its critical path (ms; the four add up to its total)."""

    queue_wait_ms: float
    work_ms: float
    timers_ms: float
    workflow_ms: float


def critical_path(execution: Execution) -> list[Step]:
    """The path steps, earliest first."""
    closed = [s for s in execution.steps if s.closed_ms is not None]
    path: list[Step] = []
    horizon = execution.total_ms
    while True:
        before = [s for s in closed if s.closed_ms is not None and s.closed_ms <= horizon + _EPSILON_MS]
        if not before:
            break
        last = max(before, key=lambda s: (s.closed_ms or 0.0, -s.scheduled_ms))
        path.append(last)
        closed = [s for s in closed if s.scheduled_ms < last.scheduled_ms - _EPSILON_MS]
        horizon = last.scheduled_ms
    return path[::-1]


def path_split(execution: Execution, path: list[Step]) -> PathSplit:
    wait = sum(s.wait_ms or 0.0 for s in path if s.kind != "timer")
    work = sum(s.work_ms or 0.0 for s in path if s.kind != "timer")
    timers = sum(s.total_ms or 0.0 for s in path if s.kind == "timer")
    return PathSplit(wait, work, timers, max(execution.total_ms - wait - work - timers, 0.0))
