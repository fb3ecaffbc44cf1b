"""Variants of a step compared (pure): the same step run against different providers, models or queues.

A step's variant is a field of its input (e.g. ``provider``: the first JSON object among its arguments that has
it) or its task queue (``task_queue``). Per variant: calls, time from schedule to close (retries and their
backoff included: what the workflow waits), failure rate, and cost (a numeric field of its result). The
recommendation weighs performance and cost (0.6 and 0.4 by default), each scored against the best variant.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
from typing import Any

import numpy as np

from ratchet.workflow_analytics.steps import Execution, Step
from ratchet.workflow_analytics.summary import percentiles, step_key

MIN_CALLS = 3
DEFAULT_WEIGHTS = (0.6, 0.4)


def _objects(text: str) -> list[dict[str, Any]]:
    found = []
    for part in text.split("\x1e"):
        with contextlib.suppress(ValueError):
            value = json.loads(part)
            if isinstance(value, dict):
                found.append(value)
    return found


SEARCH_ATTRIBUTE = "search_attribute:"


def variant_of(step: Step, field: str, execution: Execution | None = None) -> str | None:
    """The step's variant by ``field``: ``task_queue``, ``summary`` (the activity's summary),
    ``search_attribute:NAME`` (the execution's), or a field of the step's input."""
    if field == "task_queue":
        return step.task_queue or None
    if field == "summary":
        return step.summary or None
    if field.startswith(SEARCH_ATTRIBUTE):
        return execution.attributes.get(field.removeprefix(SEARCH_ATTRIBUTE)) if execution is not None else None
    if not step.input.readable:
        return None
    for value in _objects(step.input.text):
        if field in value and isinstance(value[field], str | int | float):
            return str(value[field])
    return None


def cost_of(step: Step, field: str) -> float | None:
    if not step.result.readable:
        return None
    for value in _objects(step.result.text):
        if isinstance(value.get(field), int | float) and not isinstance(value.get(field), bool):
            return float(value[field])
    return None


def call_cost(step: Step, cost_field: str | None, price: float | None) -> float | None:
    """What the call cost: its result's cost field, else its variant's price (None: unknown)."""
    found = cost_of(step, cost_field) if cost_field else None
    return found if found is not None else price


def compare_variants(
    executions: list[Execution],
    field: str,
    *,
    cost_field: str | None = None,
    weights: tuple[float, float] = DEFAULT_WEIGHTS,
    prices: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Per step with two variants or more (each with ``MIN_CALLS`` calls): the variants and the one to use. A
    call's cost is its result's ``cost_field``, else its variant's price in ``prices``."""
    groups: dict[str, dict[str, list[Step]]] = defaultdict(lambda: defaultdict(list))
    for execution in executions:
        for step in execution.steps:
            variant = variant_of(step, field, execution) if step.kind != "timer" else None
            if variant is not None:
                groups[step_key(step)][variant].append(step)
    comparisons = []
    for key, variants in groups.items():
        kept = {name: steps for name, steps in variants.items() if len(steps) >= MIN_CALLS}
        if len(kept) < 2:
            continue
        rows: list[dict[str, Any]] = []
        for name, steps in sorted(kept.items()):
            times = [s.total_ms for s in steps if s.total_ms is not None]
            price = (prices or {}).get(name)
            costs = [c for s in steps if (c := call_cost(s, cost_field, price)) is not None]
            rows.append(
                {
                    "variant": name,
                    "calls": len(steps),
                    "time_ms": percentiles(times),
                    "failure_rate": round(
                        sum(s.attempt > 1 or s.outcome != "completed" for s in steps) / len(steps), 4
                    ),
                    "mean_cost": round(float(np.mean(costs)), 6) if costs else None,
                }
            )
        _score(rows, weights)
        best = max(rows, key=lambda r: r["score"])
        comparisons.append(
            {
                "step": key,
                "field": field,
                "weights": {"performance": weights[0], "cost": weights[1]},
                "variants": rows,
                "recommended": best["variant"],
                "why": _why(best, rows),
            }
        )
    return comparisons


def _score(rows: list[dict[str, Any]], weights: tuple[float, float]) -> None:
    """Performance: the best p95 over this one's (1 for the fastest); cost likewise; weighted. Without costs
    for every variant, performance alone decides."""
    best_p95 = min(r["time_ms"]["p95"] for r in rows if r["time_ms"])
    costs = [r["mean_cost"] for r in rows]
    with_cost = all(c is not None and c > 0 for c in costs)
    best_cost = min(c for c in costs if c is not None) if with_cost else None
    for row in rows:
        performance = best_p95 / row["time_ms"]["p95"] if row["time_ms"] and row["time_ms"]["p95"] > 0 else 0.0
        row["performance_score"] = round(performance, 4)
        if with_cost and best_cost is not None:
            row["cost_score"] = round(best_cost / row["mean_cost"], 4)
            row["score"] = round(weights[0] * performance + weights[1] * row["cost_score"], 4)
        else:
            row["score"] = round(performance, 4)


def _why(best: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    others = [r for r in rows if r is not best]
    text = f"{best['variant']}: p95 {best['time_ms']['p95']:.0f} ms"
    if best["mean_cost"] is not None:
        text += f", {best['mean_cost']:g} per call"
    text += f", {best['failure_rate']:.0%} retried or failed; against " + "; ".join(
        f"{r['variant']}: p95 {r['time_ms']['p95']:.0f} ms"
        + (f", {r['mean_cost']:g} per call" if r["mean_cost"] is not None else "")
        + f", {r['failure_rate']:.0%} retried or failed"
        for r in others
    )
    return text
