"""Before/after comparison of one endpoint: rank tests on raw samples, a verdict that shows its numbers."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu
from statsmodels.stats.multitest import multipletests

from ratchet.analysis.bootstrap import ratio_interval
from ratchet.analysis.decisions import TailExcess
from ratchet.config.playbook import Playbook, Validation
from ratchet.contracts import EndpointStats, EndpointVerdict, Verdict

# Pairwise differences above this many pairs are estimated from a fixed subsample (memory stays bounded).
_MAX_PAIRS = 4_000_000


def hodges_lehmann(after: np.ndarray, before: np.ndarray) -> float:
    """Median of all pairwise differences after - before: the typical shift, robust to outliers."""
    if after.size == 0 or before.size == 0:
        return 0.0
    rng = np.random.default_rng(0)
    limit = int(np.sqrt(_MAX_PAIRS))
    a = after if after.size <= limit else rng.choice(after, limit, replace=False)
    b = before if before.size <= limit else rng.choice(before, limit, replace=False)
    return float(np.median(np.subtract.outer(a, b)))


def one_sided_p_values(before: np.ndarray, after: np.ndarray) -> tuple[float, float]:
    """(p that after is faster, p that after is slower): one-sided Mann-Whitney U; 1.0 without data."""
    if before.size < 2 or after.size < 2:
        return 1.0, 1.0
    faster = float(mannwhitneyu(after, before, alternative="less").pvalue)
    slower = float(mannwhitneyu(after, before, alternative="greater").pvalue)
    return faster, slower


def tail_excess(before: np.ndarray, after: np.ndarray, threshold: float) -> TailExcess:
    """How much more often ``after`` exceeds ``threshold`` (the reference's p95) than ``before`` does, with the
    one-sided Fisher exact p-value of that difference.

    A test of the tail itself: a change that slows a share of the requests (a rollout step, one code path)
    moves the p95 while the median, and so Mann-Whitney's shift, barely moves.
    """
    if before.size < 2 or after.size < 2:
        return TailExcess(p_value=1.0, share_after=0.0, share_before=0.0)
    above_after, above_before = int((after > threshold).sum()), int((before > threshold).sum())
    table = [[above_after, after.size - above_after], [above_before, before.size - above_before]]
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    return TailExcess(p_value=p_value, share_after=above_after / after.size, share_before=above_before / before.size)


def holm_adjusted(p_values: dict[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values of a family of tests (one per endpoint): comparing a dozen endpoints at once
    would otherwise declare one of them changed by chance far more often than the significance level says."""
    if not p_values:
        return {}
    adjusted = multipletests(list(p_values.values()), method="holm")[1]
    return {key: float(p) for key, p in zip(p_values, adjusted, strict=True)}


def compare_endpoint(
    before_stats: EndpointStats,
    after_stats: EndpointStats,
    before_runs: list[np.ndarray],
    after_runs: list[np.ndarray],
    rules: Validation,
    max_error_rate: float,
    p_values: tuple[float, float] | None = None,
) -> EndpointVerdict:
    """Verdict for one endpoint from its runs in each arm: improved, not worse, regressed or inconclusive.

    The ratio after/before of the playbook's percentile (the mean over an arm's runs of each run's value)
    gets a hierarchical bootstrap interval at the playbook's confidence. Then, with d+ the regression
    margin and d- the improvement margin:

    - improved: the whole interval below 1 - d-, Mann-Whitney on the pooled requests significant (p <
      significance) and the typical per-request gain (Hodges-Lehmann) at least ``min_effect_ms``;
    - regressed: the whole interval above 1 + d+, significant, and slower by at least ``min_effect_ms``
      (or the error rate rose past the SLO's limit);
    - not worse: the interval's top below 1 + d+, or the worst slowdown it allows under ``min_effect_ms``;
    - inconclusive otherwise: the runs cannot tell; more runs, or a person, must decide.

    ``p_values`` (faster, slower), when given, replace the endpoint's own: the Holm-adjusted ones of a
    comparison of many endpoints.
    """
    runs_before, runs_after = len(before_runs), len(after_runs)
    before, after = _pooled(before_runs), _pooled(after_runs)
    pooled = (
        len(before_runs) + len(after_runs) > 2 and _median_size(before_runs + after_runs) < rules.min_requests_per_run
    )
    if pooled:
        # The p95 of a dozen requests is their maximum: per-run values that small only add noise.
        before_runs, after_runs = [before], [after]
    p_faster, p_slower = p_values if p_values is not None else one_sided_p_values(before, after)
    test = "Mann-Whitney" if p_values is None else "Mann-Whitney, Holm-adjusted"
    shift = hodges_lehmann(after, before)
    errors_broke = after_stats.error_rate > max_error_rate >= before_stats.error_rate
    quantile = _QUANTILES[rules.metric]
    interval = (
        ratio_interval(before_runs, after_runs, quantile=quantile, level=rules.confidence)
        if before.size and after.size
        else None
    )
    ratio, low, high = (interval.ratio, interval.low, interval.high) if interval else (1.0, 0.0, math.inf)
    worst_excess_ms = (high - 1) * interval.before if interval else math.inf
    numbers = (
        f"{rules.metric} {interval.before if interval else 0:.1f} -> {interval.after if interval else 0:.1f} ms "
        f"(x{ratio:.2f}, {rules.confidence:.0%} CI {low:.2f}-{high:.2f}), median shift {shift:+.2f} ms, "
        f"runs {runs_before}/{runs_after}, requests {before.size}/{after.size}"
        + (f" (runs pooled: fewer than {rules.min_requests_per_run} requests each)" if pooled else "")
    )
    if errors_broke:
        verdict = Verdict.REGRESSED
        why = f"error rate rose to {after_stats.error_rate:.1%} (limit {max_error_rate:.1%}); {numbers}"
    elif high < 1 - rules.min_improvement and p_faster < rules.significance and -shift >= rules.min_effect_ms:
        verdict = Verdict.IMPROVED
        why = f"faster: CI below x{1 - rules.min_improvement:.2f} ({test} p={p_faster:.2g}); {numbers}"
    elif low > 1 + rules.regression_margin and p_slower < rules.significance and shift >= rules.min_effect_ms:
        verdict = Verdict.REGRESSED
        why = f"slower: CI above x{1 + rules.regression_margin:.2f} ({test} p={p_slower:.2g}); {numbers}"
    elif high <= 1 + rules.regression_margin or worst_excess_ms < rules.min_effect_ms:
        verdict = Verdict.NOT_WORSE
        why = f"not worse: at most x{high:.2f}, +{max(worst_excess_ms, 0):.1f} ms; {numbers}"
    else:
        verdict = Verdict.INCONCLUSIVE
        why = (
            f"inconclusive: the CI reaches x{high:.2f} past the margin x{1 + rules.regression_margin:.2f} "
            f"(p faster {p_faster:.2g}, p slower {p_slower:.2g}); {numbers}"
        )
    return EndpointVerdict(
        endpoint=before_stats.endpoint,
        before=before_stats,
        after=after_stats,
        p95_ratio=round(after_stats.p95 / before_stats.p95 if before_stats.p95 > 0 else 1.0, 4),
        p50_ratio=round(after_stats.p50 / before_stats.p50 if before_stats.p50 > 0 else 1.0, 4),
        p_value_faster=p_faster,
        p_value_slower=p_slower,
        hodges_lehmann_ms=round(shift, 3),
        metric=rules.metric,
        ratio=round(ratio, 4),
        ratio_low=round(low, 4),
        ratio_high=round(high, 4) if math.isfinite(high) else None,
        confidence=rules.confidence,
        runs_before=runs_before,
        runs_after=runs_after,
        verdict=verdict,
        explanation=why,
    )


_QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def _median_size(runs: list[np.ndarray]) -> float:
    return float(np.median([run.size for run in runs]))


def _pooled(runs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(runs) if runs else np.empty(0)


# Per endpoint: its stats in each arm, then its requests' latencies per run in each arm.
ArmsOfEndpoint = tuple[EndpointStats, EndpointStats, list[np.ndarray], list[np.ndarray]]


def judge_endpoints(arms: dict[str, ArmsOfEndpoint], playbook: Playbook) -> list[EndpointVerdict]:
    """A verdict per endpoint, its Mann-Whitney p-values Holm-adjusted across the endpoints compared."""
    raw = {endpoint: one_sided_p_values(_pooled(pair[2]), _pooled(pair[3])) for endpoint, pair in arms.items()}
    faster = holm_adjusted({endpoint: p[0] for endpoint, p in raw.items()})
    slower = holm_adjusted({endpoint: p[1] for endpoint, p in raw.items()})
    return [
        compare_endpoint(
            *pair,
            playbook.validation,
            playbook.slo.for_endpoint(endpoint).max_error_rate,
            p_values=(faster[endpoint], slower[endpoint]),
        )
        for endpoint, pair in arms.items()
    ]
