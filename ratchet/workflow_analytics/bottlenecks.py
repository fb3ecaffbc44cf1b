"""Bottlenecks of a workflow type, from the steps of its executions (pure), with the type names users of
workflow tooling expect: slow_step, resource_exhaustion, api_limit, sequential_dependency, cache_miss,
inefficient_algorithm. Each carries its evidence (workflow and event ids), a severity, its impact (the share of
the executions' time it costs) and an estimated improvement; a step with none of these patterns raises nothing.
"""

from __future__ import annotations

import itertools
import re
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats

from ratchet.workflow_analytics.critical_path import critical_path
from ratchet.workflow_analytics.steps import Execution, Step
from ratchet.workflow_analytics.summary import step_key

# slow_step: a step this share of the executions' critical path or more is where their time goes.
SLOW_STEP_SHARE = 0.5
# resource_exhaustion: queue waits that rise with the number of steps in progress (Spearman, one-sided), by
# enough to matter: the p95 of the wait beyond a lone step's (the dispatch and polling latency any step pays).
QUEUE_MIN_P95_MS = 50.0
QUEUE_MIN_RHO = 0.3
QUEUE_MAX_P_VALUE = 0.001
# api_limit: failures that say rate limit or quota, on this share of a step's calls.
API_LIMIT_MIN_SHARE = 0.1
_RATE_LIMITED = re.compile(r"\b429\b|rate.?limit|too many requests|quota|throttl|resource.?exhausted", re.IGNORECASE)
# cache_miss: identical inputs with identical results, on this share of a step's calls.
CACHE_MIN_HIT_RATIO = 0.2
# inefficient_algorithm: work growing with input size by at least this exponent (log-log fit), over a range
# of sizes wide enough to tell (this ratio between the largest and the smallest input).
SUPERLINEAR_EXPONENT = 1.3
MIN_SIZE_RANGE = 4.0
MIN_R_SQUARED = 0.8
MIN_RANK_CORRELATION = 0.8  # Spearman, size against work: they rise together
MIN_HALF_RANK_CORRELATION = 0.5
MIN_EXECUTIONS = 5
_EXAMPLES = 3


@dataclass
class Bottleneck:
    type: str
    step: str
    severity: str
    impact: float  # the share of the executions' time it costs
    estimated_improvement_ms: float  # per execution
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"estimated_improvement": round(self.impact, 4)}


def severity(share: float) -> str:
    return "critical" if share >= 0.75 else "high" if share >= 0.5 else "medium" if share >= 0.25 else "low"


def _examples(steps: list[Step]) -> dict[str, Any]:
    return {
        "workflow_ids": [s.workflow_id for s in steps[:_EXAMPLES]],
        "event_ids": [s.event_id for s in steps[:_EXAMPLES]],
    }


def find_bottlenecks(executions: list[Execution]) -> list[Bottleneck]:
    if len(executions) < MIN_EXECUTIONS:
        return []
    total_ms = sum(e.total_ms for e in executions) or 1.0
    found = (
        slow_steps(executions, total_ms)
        + resource_exhaustion(executions, total_ms)
        + api_limits(executions, total_ms)
        + sequential_dependencies(executions, total_ms)
        + cache_misses(executions, total_ms)
        + inefficient_algorithms(executions, total_ms)
    )
    return sorted(found, key=lambda b: b.impact, reverse=True)


def _at_most_medium(level: str) -> str:
    """Histories cannot show whether a step has side effects: a finding that assumes it has none stays medium."""
    return "medium" if level in ("high", "critical") else level


def _by_step(executions: list[Execution]) -> dict[str, list[Step]]:
    groups: dict[str, list[Step]] = defaultdict(list)
    for execution in executions:
        for step in execution.steps:
            if step.kind != "timer":
                groups[step_key(step)].append(step)
    return groups


