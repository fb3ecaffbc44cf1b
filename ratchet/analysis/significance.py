"""Before/after comparison of one endpoint: rank tests on raw samples, a verdict that shows its numbers."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
from scipy.stats import fisher_exact, mannwhitneyu

from ratchet.analysis.bootstrap import PER_RUN_MIN_REQUESTS, QUANTILES, RatioInterval, ratio_interval
from ratchet.analysis.decisions import TailExcess
from ratchet.analysis.multiple_testing import holm_adjusted
from ratchet.config.playbook import Playbook, Validation
from ratchet.contracts import EndpointStats, EndpointVerdict, Verdict, ratio_digits

# The power at which a validation's smallest detectable change is stated.
DETECTION_POWER = 0.9
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


def runs_slower_p_value(before_runs: list[np.ndarray], after_runs: list[np.ndarray]) -> float:
    """One-sided exact Mann-Whitney p that the runs' medians are higher after than before: the run, not the
    request, as the unit. Requests of one run share its moment of the host (a busy core slows all of them), so
    a test on pooled requests calls a drift between a few runs "beyond chance"; this one cannot, and with few
    runs it cannot reach a small p at all (five runs per arm reach 0.004, three only 0.05)."""
    before = [float(np.median(run)) for run in before_runs if run.size]
    after = [float(np.median(run)) for run in after_runs if run.size]
    if len(before) < 2 or len(after) < 2:
        return 1.0
    return float(mannwhitneyu(after, before, alternative="greater", method="exact").pvalue)


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
    gets a hierarchical bootstrap interval at the playbook's confidence. With d- the improvement bar and d+
    the regression margin:

    - improved: faster beyond chance (the whole interval below 1 and Mann-Whitney on the pooled requests
      significant), by at least the bar (the estimate at or below 1 - d-) and by at least ``min_effect``;
    - regressed: slower beyond chance (the whole interval above 1, significant), by at least the margin (the
      estimate at or above 1 + d+) and by at least ``min_effect``; or the same of the typical request (the
      median's ratio and interval, beside a tail metric, with the runs' medians slower by their own rank
      test); or the error rate rose past the SLO's limit;
    - not worse: the interval's top below 1 + d+, or the worst slowdown it allows under ``min_effect``;
    - inconclusive otherwise: the runs cannot tell; more runs, or a person, must decide.

    Why the typical request on the regression side only: a tail percentile of a few dozen requests per run
    moves by a fifth from run to run on a busy host, so a slowdown of every request by a fifth stays
    "inconclusive" however many runs the budget allows, while the median of the same runs tells it at once.
    Regressions protect: either view may declare one. A gain is kept only for the metric the playbook asks.

    Why the bar is on the estimate, not on the interval's end: asking the interval to clear 1 - d- asks for
    confidence that the gain is at least d-, which a gain just past the bar gets only with thousands of
    requests per endpoint; chance is ruled out by the interval and the test, the bar rules out gains too small
    to keep. The regression side stays strict where it protects: "not worse" needs the whole interval under
    the margin.

    ``p_values`` (faster, slower), when given, replace the endpoint's own: the Holm-adjusted ones of a
    comparison of many endpoints. The explanation names the rule that decided and its numbers.
    """
    runs_before, runs_after = len(before_runs), len(after_runs)
    runs_p_slower = runs_slower_p_value(before_runs, after_runs)
    before, after = _pooled(before_runs), _pooled(after_runs)
    pooled = len(before_runs) + len(after_runs) > 2 and _median_size(before_runs + after_runs) < PER_RUN_MIN_REQUESTS
    if pooled:
        # The p95 of a dozen requests is their maximum: per-run values that small only add noise.
        before_runs, after_runs = [before], [after]
    p_faster, p_slower = p_values if p_values is not None else one_sided_p_values(before, after)
    test = "Mann-Whitney" if p_values is None else "Mann-Whitney, Holm-adjusted"
    shift = hodges_lehmann(after, before)
    errors_broke = after_stats.error_rate > max_error_rate >= before_stats.error_rate
    quantile = QUANTILES[rules.metric]
    interval = (
        ratio_interval(before_runs, after_runs, quantile=quantile, level=rules.confidence)
        if before.size and after.size
        else None
    )
    typical = (
        ratio_interval(before_runs, after_runs, quantile=0.5, level=rules.confidence)
        if interval is not None and quantile > 0.5
        else None
    )
    ratio, low, high = (interval.ratio, interval.low, interval.high) if interval else (1.0, 0.0, math.inf)
    before_ms, after_ms = (interval.before, interval.after) if interval else (0.0, 0.0)
    detectable = detectable_change(interval.log_sd, rules.confidence) if interval else None
    floor = rules.effect_floor_ms(before_ms)
    effect_ms = after_ms - before_ms
    worst_excess_ms = (high - 1) * before_ms if interval else math.inf
    # Several runs per arm: the ratio is of the runs' own percentiles, averaged; said so, as the report's table
    # shows the percentile of the arm's requests pooled, a different (and nearby) number.
    metric = f"mean run {rules.metric}" if len(before_runs) > 1 or len(after_runs) > 1 else rules.metric
    numbers = (
        f"{metric} {before_ms:.1f} -> {after_ms:.1f} ms "
        f"(x{ratio_digits(ratio)}, {rules.confidence:.0%} CI {ratio_digits(low)}-{_top(high)}), "
        f"median shift {shift:+.2f} ms, runs {runs_before}/{runs_after}, requests {before.size}/{after.size}"
        + (f" (runs pooled: fewer than {PER_RUN_MIN_REQUESTS} requests each)" if pooled else "")
        + (f"; smallest change detectable {detectable:.0%}" if detectable is not None else "")
    )
    bar, margin = 1 - rules.min_improvement, 1 + rules.regression_margin
    faster_by_chance = high >= 1 or p_faster >= rules.significance
    slower_by_chance = low <= 1 or p_slower >= rules.significance
    if errors_broke:
        verdict = Verdict.REGRESSED
        why = f"regressed: the error rate rose to {after_stats.error_rate:.1%} (limit {max_error_rate:.1%}); {numbers}"
    elif not faster_by_chance and ratio <= bar and -effect_ms >= floor:
        verdict = Verdict.IMPROVED
        why = (
            f"improved: the CI lies below x1 ({test} p={p_faster:.2g} < {rules.significance:g}) and the estimate "
            f"x{ratio_digits(ratio)} is past the bar x{ratio_digits(bar)}; {numbers}"
        )
    elif not slower_by_chance and ratio >= margin and effect_ms >= floor:
        verdict = Verdict.REGRESSED
        why = (
            f"regressed: the CI lies above x1 ({test} p={p_slower:.2g} < {rules.significance:g}) and the estimate "
            f"x{ratio_digits(ratio)} is past the margin x{ratio_digits(margin)}; {numbers}"
        )
    elif typical is not None and _typical_regressed(typical, margin, p_slower, runs_p_slower, rules):
        verdict = Verdict.REGRESSED
        why = (
            f"regressed: the typical request is slower: the median's CI x{ratio_digits(typical.low)}-"
            f"{_top(typical.high)} lies above x1 ({test} p={p_slower:.2g}; the runs' medians, Mann-Whitney "
            f"p={runs_p_slower:.2g} < {rules.significance:g}) and its estimate "
            f"x{ratio_digits(typical.ratio)} is past the margin x{ratio_digits(margin)} (median "
            f"{typical.before:.1f} -> {typical.after:.1f} ms; the {rules.metric} alone could not tell); {numbers}"
        )
    elif high <= margin or worst_excess_ms < floor:
        verdict = Verdict.NOT_WORSE
        why = "not worse: " + _not_worse_rule(high, margin, worst_excess_ms, floor) + "; "
        why += _why_not_improved(ratio, bar, effect_ms, floor, faster_by_chance, p_faster, high, rules, test)
        why += _too_few(detectable, rules, before_runs, after_runs) + f"; {numbers}"
    else:
        verdict = Verdict.INCONCLUSIVE
        why = (
            f"inconclusive: the CI reaches x{_top(high)}, past the margin x{ratio_digits(margin)}, "
            + _why_not_regressed(ratio, margin, effect_ms, floor, slower_by_chance, p_slower, low, test)
            + _too_few(detectable, rules, before_runs, after_runs)
            + f"; {numbers}"
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
        median_ratio=round(typical.ratio, 4) if typical is not None else None,
        median_ratio_low=round(typical.low, 4) if typical is not None else None,
        median_ratio_high=round(typical.high, 4) if typical is not None and math.isfinite(typical.high) else None,
        confidence=rules.confidence,
        runs_before=runs_before,
        runs_after=runs_after,
        detectable_change=round(detectable, 4) if detectable is not None else None,
        verdict=verdict,
        explanation=why,
    )


