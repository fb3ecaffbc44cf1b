"""Hierarchical bootstrap of an after/before ratio of a latency percentile, runs as the unit of analysis.

Requests within one load run are autocorrelated (a slow second slows every request in it), so a
confidence interval that treats every request as independent is far too narrow. The bootstrap here
resamples runs first (with replacement, within each arm), then requests within each chosen run, and
takes the arm's statistic as the mean over its runs of the per-run percentile.

The second stage needs no resampling of requests: the r-th smallest of n values drawn with replacement
from sorted data x is x[floor(n * U)] with U ~ Beta(r, n - r + 1) (order statistics of uniforms), so a
resampled run's percentile costs one Beta draw whatever the run's size. A million requests cost no more
than a hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_ITERATIONS = 4000
# Below this many requests a run has no meaningful percentile of its own (the p95 of a dozen is their maximum):
# such runs are pooled per arm, and calibration leaves them out.
PER_RUN_MIN_REQUESTS = 20
# The percentile a playbook's ``metric`` names.
QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


@dataclass(frozen=True)
class RatioInterval:
    """The point estimate and the two-sided confidence interval of after/before."""

    ratio: float
    low: float
    high: float
    level: float
    before: float
    after: float
    log_sd: float  # the bootstrap standard deviation of log(after / before): how precisely the runs tell


def run_percentile(durations: np.ndarray, quantile: float) -> float:
    """The percentile of one run as the bootstrap resamples it: the ceil(q n)-th smallest value."""
    ordered = np.sort(durations)
    return float(ordered[percentile_rank(ordered.size, quantile) - 1])


def arm_statistic(runs: list[np.ndarray], quantile: float) -> float:
    """The mean over an arm's runs of each run's percentile (runs without requests are left out)."""
    values = [run_percentile(run, quantile) for run in runs if run.size]
    return float(np.mean(values)) if values else math.nan


def ratio_interval(
    before_runs: list[np.ndarray],
    after_runs: list[np.ndarray],
    *,
    quantile: float = 0.95,
    level: float = 0.99,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
) -> RatioInterval:
    """After/before ratio of the arms' statistics with a hierarchical bootstrap percentile interval.

    ``seed`` makes a verdict reproducible from the stored samples: the same runs always give the same
    interval.
    """
    before = [np.sort(run) for run in before_runs if run.size]
    after = [np.sort(run) for run in after_runs if run.size]
    if not before or not after:
        raise ValueError("both arms need at least one run with requests")
    rng = np.random.default_rng(seed)
    before_stat, after_stat = arm_statistic(before, quantile), arm_statistic(after, quantile)
    before_draws = _arm_draws(before, quantile, iterations, rng)
    after_draws = _arm_draws(after, quantile, iterations, rng)
    ratios = after_draws / np.maximum(before_draws, 1e-9)
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return RatioInterval(
        ratio=after_stat / before_stat if before_stat > 0 else 1.0,
        low=float(low),
        high=float(high),
        level=level,
        before=before_stat,
        after=after_stat,
        log_sd=float(np.std(np.log(np.maximum(ratios, 1e-12)))),
    )


def _arm_draws(runs: list[np.ndarray], quantile: float, iterations: int, rng: np.random.Generator) -> np.ndarray:
    """``iterations`` bootstrap replicates of the arm statistic: runs resampled, then requests within them."""
    count = len(runs)
    sizes = np.array([run.size for run in runs])
    ranks = np.array([percentile_rank(int(n), quantile) for n in sizes])
    chosen = rng.integers(0, count, size=(iterations, count))
    n, r = sizes[chosen], ranks[chosen]
    positions = np.minimum(np.floor(n * rng.beta(r, n - r + 1)).astype(np.int64), n - 1)
    values = np.empty(chosen.shape)
    for index, run in enumerate(runs):
        mask = chosen == index
        values[mask] = run[positions[mask]]
    return values.mean(axis=1)


def percentile_rank(size: int, quantile: float) -> int:
    """The rank (1-based) of a run's percentile among its ``size`` requests: the ceil(q n)-th smallest."""
    return min(size, max(1, math.ceil(quantile * size)))
