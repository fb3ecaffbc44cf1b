"""Service-level targets judged after the changes: the target's CPU and memory, its database's p95, its caches'
hit rates, each compared over the validation's interleaved arms with the rule the endpoints' verdicts follow.

Seconds within a run are not independent (a slow second slows the next), so the run is the unit: each run gives
one value (its mean CPU, its statements' p95, its hit rate), and the interval is Welch's t interval over the
arms' runs, on the log scale for a ratio. With three runs an arm a bootstrap over runs is far too narrow (an
A/A test called 12% of hit rates changed at a nominal 1%); the t interval keeps to its level.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ratchet.analysis.cache_slo import CACHE_HIT_RATE, cache_subject
from ratchet.analysis.database_slo import DATABASE, DB_P95
from ratchet.analysis.slo import TARGET_RESOURCES
from ratchet.config.playbook import Playbook
from ratchet.contracts import CacheLookups, ServiceVerdict, SloCheck, Verdict

# The smallest fall of a hit rate (in points) that counts against "not worse".
_HIT_RATE_MARGIN = 0.02


@dataclass
class ArmSeries:
    """One arm's runs as the service-level targets read them (one list entry per run)."""

    cpu: list[np.ndarray] = field(default_factory=list)  # per-second CPU of the target's processes, % of one core
    memory_mb: list[np.ndarray] = field(default_factory=list)  # per-second resident memory, MB
    statements_ms: list[np.ndarray] = field(default_factory=list)  # statement spans' durations
    caches: list[list[CacheLookups]] = field(default_factory=list)


@dataclass(frozen=True)
class _Measure:
    subject: str
    metric: str
    limit: float
    runs: Callable[[ArmSeries], list[np.ndarray]]
    statistic: Callable[[np.ndarray], np.ndarray]
    check: Callable[[np.ndarray], np.ndarray]  # the assessment's own reading (mean, or the highest second)
    scale: float  # from the statistic's unit to the target's (CPU % of one core -> % of the host's cores)
    reads: str  # what the verdict compares, for its explanation


# A run's statistic over its values (seconds, or statement spans).
def _mean(values: np.ndarray) -> np.ndarray:
    return np.mean(values, axis=-1)


def _p95(values: np.ndarray) -> np.ndarray:
    return np.quantile(values, 0.95, axis=-1)


def _cpu(arm: ArmSeries) -> list[np.ndarray]:
    return arm.cpu


def _memory(arm: ArmSeries) -> list[np.ndarray]:
    return arm.memory_mb


def _statements(arm: ArmSeries) -> list[np.ndarray]:
    return arm.statements_ms


def _measures(playbook: Playbook, cores: int, memory_total_mb: float | None) -> list[_Measure]:
    slo = playbook.slo
    wanted = slo.resources
    per_core = 1 / max(cores, 1)
    share = 100 / memory_total_mb if memory_total_mb else None
    # A peak's verdict compares the 95th percentile of the seconds (a run's single highest second is noise);
    # its check reads the highest second, as the assessment did. Memory is judged as a share of the host's RAM.
    resources = (
        ("cpu_percent", _cpu, _mean, np.mean, per_core, "mean per-second CPU"),
        ("cpu_peak_percent", _cpu, _p95, np.max, per_core, "95th percentile of the per-second CPU"),
        ("memory_percent", _memory, _mean, np.mean, share, "mean per-second memory"),
        ("memory_peak_percent", _memory, _p95, np.max, share, "95th percentile of the seconds' memory"),
    )
    measures = [
        _Measure(TARGET_RESOURCES, metric, limit, runs, statistic, check, scale, what)
        for metric, runs, statistic, check, scale, what in resources
        if (limit := getattr(wanted, metric)) is not None and scale is not None
    ]
    if slo.db_p95_ms is not None:
        measures.append(_Measure(DATABASE, DB_P95, slo.db_p95_ms, _statements, _p95, _p95, 1.0, "statement spans' p95"))
    return measures


def welch_interval(after: list[float], before: list[float], level: float) -> tuple[float, float]:
    """Welch's t interval of mean(after) - mean(before); a point where neither arm varies."""
    with warnings.catch_warnings():  # nearly constant arms warn of precision; the point case is handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        found = stats.ttest_ind(after, before, equal_var=False).confidence_interval(level)
    low, high = float(found.low), float(found.high)
    if math.isnan(low) or math.isnan(high):  # both arms constant: the difference is exact
        low = high = float(np.mean(after) - np.mean(before))
    return low, high


def log_ratio_interval(after: list[float], before: list[float], level: float) -> tuple[float, float, float]:
    """after/before of the geometric means, with Welch's t interval on the logs: (ratio, low, high)."""
    logs_after, logs_before = np.log(np.maximum(after, 1e-9)), np.log(np.maximum(before, 1e-9))
    low, high = welch_interval(list(logs_after), list(logs_before), level)
    return math.exp(float(logs_after.mean() - logs_before.mean())), math.exp(low), math.exp(high)


