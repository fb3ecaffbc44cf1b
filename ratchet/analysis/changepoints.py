"""Change points in a series of baselines: E-divisive means with a permutation test, and a drift flag.

Pure: numbers (with their times and labels) in, change points and a sentence out.

The method is E-divisive means (Matteson & James, 2014), the family Apache Otava (formerly Hunter) and
MongoDB's signal-processing-algorithms use for performance history:

- the divergence of a split of a segment into a left part X (m values) and a right part Y (k values) is
  the energy statistic ``Q = m k / (m + k) * (2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` (moment index 1);
- the candidate split is the one with the largest Q, found by scanning every split that leaves at least
  ``min_size`` values on each side;
- it is significant when a permutation test says so: the values of the segment are shuffled
  ``permutations`` times, each shuffle scanned the same way, and ``p = (1 + #{max Q of a shuffle >= Q}) /
  (permutations + 1)``; the split is kept when ``p <= alpha`` (0.001 by default, as Otava);
- a kept split divides the segment in two and each part is searched again (binary segmentation).

Why our own code and not a library (the package lists were searched for change-point libraries):

- ``ruptures`` finds splits by a cost and a penalty or a given number of breakpoints; it has no
  significance test, so "is this shift real?" would be a penalty someone tunes, not a p-value.
- ``signal-processing-algorithms`` (MongoDB) has exactly this test, but pins numpy < 2 and pulls gevent and
  an old setuptools; the project runs numpy 2.
- ``apache-otava`` is a whole CLI with BigQuery, Graphite, PostgreSQL and Slack clients as dependencies, and
  its current significance test is a Student t-test between the two sides, not a permutation test.

The version here is a few numpy lines: every split's statistic comes from prefix sums of one pairwise
distance matrix (O(n^2) per scan, shuffles scanned in batches), the shuffles are drawn from a generator
seeded by (seed, segment start, segment end) so the same series always gives the same answer whatever the
order segments are searched in, and the test stops as soon as enough shuffles beat the observed statistic
that ``p <= alpha`` can no longer hold (the decision is the same as running all of them; only significant
splits pay for every shuffle).

Resolution: a permutation test cannot give a p-value below the chance that a shuffle lands on the observed
order, so at ``alpha = 0.001`` a clean step is found once each side has about seven values or more (with
``min_size = 5``, a step at the end of a series is seen once five baselines have been measured after it,
and typically twenty or so in all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

DEFAULT_ALPHA = 0.001
DEFAULT_MIN_SIZE = 5
DEFAULT_PERMUTATIONS = 4999
DEFAULT_LATEST = 10

# Pairwise-distance elements per batch of shuffles: about 16 MB of float64 per temporary array.
_BATCH_ELEMENTS = 2_000_000
# Shuffles whose statistic is within this relative distance of the observed one count as reaching it:
# the same values summed in another order differ in the last bits.
_TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ChangePoint:
    """A point where the series' level changed: ``index`` is the first value of the new level."""

    index: int
    mean_before: float
    mean_after: float
    relative_shift: float | None
    """after / before - 1 (0.34 = rose 34%); None when the level before was zero."""
    p_value: float
    """Of the permutation test that kept this split, within the segment it was found in."""
    at: datetime | None = None
    """The time of the value at ``index``, when times were given."""
    label: str | None = None
    """The label of the value at ``index`` (a campaign id), when labels were given."""

    @property
    def direction(self) -> str:
        """'rose' or 'fell'."""
        return "rose" if self.mean_after >= self.mean_before else "fell"


@dataclass(frozen=True)
class Drift:
    """Whether a series' latest values sit on a new level: a change point among them."""

    drifting: bool
    sentence: str
    """What a person reads, e.g. 'orders: baseline p95 rose 34% at campaign c-12 (2026-11-20), p=0.0004'."""
    latest: int
    """How many of the latest values were looked at."""
    change_point: ChangePoint | None = None
    """The newest change point among the latest values, when drifting."""


def split_statistics(values: np.ndarray, min_size: int) -> np.ndarray:
    """Q of every split ``tau`` in ``[min_size, n - min_size]`` of each row of ``values`` (shape (n,) or (b, n)).

    Returns shape (splits,) or (b, splits); split ``j`` puts ``min_size + j`` values on the left.
    """
    batch = np.atleast_2d(np.asarray(values, dtype=float))
    n = batch.shape[1]
    distances = np.abs(batch[:, :, None] - batch[:, None, :])
    # Upper triangle only, each pair once: column[j] sums |x_i - x_j| over i < j, row[i] over j > i.
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    distances *= upper
    column = distances.sum(axis=1)
    row = distances.sum(axis=2)
    total = column.sum(axis=1, keepdims=True)
    taus = np.arange(min_size, n - min_size + 1)
    within_left = np.cumsum(column, axis=1)[:, taus - 1]
    within_right = np.cumsum(row[:, ::-1], axis=1)[:, ::-1][:, taus]
    between = total - within_left - within_right
    m = taus.astype(float)
    k = n - m
    energy = 2 * between / (m * k) - within_left / (m * (m - 1) / 2) - within_right / (k * (k - 1) / 2)
    q = m * k / (m + k) * energy
    return q[0] if np.ndim(values) == 1 else q


@dataclass(frozen=True)
class _SplitTest:
    tau: int
    p_value: float
    significant: bool