def _typical_regressed(
    typical: RatioInterval, margin: float, p_slower: float, runs_p_slower: float, rules: Validation
) -> bool:
    """The typical request slower beyond chance (its interval above 1, the test on requests and the test on
    the runs' medians significant), by the margin and by ``min_effect``.

    Why the runs' own test: a median of dozens of requests is steady within a run, so the bootstrap interval
    of a few runs is narrow, and a drift of the host between two or three runs per arm (CI, 2026-12-06: a
    wrong index "regressed" an endpoint it does not touch) looked like a slowdown. Only runs can show that the
    slowdown outlasts the host's drift."""
    return (
        typical.low > 1
        and p_slower < rules.significance
        and runs_p_slower < rules.significance
        and typical.ratio >= margin
        and typical.after - typical.before >= rules.effect_floor_ms(typical.before)
    )


def detectable_change(log_sd: float, confidence: float, power: float = DETECTION_POWER) -> float:
    """The smallest improvement (a share: 0.2 is 20% faster) that a comparison whose log-ratio has the bootstrap
    spread ``log_sd`` detects with ``power``: its interval then lies below 1 that often."""
    return 1 - math.exp(-z_sum(confidence, power) * log_sd)


def z_sum(confidence: float, power: float = DETECTION_POWER) -> float:
    """z of the two-sided interval plus z of the power: how many standard errors a detectable effect spans."""
    return NormalDist().inv_cdf(1 - (1 - confidence) / 2) + NormalDist().inv_cdf(power)


