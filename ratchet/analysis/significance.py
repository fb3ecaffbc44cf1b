"""Before/after comparison of one endpoint: rank tests on raw samples, a verdict that shows its numbers."""

from __future__ import annotations

import numpy as np
from scipy.stats import mannwhitneyu
from statsmodels.stats.multitest import multipletests

from ratchet.config.playbook import Validation
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
    before: np.ndarray,
    after: np.ndarray,
    rules: Validation,
    max_error_rate: float,
    p_values: tuple[float, float] | None = None,
) -> EndpointVerdict:
    """Verdict for one endpoint: improved / unchanged / regressed, with the p-values and ratios behind it.

    A change must be significant (Mann-Whitney, one-sided, p < significance), large relative to the
    before value (the playbook's margins on p95) and large in absolute terms: the Hodges-Lehmann shift
    (the typical per-request difference, robust where a p95 of a few dozen samples is not) must reach
    min_effect_ms, so that noise on a fast endpoint never reads as a regression. ``p_values`` (faster,
    slower), when given, replace the endpoint's own: the Holm-adjusted ones of a comparison of many endpoints.
    """
    p95_ratio = after_stats.p95 / before_stats.p95 if before_stats.p95 > 0 else 1.0
    p50_ratio = after_stats.p50 / before_stats.p50 if before_stats.p50 > 0 else 1.0
    p_faster, p_slower = p_values if p_values is not None else one_sided_p_values(before, after)
    test = "Mann-Whitney" if p_values is None else "Mann-Whitney, Holm-adjusted"
    shift = hodges_lehmann(after, before)
    errors_broke = after_stats.error_rate > max_error_rate >= before_stats.error_rate
    numbers = (
        f"p95 {before_stats.p95:.1f} -> {after_stats.p95:.1f} ms (x{p95_ratio:.2f}), "
        f"median shift {shift:+.2f} ms, n {before.size}/{after.size}"
    )
    if errors_broke:
        verdict = Verdict.REGRESSED
        why = f"error rate rose to {after_stats.error_rate:.1%} (limit {max_error_rate:.1%}); {numbers}"
    elif p_faster < rules.significance and p95_ratio <= 1 - rules.min_improvement and -shift >= rules.min_effect_ms:
        verdict = Verdict.IMPROVED
        why = f"faster ({test} p={p_faster:.2g} < {rules.significance}); {numbers}"
    elif p_slower < rules.significance and p95_ratio >= 1 + rules.regression_margin and shift >= rules.min_effect_ms:
        verdict = Verdict.REGRESSED
        why = f"slower ({test} p={p_slower:.2g} < {rules.significance}); {numbers}"
    else:
        verdict = Verdict.UNCHANGED
        why = f"no change beyond the margins (p faster {p_faster:.2g}, p slower {p_slower:.2g}); {numbers}"
    return EndpointVerdict(
        endpoint=before_stats.endpoint,
        before=before_stats,
        after=after_stats,
        p95_ratio=round(p95_ratio, 4),
        p50_ratio=round(p50_ratio, 4),
        p_value_faster=p_faster,
        p_value_slower=p_slower,
        hodges_lehmann_ms=round(shift, 3),
        verdict=verdict,
        explanation=why,
    )