def ratio_verdict(low: float, high: float, margin: float) -> Verdict:
    """Improved or regressed when the whole interval is past no change; not worse when its top is under the
    regression margin; inconclusive otherwise (the endpoints' rule)."""
    if high < 1:
        return Verdict.IMPROVED
    if low > 1:
        return Verdict.REGRESSED
    return Verdict.NOT_WORSE if high < 1 + margin else Verdict.INCONCLUSIVE


def ratio_service_verdict(
    subject: str,
    metric: str,
    before: float,
    after: float,
    interval: tuple[float, float],
    *,
    margin: float,
    limit: float,
    digits: int,
    explanation: str,
) -> ServiceVerdict:
    """The verdict on a lower-is-better figure from the interval of its after/before ratio, with the figure
    before and after (rounded to ``digits``) against its target."""
    low, high = interval
    return ServiceVerdict(
        subject=subject,
        metric=metric,
        before=round(before, digits),
        after=round(after, digits),
        low=round(low, 4),
        high=round(high, 4),
        verdict=ratio_verdict(low, high, margin),
        limit=limit,
        met_before=before < limit,
        met_after=after < limit,
        explanation=explanation,
    )


def _judge_measure(
    measure: _Measure,
    before: ArmSeries,
    after: ArmSeries,
    level: float,
    margin: float,
) -> ServiceVerdict | None:
    before_runs = [r for r in measure.runs(before) if r.size]
    after_runs = [r for r in measure.runs(after) if r.size]
    if len(before_runs) < 2 or len(after_runs) < 2:
        return None  # one run per arm says nothing of the spread from run to run
    ratio, low, high = log_ratio_interval(
        [float(measure.statistic(r)) for r in after_runs], [float(measure.statistic(r)) for r in before_runs], level
    )
    return ratio_service_verdict(
        measure.subject,
        measure.metric,
        float(measure.check(np.concatenate(before_runs))) * measure.scale,
        float(measure.check(np.concatenate(after_runs))) * measure.scale,
        (low, high),
        margin=margin,
        limit=measure.limit,
        digits=3,
        explanation=f"{measure.reads}, {len(before_runs)} runs before and {len(after_runs)} after: after/before "
        f"x{ratio:.2f} [{low:.2f}-{high:.2f}] at {level:.0%}",
    )


def _pooled_rate(runs: list[CacheLookups]) -> float:
    lookups = sum(r.lookups for r in runs)
    return sum(r.hits for r in runs) / lookups if lookups else float("nan")


def _judge_cache(name: str, limit: float, before: ArmSeries, after: ArmSeries, level: float) -> ServiceVerdict | None:
    def counted(arm: ArmSeries) -> list[CacheLookups]:
        return [c for run in arm.caches for c in run if c.cache == name and c.lookups > 0]

    before_runs, after_runs = counted(before), counted(after)
    if len(before_runs) < 2 or len(after_runs) < 2:
        return None
    before_rate, after_rate = _pooled_rate(before_runs), _pooled_rate(after_runs)
    low, high = welch_interval(
        [float(r.hit_rate or 0.0) for r in after_runs], [float(r.hit_rate or 0.0) for r in before_runs], level
    )
    if low > 0:
        verdict = Verdict.IMPROVED
    elif high < 0:
        verdict = Verdict.REGRESSED
    else:
        verdict = Verdict.NOT_WORSE if low > -_HIT_RATE_MARGIN else Verdict.INCONCLUSIVE
    return ServiceVerdict(
        subject=cache_subject(name),
        metric=CACHE_HIT_RATE,
        before=round(before_rate, 4),
        after=round(after_rate, 4),
        low=round(low, 4),
        high=round(high, 4),
        difference=True,
        verdict=verdict,
        limit=limit,
        met_before=before_rate >= limit,
        met_after=after_rate >= limit,
        explanation=f"hits over lookups, {len(before_runs)} runs before and {len(after_runs)} after (each run's "
        "rate, Welch's t): "
        f"{after_rate - before_rate:+.1%} [{low:+.1%} to {high:+.1%}] at {level:.0%}",
    )


def service_verdicts(
    before: ArmSeries,
    after: ArmSeries,
    playbook: Playbook,
    *,
    cores: int,
    memory_total_mb: float | None,
) -> list[ServiceVerdict]:
    """A verdict per service-level target the playbook sets and both arms measured (two runs each at least)."""
    rules = playbook.validation
    level = 1 - rules.significance
    judged = [
        _judge_measure(m, before, after, level, rules.regression_margin)
        for m in _measures(playbook, cores, memory_total_mb)
    ]
    limit = playbook.slo.cache_hit_rate
    if limit is not None:
        names = dict.fromkeys(c.cache for run in before.caches + after.caches for c in run)
        judged += [_judge_cache(name, limit, before, after, level) for name in names]
    return [v for v in judged if v is not None]


def after_checks(verdicts: list[ServiceVerdict]) -> list[SloCheck]:
    """The after arm's reading of each judged service-level target, as a check beside the endpoints'."""
    return [
        SloCheck(
            endpoint=v.subject,
            metric=v.metric,
            limit=v.limit,
            value=v.after,
            met=v.met_after,
            at_least=v.metric == CACHE_HIT_RATE,
        )
        for v in verdicts
    ]