def _top(high: float) -> str:
    return ratio_digits(high) if math.isfinite(high) else "?"


def _not_worse_rule(high: float, margin: float, worst_excess_ms: float, floor: float) -> str:
    if high <= margin:
        return f"the CI's top x{_top(high)} is within the margin x{ratio_digits(margin)}"
    return f"the worst slowdown the CI allows, +{max(worst_excess_ms, 0):.1f} ms, is under the minimum effect {floor:.1f} ms"


def _why_not_improved(
    ratio: float,
    bar: float,
    effect_ms: float,
    floor: float,
    by_chance: bool,
    p_faster: float,
    high: float,
    rules: Validation,
    test: str,
) -> str:
    """Which rule an endpoint that is not worse missed on the way to improved."""
    if ratio > bar and not by_chance:
        return f"faster beyond chance, but the estimate x{ratio_digits(ratio)} misses the bar x{ratio_digits(bar)}"
    if ratio > bar:
        return f"not improved: the estimate x{ratio_digits(ratio)} misses the bar x{ratio_digits(bar)}"
    if by_chance:
        reason = f"{test} p={p_faster:.2g} >= {rules.significance:g}" if high < 1 else f"the CI reaches x{_top(high)}"
        return f"the estimate x{ratio_digits(ratio)} is past the bar, but not beyond chance ({reason})"
    return f"faster by {-effect_ms:.1f} ms, under the minimum effect {floor:.1f} ms ({rules.min_effect})"


