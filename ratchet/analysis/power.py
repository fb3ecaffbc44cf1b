"""How many requests a validation needs: the load designed for a decision.

A validation compares the mean over ``k`` runs per arm of each run's percentile. With ``n`` requests per run,
the log of a run's percentile spreads by ``s(n)`` (the within-run noise; it falls as ``1/sqrt(n)``), so the
log of the after/before ratio has a standard error of about ``s(n) * sqrt(2 / k)``. An improvement ``d`` is
detected with power ``P`` (the interval clears 1 that often) when that standard error is at most
``ln(1 / (1 - d)) / (z + z_P)``: the smallest ``n`` that gets there is the endpoint's requests per run.

``s(n)`` comes from the endpoint's baseline requests: the spread of the percentile of ``n`` requests drawn from
them (order statistics: the r-th smallest of ``n`` uniform draws is Beta(r, n - r + 1)), or, for a baseline too
small to stand for its distribution, from a log-normal law of the same spread. Run-to-run drift is not in
``s(n)``: more requests cannot remove it, more runs do (the adaptive rounds), and ``ratchet calibrate`` measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ratchet.analysis.bootstrap import QUANTILES, percentile_rank
from ratchet.analysis.significance import DETECTION_POWER, z_sum
from ratchet.config.playbook import Validation

# Below this many baseline requests the empirical law is too coarse for its tail: a log-normal stands in.
_EMPIRICAL_FROM = 50
_DRAWS = 2000
# Requests per run tried, from a percentile that means something up to what one endpoint of a load ever gets.
_SMALLEST, _LARGEST = 20, 5000
# The focused endpoints take at most this share of the load's rate: the rest of the mix stays as background.
FOCUS_SHARE_CAP = 0.75


def run_log_spread(baseline: np.ndarray, quantile: float, requests: int, *, seed: int = 0) -> float:
    """The standard deviation of the log of a run's percentile when a run has ``requests`` requests from the
    baseline's distribution."""
    values = np.sort(baseline[baseline > 0])
    if values.size < _EMPIRICAL_FROM:
        sigma = max(float(np.std(np.log(values))) if values.size > 1 else 0.0, 0.05)
        density = math.exp(-(NormalDist().inv_cdf(quantile) ** 2) / 2) / math.sqrt(2 * math.pi)
        return sigma * math.sqrt(quantile * (1 - quantile) / requests) / density
    rng = np.random.default_rng(seed)
    rank = percentile_rank(requests, quantile)
    positions = np.minimum(
        np.floor(values.size * rng.beta(rank, requests - rank + 1, _DRAWS)).astype(np.int64), values.size - 1
    )
    return float(np.std(np.log(values[positions])))


def requests_per_run(baseline: np.ndarray, rules: Validation, *, power: float = DETECTION_POWER) -> int:
    """The smallest requests per run at which ``rules.runs_per_arm`` runs per arm detect a ``min_improvement``
    change with ``power`` (at most ``_LARGEST``: beyond it only more runs help)."""
    if baseline.size == 0:
        return _SMALLEST
    quantile = QUANTILES[rules.metric]
    allowed = math.log(1 / (1 - max(rules.min_improvement, 0.01))) / z_sum(rules.confidence, power)
    per_run = allowed / math.sqrt(2 / rules.runs_per_arm)
    requests = _SMALLEST
    while requests < _LARGEST and run_log_spread(baseline, quantile, requests) > per_run:
        requests = math.ceil(requests * 1.25)
    return min(requests, _LARGEST)


@dataclass(frozen=True)
class FocusPlan:
    """Requests per second of each focused endpoint, and what each would have needed."""

    rates: dict[str, float]
    needed_per_run: dict[str, int]
    capped: bool


def focus_rates(needed_per_run: dict[str, int], weights: dict[str, float], *, rate: float, run_s: float) -> FocusPlan:
    """Rates for the focused endpoints: each at least its production share of ``rate`` and at most what its
    requests per run need; together no more than ``FOCUS_SHARE_CAP`` of ``rate`` when other endpoints remain
    for the background. When that is too little for all, it is shared out max-min fair (water-filling): every
    endpoint gets what it needs up to a common level, so one endpoint with a huge need cannot starve the
    others; ``capped`` says that some got less than they need.
    """
    total_weight = sum(weights.values()) or 1.0
    share = {e: rate * weights.get(e, 0.0) / total_weight for e in needed_per_run}
    wanted = {e: max(share[e], needed_per_run[e] / run_s) for e in needed_per_run}
    background = set(weights) - set(needed_per_run)
    budget = rate * (FOCUS_SHARE_CAP if background else 1.0)
    capped = sum(wanted.values()) > budget + 1e-9

    def given(level: float) -> dict[str, float]:
        return {e: max(share[e], min(wanted[e], level)) for e in wanted}

    if not capped:
        rates = wanted
    else:
        low, high = 0.0, max(wanted.values())
        for _ in range(60):  # bisection on the common level: the total given grows with it
            middle = (low + high) / 2
            low, high = (middle, high) if sum(given(middle).values()) <= budget else (low, middle)
        rates = given(low)
    return FocusPlan(
        rates={e: round(r, 3) for e, r in rates.items()}, needed_per_run=dict(needed_per_run), capped=capped
    )