def slow_steps(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """A step taking most of the critical path: the one whose speed sets the executions'."""
    on_path: dict[str, float] = defaultdict(float)
    examples: dict[str, list[Step]] = defaultdict(list)
    for execution in executions:
        for step in critical_path(execution):
            if step.kind != "timer":
                on_path[step_key(step)] += step.total_ms or 0.0
                examples[step_key(step)].append(step)
    found = []
    for key, ms in on_path.items():
        share = ms / total_ms
        if share >= SLOW_STEP_SHARE:
            found.append(
                Bottleneck(
                    "slow_step",
                    key,
                    severity(share),
                    round(share, 4),
                    round(ms / len(executions) / 2, 3),
                    f"{key}: {share:.0%} of the executions' time is spent in it on their critical path; "
                    "twice as fast, it would save half of that",
                    {"share_of_critical_path": round(share, 4), **_examples(examples[key])},
                )
            )
    return found


def _in_progress(executions: list[Execution]) -> dict[tuple[str, int], int]:
    """Per step (workflow id, event id): the steps of its task queue queued or running when it was scheduled,
    across all executions (absolute time). A retried step counts from its last attempt's start only: before
    it, it was mostly in backoff, holding no slot and no place in the queue (the history keeps no earlier
    attempt's times)."""
    by_queue: dict[str, list[tuple[float, float]]] = defaultdict(list)
    scheduled: list[tuple[str, float, tuple[str, int]]] = []
    for execution in executions:
        base = execution.started_at.timestamp() * 1000
        for step in execution.steps:
            if step.kind == "timer" or step.closed_ms is None:
                continue
            begins = step.scheduled_ms if step.attempt == 1 or step.started_ms is None else step.started_ms
            by_queue[step.task_queue].append((base + begins, base + step.closed_ms))
            scheduled.append((step.task_queue, base + step.scheduled_ms, (step.workflow_id, step.event_id)))
    counts = {}
    bounds = {
        queue: (np.sort([s for s, _ in intervals]), np.sort([e for _, e in intervals]))
        for queue, intervals in by_queue.items()
    }
    for queue, start, key in scheduled:
        starts, ends = bounds[queue]
        # begun at or before it, and not closed by then (itself included, when not retried)
        counts[key] = max(
            1, int(np.searchsorted(starts, start, side="right") - np.searchsorted(ends, start, side="right"))
        )
    return counts


def resource_exhaustion(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """Queue waits that grow with how many steps are in progress: too few worker slots or pollers, or a task
    queue rate limit. One finding per task queue (slots and pollers are the queue's workers', not a step's);
    retried steps are left out (their wait holds failed attempts)."""
    load = _in_progress(executions)
    by_queue: dict[str, list[Step]] = defaultdict(list)
    for execution in executions:
        for step in execution.steps:
            if step.kind != "timer" and step.wait_ms is not None and step.attempt == 1:
                by_queue[step.task_queue].append(step)
    found = []
    for queue, waited in by_queue.items():
        if len(waited) < 8:
            continue
        waits = np.array([s.wait_ms for s in waited], dtype=float)
        concurrency = np.array([load.get((s.workflow_id, s.event_id), 1) for s in waited], dtype=float)
        if np.ptp(concurrency) == 0:
            continue
        alone = waits[concurrency == 1]
        lone_wait = float(np.median(alone)) if len(alone) >= 5 else float(np.percentile(waits, 10))
        excess = np.clip(waits - lone_wait, 0.0, None)
        if np.percentile(excess, 95) < QUEUE_MIN_P95_MS:
            continue
        rho, p_value = stats.spearmanr(concurrency, waits, alternative="greater")
        if not (rho >= QUEUE_MIN_RHO and p_value < QUEUE_MAX_P_VALUE):
            continue
        share = float(excess.sum()) / total_ms
        worst = sorted(waited, key=lambda s: s.wait_ms or 0.0, reverse=True)
        names = sorted({step_key(s) for s in waited})
        found.append(
            Bottleneck(
                "resource_exhaustion",
                f"task-queue:{queue}",
                severity(share),
                round(share, 4),
                round(float(excess.sum()) / len(executions), 3),
                f"task queue {queue}: waits grow with the steps in progress (Spearman {rho:.2f}); p95 wait "
                f"{np.percentile(waits, 95):.0f} ms with up to {int(concurrency.max())} in progress, against "
                f"{lone_wait:.0f} ms for a step alone, over {len(names)} step types: more worker slots or pollers "
                "on it",
                {
                    "task_queue": queue,
                    "spearman_rho": round(float(rho), 3),
                    "p_value": float(p_value),
                    "wait_p95_ms": round(float(np.percentile(waits, 95)), 3),
                    "lone_wait_ms": round(lone_wait, 3),
                    "excess_wait_p95_ms": round(float(np.percentile(excess, 95)), 3),
                    "max_in_progress": int(concurrency.max()),
                    "steps": names,
                    **_examples(worst),
                },
            )
        )
    return found


def api_limits(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """Retries whose failures say rate limit or quota: the provider limits the calls."""
    found = []
    for key, steps in _by_step(executions).items():
        limited = [s for s in steps if _RATE_LIMITED.search(s.failure or s.last_failure or "")]
        if len(limited) < 2 or len(limited) < API_LIMIT_MIN_SHARE * len(steps):
            continue
        lost = sum((s.wait_ms or 0.0) for s in limited if s.attempt > 1)  # failed attempts and their backoff
        share = lost / total_ms
        reason = (limited[0].failure or limited[0].last_failure)[:200]
        found.append(
            Bottleneck(
                "api_limit",
                key,
                severity(share),
                round(share, 4),
                round(lost / len(executions), 3),
                f"{key}: {len(limited)} of {len(steps)} calls were refused for a rate limit or quota and retried "
                f"({reason}); {lost / len(executions):.0f} ms per execution lost to the retries",
                {"limited_calls": len(limited), "calls": len(steps), "reason": reason, **_examples(limited)},
            )
        )
    return found


def _uses(later: Step, earlier: Step) -> bool:
    """Whether ``later``'s input holds anything of ``earlier``'s result (unreadable payloads: assume it does)."""
    if not (later.input.readable and earlier.result.readable):
        return True
    return any(token in later.input.text for token in earlier.result.tokens)


def sequential_dependencies(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """Consecutive steps on the critical path whose later input uses nothing of the earlier's result: run at
    once, the shorter of the two would no longer add to the execution."""
    pairs: dict[tuple[str, str], list[tuple[Step, Step]]] = defaultdict(list)
    for execution in executions:
        path = [s for s in critical_path(execution) if s.kind != "timer"]
        for earlier, later in itertools.pairwise(path):
            pairs[(step_key(earlier), step_key(later))].append((earlier, later))
    found = []
    for (first, second), seen in pairs.items():
        independent = [(a, b) for a, b in seen if a.result.readable and b.input.readable and not _uses(b, a)]
        if len(independent) < MIN_EXECUTIONS or len(independent) < 0.9 * len(seen):
            continue
        saved = sum(min(a.total_ms or 0.0, b.total_ms or 0.0) for a, b in independent)
        share = saved / total_ms
        found.append(
            Bottleneck(
                "sequential_dependency",
                f"{first} -> {second}",
                severity(share),
                round(share, 4),
                round(saved / len(executions), 3),
                f"{second} runs after {first} but its input uses nothing of {first}'s result ({len(independent)} of "
                f"{len(seen)} executions): started together they would save {saved / len(executions):.0f} ms per "
                "execution (unless it relies on a side effect of the first)",
                {"steps": [first, second], "executions": len(independent), **_examples([b for _, b in independent])},
            )
        )
    return found


def cache_misses(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """The same step with the same input again, answering the same: a cache keyed on the input would serve
    every repeat."""
    found = []
    for key, steps in _by_step(executions).items():
        by_input: dict[str, list[Step]] = defaultdict(list)
        for step in steps:
            if step.input.digest and step.outcome == "completed":
                by_input[step.input.digest].append(step)
        repeats = [
            group[1:] for group in by_input.values() if len(group) > 1 and len({s.result.digest for s in group}) == 1
        ]
        repeated = [s for group in repeats for s in group]
        hit_ratio = len(repeated) / len(steps) if steps else 0.0
        if hit_ratio < CACHE_MIN_HIT_RATIO or len(repeated) < 3:
            continue
        saved = sum(s.total_ms or 0.0 for s in repeated)
        share = saved / total_ms
        found.append(
            Bottleneck(
                "cache_miss",
                key,
                _at_most_medium(severity(share)),
                round(share, 4),
                round(saved / len(executions), 3),
                f"{key}: {len(repeated)} of {len(steps)} calls repeated an earlier call's input and got the same "
                f"result (hit ratio {hit_ratio:.0%}); a cache keyed on the input would save "
                f"{saved / len(executions):.0f} ms per execution, if the step only computes or looks up (a step "
                "that changes something must run each time: histories do not show which)",
                {
                    "hit_ratio": round(hit_ratio, 4),
                    "repeats": len(repeated),
                    "distinct_inputs": len(by_input),
                    **_examples(repeated),
                },
            )
        )
    return found


def _superlinear_within_halves(sizes: np.ndarray, works: np.ndarray) -> bool:
    """The growth holds within the smaller and within the larger half of the inputs: a mix of populations
    (light and heavy calls) shows a steep slope between them and none within. Each half by least squares
    (r² 0.5) or, so that one call slowed by a pause does not hide the growth, by rank (Theil-Sen, Spearman 0.5)."""
    middle = np.median(sizes)
    for half in (sizes <= middle, sizes > middle):
        if half.sum() < 3 or np.ptp(np.log(sizes[half])) == 0:
            return False
        x, y = np.log(sizes[half]), np.log(works[half])
        fit = stats.linregress(x, y)
        by_squares = fit.slope >= 1.0 and fit.rvalue**2 >= 0.5
        by_rank = (
            stats.theilslopes(y, x).slope >= 1.0
            and stats.spearmanr(sizes[half], works[half]).statistic >= MIN_HALF_RANK_CORRELATION
        )
        if not (by_squares or by_rank):
            return False
    return True


Growth = tuple[float, float, str, float]  # exponent, its 95% lower bound, how it was fitted, fixed ms per call


def _plain_growth(sizes: np.ndarray, works: np.ndarray) -> Growth | None:
    """The exponent of work against size, its 95% lower bound and how it was fitted, when it is above linear:
    least squares (r² 0.8), else Theil-Sen (the median pairwise slope, Spearman 0.8), which a few paused calls
    do not bend; and the growth holds within both halves of the inputs."""
    x, y = np.log(sizes), np.log(works)
    fit = stats.linregress(x, y)
    lower = fit.slope - stats.t.ppf(0.975, len(x) - 2) * fit.stderr
    found: Growth | None = None
    if fit.slope >= SUPERLINEAR_EXPONENT and lower > 1.0 and fit.rvalue**2 >= MIN_R_SQUARED:
        found = float(fit.slope), float(lower), f"least squares, r² {fit.rvalue**2:.2f}", 0.0
    else:
        robust = stats.theilslopes(y, x, alpha=0.95)
        rank = float(stats.spearmanr(sizes, works).statistic)
        if robust.slope >= SUPERLINEAR_EXPONENT and robust.low_slope > 1.0 and rank >= MIN_RANK_CORRELATION:
            found = float(robust.slope), float(robust.low_slope), f"Theil-Sen, rank correlation {rank:.2f}", 0.0
    if found is None or not _superlinear_within_halves(sizes, works):
        return None  # two kinds of calls (small and fast, large and slow), not one algorithm that grows
    return found


def _growth_over_fixed_cost(sizes: np.ndarray, works: np.ndarray) -> Growth | None:
    """The exponent of work = fixed + a * size^k, fitted on log work (least squares, the fixed cost between 0
    and the least work), when it is above linear with its 95% lower bound, and the work beyond the fixed cost
    grows at least linearly among the larger half of the inputs.

    Every call pays something whatever its input (the worker's dispatch, payload decoding, a busy host's
    delays): 7-20 ms on a busy two-core host, against 5 ms of a small call's own work. A plain power law then
    reads a quadratic step as x1.2. A fixed cost only flattens growth, so fitting it cannot make linear or
    concave work look super-linear (a simulation of 45 calls at 3-40 ms of fixed cost with jitter: linear and
    square-root work flagged in at most 0.5% of runs, quadratic found in 100% up to 15 ms). Two kinds of calls
    (light and small, heavy and large) show no growth among the larger inputs."""
    x, y = np.log(sizes / sizes.min()), np.log(works)
    least = float(works.min())

    def model(x: np.ndarray, fixed: float, scale: float, exponent: float) -> np.ndarray:
        return np.log(fixed + np.exp(scale + exponent * x))

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, covariance = optimize.curve_fit(
                model,
                x,
                y,
                p0=[least / 2, np.log(least / 2), 1.5],
                bounds=([0.0, -np.inf, 0.0], [least, np.inf, 5.0]),
                maxfev=5000,
            )
    except (RuntimeError, ValueError):
        return None
    fixed, _, exponent = (float(p) for p in params)
    spread = float(np.sqrt(covariance[2, 2]))
    if not np.isfinite(spread):
        return None
    lower = exponent - float(stats.t.ppf(0.975, len(x) - 3)) * spread
    if exponent < SUPERLINEAR_EXPONENT or lower <= 1.0 or not _grows_among_larger(sizes, works - fixed):
        return None
    return exponent, lower, f"least squares over a fixed {fixed:.1f} ms per call", fixed


def _grows_among_larger(sizes: np.ndarray, own: np.ndarray) -> bool:
    """The work beyond the fixed cost grows at least linearly within the larger half of the inputs (least
    squares, r² 0.5, or Theil-Sen with Spearman 0.5), where it outweighs what every call pays."""
    upper = sizes > np.median(sizes)
    if upper.sum() < 3 or np.ptp(np.log(sizes[upper])) == 0 or (own[upper] <= 0).any():
        return False
    x, y = np.log(sizes[upper]), np.log(own[upper])
    fit = stats.linregress(x, y)
    if fit.slope >= 1.0 and fit.rvalue**2 >= 0.5:
        return True
    rank = stats.spearmanr(sizes[upper], own[upper]).statistic
    return bool(stats.theilslopes(y, x).slope >= 1.0 and rank >= MIN_HALF_RANK_CORRELATION)


def inefficient_algorithms(executions: list[Execution], total_ms: float) -> list[Bottleneck]:
    """Work growing faster than the input: the exponent of work against input size (log-log least squares),
    whose 95% confidence bound must itself be above linear."""
    found = []
    for key, steps in _by_step(executions).items():
        points = [(s.input.size, s.work_ms) for s in steps if s.input.size > 0 and s.work_ms and s.work_ms > 0]
        if len(points) < 8:
            continue
        sizes, works = np.array(points, dtype=float).T
        if sizes.max() / sizes.min() < MIN_SIZE_RANGE:
            continue
        growth = _growth_over_fixed_cost(sizes, works) or _plain_growth(sizes, works)
        if growth is None:
            continue
        slope, lower, how, fixed = growth
        spent = float(works.sum())
        share = spent / total_ms
        # Linear in size from the smallest inputs' cost per byte: what a linear algorithm would take.
        smallest = sizes <= np.percentile(sizes, 25)
        per_byte = float(np.median((works[smallest] - fixed) / sizes[smallest]))
        saved = max(spent - float((fixed + sizes * per_byte).sum()), 0.0)
        largest = sorted((s for s in steps if s.input.size > 0), key=lambda s: s.input.size, reverse=True)
        found.append(
            Bottleneck(
                "inefficient_algorithm",
                key,
                severity(share),
                round(share, 4),
                round(saved / len(executions), 3),
                f"{key}: its work grows as input size^{slope:.2f} (95% bound {lower:.2f}, {how}) "
                f"over inputs of {sizes.min():.0f}-{sizes.max():.0f} bytes: faster than linear",
                {
                    "exponent": round(slope, 3),
                    "exponent_lower_95": round(lower, 3),
                    "fit": how,
                    **_examples(largest),
                },
            )
        )
    return found