def _why_not_regressed(
    ratio: float,
    margin: float,
    effect_ms: float,
    floor: float,
    by_chance: bool,
    p_slower: float,
    low: float,
    test: str,
) -> str:
    """Which rule an endpoint whose interval reaches past the margin missed on the way to regressed."""
    if by_chance:
        reason = f"{test} p={p_slower:.2g}" if low > 1 else f"the CI reaches down to x{ratio_digits(low)}"
        return f"yet no slowdown beyond chance ({reason})"
    if ratio < margin:
        return f"slower beyond chance, but the estimate x{ratio_digits(ratio)} is under the margin"
    return f"slower beyond chance by {effect_ms:.1f} ms, under the minimum effect {floor:.1f} ms"


def _too_few(
    detectable: float | None, rules: Validation, before_runs: list[np.ndarray], after_runs: list[np.ndarray]
) -> str:
    """Says so when the sample could not have detected the bar's improvement, and what was short: requests (the
    requests pooled as one run each would not detect it either), or agreement between the runs (pooled, they
    would: the runs differ from each other more than their requests do, and more runs, not more requests,
    would decide)."""
    if detectable is None or detectable <= rules.min_improvement:
        return ""
    before, after = _pooled(before_runs), _pooled(after_runs)
    # Runs too small to stand alone were pooled into one a side (said so in the numbers): not "1/1 runs".
    pooled = len(before_runs) == len(after_runs) == 1
    sizes = f"{before.size}/{after.size} requests" + (
        "" if pooled else f" in {len(before_runs)}/{len(after_runs)} runs"
    )
    if len(before_runs) + len(after_runs) > 2:
        within = ratio_interval([before], [after], quantile=QUANTILES[rules.metric], level=rules.confidence)
        if detectable_change(within.log_sd, rules.confidence) <= rules.min_improvement:
            return (
                f"; the runs disagree too much to decide: {sizes} can detect only a change of {detectable:.0%} or "
                f"more, not the {rules.min_improvement:.0%} asked for, because the runs differ from each other "
                "(more runs per arm would decide, not more requests)"
            )
    return (
        f"; too few requests to decide: {sizes} can detect only a change of {detectable:.0%} or more, "
        f"not the {rules.min_improvement:.0%} asked for"
    )


def _median_size(runs: list[np.ndarray]) -> float:
    return float(np.median([run.size for run in runs]))


def _pooled(runs: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(runs) if runs else np.empty(0)


# Per endpoint: its stats in each arm, then its requests' latencies per run in each arm.
ArmsOfEndpoint = tuple[EndpointStats, EndpointStats, list[np.ndarray], list[np.ndarray]]


def judge_endpoints(
    arms: dict[str, ArmsOfEndpoint], playbook: Playbook, measured_at: dict[str, str] | None = None
) -> list[EndpointVerdict]:
    """A verdict per endpoint, its Mann-Whitney p-values Holm-adjusted across the endpoints compared.
    ``measured_at`` says, per endpoint, whether its arms are the client's times or the server's (root spans)."""
    raw = {endpoint: one_sided_p_values(_pooled(pair[2]), _pooled(pair[3])) for endpoint, pair in arms.items()}
    faster = holm_adjusted({endpoint: p[0] for endpoint, p in raw.items()})
    slower = holm_adjusted({endpoint: p[1] for endpoint, p in raw.items()})
    verdicts = []
    for endpoint, pair in arms.items():
        verdict = compare_endpoint(
            *pair,
            playbook.validation,
            playbook.slo.for_endpoint(endpoint).max_error_rate,
            p_values=(faster[endpoint], slower[endpoint]),
        )
        if (measured_at or {}).get(endpoint) == "server":
            verdict = verdict.model_copy(
                update={
                    "measured_at": "server",
                    "explanation": verdict.explanation + "; measured inside the service (its root spans)",
                }
            )
        verdicts.append(verdict)
    return verdicts
