"""Is this baseline like the endpoint's earlier ones? An isolation forest over the endpoint's baseline history.

A baseline that is unlike every earlier one (a noisy machine, a data load, a deploy nobody mentioned) makes every
later verdict of the campaign relative to an odd starting point: worth a look before it is trusted.

Each baseline is a point (log p50, log p95, log p99, error rate, log requests; the last two in coarse steps). The forest is fitted on the
history *and* the current baseline: an isolation forest scores a point outside the range it was fitted on like
the most extreme point it saw, so a new point far off would look ordinary; fitted with the others, it is isolated
in few splits. The current baseline is anomalous when the forest calls it an outlier (score below -0.5, the
forest's own boundary) and it is more isolated than every earlier baseline by a margin. On synthetic histories
of 8 to 30 baselines with a 4-7% run-to-run spread, that flags about 2% of ordinary baselines, nearly every one
whose p95 and p99 rose by half, and most of those that rose by a fifth. A shift in one number alone (p50
doubling, p95 and p99 steady) is caught less often: the forest splits on one of five numbers at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

from ratchet.contracts import BaselineAnomaly, EndpointStats

MIN_HISTORY = 8
"""Earlier baselines an endpoint needs before its current one is judged."""
MARGIN = 0.05
"""How much more isolated than the least usual earlier baseline the current one must be (score units)."""
OUTLIER_SCORE = -0.5
"""The forest's own boundary of outliers (``score_samples`` below it: ``contamination="auto"``)."""
_SEED = 0
_TREES = 200
_ERROR_STEP = 0.005
_REQUESTS_STEP = math.log(1.1)


@dataclass(frozen=True)
class BaselineSample:
    """One baseline of one endpoint: its percentiles (ms), requests and errors."""

    p50: float
    p95: float
    p99: float
    requests: int
    errors: int

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def sample_of(stats: EndpointStats) -> BaselineSample:
    return BaselineSample(stats.p50, stats.p95, stats.p99, stats.requests, stats.errors)


def _row(sample: BaselineSample) -> list[float]:
    # The forest isolates any difference in a number that never varied: one error among 1,200 requests after
    # twelve error-free baselines, or 1,199 requests after twelve of 1,200, would stand out. Errors count in
    # steps of half a percent and requests in steps of 10%, the least that says something about the run.
    return [
        math.log(max(sample.p50, 1e-3)),
        math.log(max(sample.p95, 1e-3)),
        math.log(max(sample.p99, 1e-3)),
        math.floor(sample.error_rate / _ERROR_STEP) * _ERROR_STEP,
        round(math.log(max(sample.requests, 1)) / _REQUESTS_STEP) * _REQUESTS_STEP,
    ]


def _standing_out(current: BaselineSample, history: Sequence[BaselineSample]) -> list[str]:
    """The numbers of the current baseline outside the range of the earlier ones (requests by more than a step,
    errors by more than half a percent), with that range."""
    out = []
    for name, unit, value, earlier, slack in (
        ("p50", " ms", current.p50, [h.p50 for h in history], 1.0),
        ("p95", " ms", current.p95, [h.p95 for h in history], 1.0),
        ("p99", " ms", current.p99, [h.p99 for h in history], 1.0),
        ("requests", "", float(current.requests), [float(h.requests) for h in history], math.exp(_REQUESTS_STEP)),
    ):
        low, high = min(earlier), max(earlier)
        if value > high * slack or value < low / slack:
            median = float(np.median(earlier))
            change = f"{value / median - 1:+.0%} on the median" if median > 0 else "new"
            out.append(f"{name} {value:,.1f}{unit} against {low:,.1f}-{high:,.1f}{unit} ({change})")
    rates = [h.error_rate for h in history]
    if current.error_rate > max(rates) + _ERROR_STEP or current.error_rate < min(rates) - _ERROR_STEP:
        out.append(f"error rate {current.error_rate:.2%} against {min(rates):.2%}-{max(rates):.2%}")
    return out


def check_baseline(
    endpoint: str, current: BaselineSample, history: Sequence[BaselineSample], *, min_history: int = MIN_HISTORY
) -> BaselineAnomaly:
    """Whether ``current`` is unlike ``history`` (the endpoint's earlier baselines), with a sentence."""
    if len(history) < min_history:
        return BaselineAnomaly(
            endpoint=endpoint,
            history=len(history),
            checked=False,
            sentence=(
                f"{endpoint}: not enough history to judge the baseline ({len(history)} earlier "
                f"baseline(s), {min_history} needed)"
            ),
        )
    rows = np.array([_row(h) for h in history] + [_row(current)], dtype=float)
    forest = IsolationForest(n_estimators=_TREES, random_state=_SEED).fit(rows)
    scores = forest.score_samples(rows)
    score, least_usual = float(scores[-1]), float(scores[:-1].min())
    threshold = min(OUTLIER_SCORE, least_usual - MARGIN)
    anomalous = score < threshold
    n = len(history)
    if anomalous:
        numbers = _standing_out(current, history)
        why = "; ".join(numbers) if numbers else "an unusual combination of its numbers, each within its range"
        sentence = (
            f"{endpoint}: baseline unlike its {n} earlier ones (isolation score {score:.2f}, anomalous below "
            f"{threshold:.2f}): {why}"
        )
    else:
        sentence = f"{endpoint}: baseline like its {n} earlier ones (isolation score {score:.2f}, anomalous below {threshold:.2f})"
    return BaselineAnomaly(
        endpoint=endpoint,
        history=n,
        checked=True,
        anomalous=anomalous,
        score=round(score, 4),
        threshold=round(threshold, 4),
        sentence=sentence,
    )


def baseline_anomalies(
    current: Sequence[EndpointStats],
    history: Mapping[str, Sequence[BaselineSample]],
    *,
    min_history: int = MIN_HISTORY,
) -> list[BaselineAnomaly]:
    """Per endpoint of the current baseline (that answered requests), whether it is unlike its history."""
    return [
        check_baseline(s.endpoint, sample_of(s), history.get(s.endpoint, []), min_history=min_history)
        for s in current
        if s.requests
    ]