def _test_best_split(
    segment: np.ndarray, *, min_size: int, alpha: float, permutations: int, rng: np.random.Generator
) -> _SplitTest | None:
    """The best split of ``segment`` and its permutation test; None when no split separates anything."""
    q = split_statistics(segment, min_size)
    best = int(np.argmax(q))
    observed = float(q[best])
    if not observed > 0:
        return None  # a constant segment
    threshold = observed - _TIE_TOLERANCE * abs(observed)
    # p = (1 + reached) / (permutations + 1) <= alpha  <=>  reached <= allowed
    allowed = math.floor(alpha * (permutations + 1) + 1e-9) - 1
    n = segment.size
    batch = max(1, _BATCH_ELEMENTS // (n * n))
    reached = done = 0
    while done < permutations:
        size = min(batch, permutations - done)
        shuffled = rng.permuted(np.broadcast_to(segment, (size, n)), axis=1)
        reached += int(np.count_nonzero(split_statistics(shuffled, min_size).max(axis=1) >= threshold))
        done += size
        if reached > allowed:
            break  # p > alpha whatever the remaining shuffles say
    p_value = (1 + reached) / (done + 1)
    return _SplitTest(tau=min_size + best, p_value=p_value, significant=reached <= allowed)


def _segment_change_points(
    series: np.ndarray,
    start: int,
    end: int,
    *,
    min_size: int,
    alpha: float,
    permutations: int,
    seed: int,
) -> list[tuple[int, float]]:
    """(index, p) of the significant splits of series[start:end], searched recursively, in order."""
    if end - start < 2 * min_size:
        return []
    rng = np.random.default_rng([seed, start, end])
    test = _test_best_split(series[start:end], min_size=min_size, alpha=alpha, permutations=permutations, rng=rng)
    if test is None or not test.significant:
        return []
    split = start + test.tau
    left, right = (
        _segment_change_points(series, a, b, min_size=min_size, alpha=alpha, permutations=permutations, seed=seed)
        for a, b in ((start, split), (split, end))
    )
    return [*left, (split, test.p_value), *right]


def detect_change_points(
    values: Sequence[float] | np.ndarray,
    *,
    times: Sequence[datetime] | None = None,
    labels: Sequence[str] | None = None,
    min_size: int = DEFAULT_MIN_SIZE,
    alpha: float = DEFAULT_ALPHA,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
) -> list[ChangePoint]:
    """The significant change points of a series, oldest first (E-divisive means, permutation test).

    ``times`` and ``labels``, when given, are one per value and name each change point's first value.
    A series shorter than ``2 * min_size`` has none. Deterministic for a given ``seed``.
    """
    series = np.asarray(values, dtype=float)
    if series.ndim != 1:
        raise ValueError(f"values: one series expected, got shape {series.shape}")
    if not np.all(np.isfinite(series)):
        raise ValueError("values: every value must be a finite number")
    if min_size < 2:
        raise ValueError(f"min_size: at least 2 (a side needs a spread), got {min_size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: between 0 and 1, got {alpha}")
    if alpha * (permutations + 1) < 1:
        raise ValueError(
            f"permutations: at least {math.ceil(1 / alpha) - 1} for alpha {alpha} (p cannot go below "
            f"1 / (permutations + 1)), got {permutations}"
        )
    for name, given in (("times", times), ("labels", labels)):
        if given is not None and len(given) != series.size:
            raise ValueError(f"{name}: one per value expected ({series.size}), got {len(given)}")

    found = _segment_change_points(
        series, 0, series.size, min_size=min_size, alpha=alpha, permutations=permutations, seed=seed
    )
    bounds = [0, *(index for index, _ in found), series.size]
    points = []
    for number, (index, p_value) in enumerate(found, start=1):
        before = float(series[bounds[number - 1] : index].mean())
        after = float(series[index : bounds[number + 1]].mean())
        points.append(
            ChangePoint(
                index=index,
                mean_before=before,
                mean_after=after,
                relative_shift=after / before - 1 if before != 0 else None,
                p_value=p_value,
                at=times[index] if times is not None else None,
                label=labels[index] if labels is not None else None,
            )
        )
    return points


def describe_change(change: ChangePoint) -> str:
    """'rose 34% at campaign c-12 (2026-11-20), p=0.0004' (the parts that are known)."""
    shift = "" if change.relative_shift is None else f" {abs(change.relative_shift):.0%}"
    where = f"campaign {change.label}" if change.label is not None else f"value {change.index + 1}"
    when = f" ({change.at:%Y-%m-%d})" if change.at is not None else ""
    return f"{change.direction}{shift} at {where}{when}, p={change.p_value:.2g}"


def baseline_drift(
    name: str,
    change_points: Sequence[ChangePoint],
    length: int,
    *,
    latest: int = DEFAULT_LATEST,
    metric: str = "baseline p95",
) -> Drift:
    """Whether the series ``name`` (``length`` values, ``change_points`` found in it) drifts: a change point
    among its ``latest`` values, i.e. its recent values sit on a new level. The sentence says which way, how
    much, where and how sure."""
    if latest < 1:
        raise ValueError(f"latest: at least 1, got {latest}")
    recent = [c for c in change_points if c.index >= length - latest]
    if recent:
        newest = recent[-1]
        return Drift(True, f"{name}: {metric} {describe_change(newest)}", latest, newest)
    window = min(latest, length)
    if change_points:
        last = change_points[-1]
        sentence = f"{name}: {metric} steady over the latest {window} campaigns (last change: {describe_change(last)})"
    else:
        sentence = f"{name}: {metric} steady, no change point in {length} campaigns"
    return Drift(False, sentence, latest)
