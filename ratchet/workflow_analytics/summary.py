"""Per-step and per-execution figures over many executions of one workflow type (pure)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from ratchet.workflow_analytics.critical_path import critical_path, path_split
from ratchet.workflow_analytics.steps import Execution, Step

PERCENTILES = (50, 90, 95, 99)
_TOP_FAILURES = 3


def percentiles(values: list[float]) -> dict[str, float] | None:
    """p50/p90/p95/p99 (linear interpolation), None for no values."""
    if not values:
        return None
    found = np.percentile(np.asarray(values, dtype=float), PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, found, strict=True)}


def step_key(step: Step) -> str:
    """How steps group: an activity by its type, a child by its workflow type, timers together."""
    return {"activity": step.name, "child": f"child {step.name}", "timer": "timer"}[step.kind]


def summarize(executions: list[Execution]) -> dict[str, Any]:
    """The figures `ratchet workflows analyze` reports: per step, per execution, and along critical paths."""
    by_step: dict[str, list[Step]] = defaultdict(list)
    on_path: dict[str, list[float]] = defaultdict(list)  # per step, its share of each execution's total
    splits = []
    for execution in executions:
        for step in execution.steps:
            by_step[step_key(step)].append(step)
        path = critical_path(execution)
        splits.append(path_split(execution, path))
        shares: dict[str, float] = defaultdict(float)
        for step in path:
            shares[step_key(step)] += (step.total_ms or 0.0) / execution.total_ms if execution.total_ms else 0.0
        for key in by_step:
            on_path[key].append(shares.get(key, 0.0))
    total = sum(e.total_ms for e in executions) or 1.0
    steps: list[dict[str, Any]] = []
    for key, group in by_step.items():
        failures = Counter(s.failure or s.last_failure for s in group if s.failure or s.last_failure)
        path_shares = on_path[key] + [0.0] * (len(executions) - len(on_path[key]))
        steps.append(
            {
                "step": key,
                "kind": group[0].kind,
                "count": len(group),
                "per_execution": round(len(group) / len(executions), 3),
                "wait_ms": percentiles([s.wait_ms for s in group if s.wait_ms is not None]),
                "work_ms": percentiles([s.work_ms for s in group if s.work_ms is not None]),
                "attempts": {"max": max(s.attempt for s in group), "retried": sum(s.attempt > 1 for s in group)},
                "outcomes": dict(Counter(s.outcome for s in group)),
                "failures": [{"reason": r, "count": n} for r, n in failures.most_common(_TOP_FAILURES)],
                "critical_path_share": round(float(np.mean(path_shares)), 4) if path_shares else 0.0,
                "task_queues": sorted({s.task_queue for s in group if s.task_queue}),
            }
        )
    steps.sort(key=lambda s: s["critical_path_share"], reverse=True)
    return {
        "executions": len(executions),
        "daily": daily(executions),
        "statuses": dict(Counter(e.status for e in executions)),
        "total_ms": percentiles([e.total_ms for e in executions]),
        "time_split": {
            "queue_wait": round(sum(s.queue_wait_ms for s in splits) / total, 4),
            "work": round(sum(s.work_ms for s in splits) / total, 4),
            "timers": round(sum(s.timers_ms for s in splits) / total, 4),
            "workflow": round(sum(s.workflow_ms for s in splits) / total, 4),
        },
        "steps": steps,
    }


def daily(executions: list[Execution]) -> list[dict[str, Any]]:
    """Per day the executions started (UTC): how many, and their total time's percentiles."""
    by_day: dict[str, list[float]] = defaultdict(list)
    for execution in executions:
        by_day[f"{execution.started_at:%Y-%m-%d}"].append(execution.total_ms)
    return [
        {"day": day, "executions": len(times), "total_ms": percentiles(times)} for day, times in sorted(by_day.items())
    ]


def against_baseline(summary: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per step in both: its work and wait p95 now and in the baseline, and now over then (a ratio; None where
    either is 0)."""
    before = {s["step"]: s for s in baseline.get("steps", [])}
    changes = []
    for step in summary["steps"]:
        old = before.get(step["step"])
        if old is None:
            continue
        row: dict[str, Any] = {"step": step["step"]}
        for figure in ("work_ms", "wait_ms"):
            now, then = step.get(figure), old.get(figure)
            row[f"{figure}_p95"] = now["p95"] if now else None
            row[f"{figure}_p95_baseline"] = then["p95"] if then else None
            row[f"{figure}_p95_ratio"] = (
                round(now["p95"] / then["p95"], 3) if now and then and then["p95"] > 0 else None
            )
        changes.append(row)
    return changes
