"""The campaign's decision points as pure functions of their payloads (the workflow calls them)."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import NamedTuple

from ratchet.analysis.multiple_testing import holm_adjusted
from ratchet.analysis.slo import share_met
from ratchet.analysis.throughput import is_architecture_level
from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook, Validation
from ratchet.contracts import (
    AssessResult,
    BytesVerdict,
    ChangeRecord,
    EndpointVerdict,
    Finding,
    GuardResult,
    LoadTestResult,
    Recommendation,
    SloCheck,
    Trial,
    ValidationOutcome,
    Verdict,
    bytes_ratio,
    ratio_digits,
)


class AfterAssessment(StrEnum):
    TARGETS_MET = "targets-met"
    NOTHING_ACTIONABLE = "nothing-actionable"
    CONTINUE = "continue"


def after_assessment(result: AssessResult, *, low_findings_met: bool = False) -> AfterAssessment:
    """No finding and targets met: done. Findings: go on. No finding but targets missed: nothing to do.

    ``low_findings_met``: targets met and only low findings left is done too: a campaign changes nothing there
    (campaigns started before this rule replay without it)."""
    only_low = all(f.severity == "low" for f in result.findings)
    if result.findings and not (low_findings_met and only_low and result.targets_met):
        return AfterAssessment.CONTINUE
    return AfterAssessment.TARGETS_MET if result.targets_met else AfterAssessment.NOTHING_ACTIONABLE


class DecisionTier(StrEnum):
    """What the assessment's findings call for, as the source material's tiers after profiling."""

    QUICK_FIX = "quick-fix"  # one bottleneck: its lever
    RANKED_PLAN = "ranked-plan"  # several: their levers, ranked
    ARCHITECTURE = "architecture"  # a gap no lever closes: escalated with the evidence, no lever tried
    MANUAL = "manual"  # findings that no lever addresses: advice for a person


def decision_tier(findings: list[Finding], recommendations: list[Recommendation]) -> tuple[DecisionTier, str]:
    """The tier of a plan and one sentence of why. An architecture-level finding (a capacity gap past the
    playbook's share) that no lever addresses outranks the levers for the rest: tuning endpoints does not
    bring a service that sustains a third of its traffic to all of it, and trying would spend the campaign's
    time and the target's stability on changes that cannot meet the target."""
    addressed = {f for r in recommendations if r.lever is not None for f in r.finding_ids}
    architecture = [f for f in findings if is_architecture_level(f) and f.id not in addressed]
    if architecture:
        said = "; ".join(f"{f.id}: {f.summary}" for f in architecture)
        return DecisionTier.ARCHITECTURE, f"{said}; no lever addresses it"
    levers = [r for r in recommendations if r.recommended and r.lever is not None]
    if not levers:
        return DecisionTier.MANUAL, "no lever can address the findings"
    named = ", ".join(f"{r.id} {r.lever.name}" for r in levers if r.lever is not None)
    if len(levers) == 1:
        return DecisionTier.QUICK_FIX, f"one bottleneck, one lever: {named}"
    return DecisionTier.RANKED_PLAN, f"{len(levers)} levers for several bottlenecks, in rank order: {named}"


def validation_outcome(
    verdicts: list[EndpointVerdict],
    slo: list[SloCheck],
    playbook: Playbook,
    *,
    payload_gain: bool = False,
    projected: list[SloCheck] | None = None,
) -> ValidationOutcome:
    """Met, partial (at or above the acceptance bar), failed, or regressed (any endpoint got worse).

    ``payload_gain``: a change proved itself in wire bytes (``bytes_verdict``), an improvement as real as one
    in latency for the partial outcome.
    ``projected``: the targets at the baseline's conditions with the proven gains (``projected_checks``); the
    bar is passed when either reading passes it, so that a proven gain is not undone because the host was busy
    during the validation's runs (campaigns validated before this rule replay without it).
    """
    if any(v.verdict == Verdict.REGRESSED for v in verdicts):
        return ValidationOutcome.REGRESSED
    if all(check.met for check in slo):
        return ValidationOutcome.MET
    improved = payload_gain or any(v.verdict == Verdict.IMPROVED for v in verdicts)
    bar = playbook.validation.acceptance_bar
    if improved and (share_met(slo) >= bar or (projected is not None and share_met(projected) >= bar)):
        return ValidationOutcome.PARTIAL
    return ValidationOutcome.FAILED


_STILL = (Verdict.UNCHANGED, Verdict.NOT_WORSE)


def validation_summary(verdicts: list[EndpointVerdict], slo: list[SloCheck]) -> str:
    """Why validation decided as it did, per endpoint: verdicts that moved, then targets still missed."""
    parts = [f"{v.endpoint} {v.verdict.value}: {v.explanation}" for v in verdicts if v.verdict not in _STILL]
    parts += [f"{c.endpoint} misses {c.metric} < {c.limit:g} (measured {c.value:g})" for c in slo if not c.met]
    still = [v.endpoint for v in verdicts if v.verdict in _STILL]
    if still:
        parts.append(f"not worse: {', '.join(still)}")
    return "; ".join(parts) or "no endpoint measured"


def undecided_endpoints(
    verdicts: list[EndpointVerdict], changes: list[ChangeRecord], rules: Validation, *, decidable_only: bool = False
) -> list[str]:
    """Endpoints more interleaved runs could still decide: inconclusive ones, and those a change addresses
    whose interval still reaches past the improvement margin while none of the change's endpoints has
    improved yet (the change could still prove itself).

    ``decidable_only``: only those that the runs left in the budget (``max_runs_per_arm``) could decide at all
    (``could_settle``, ``could_prove``): an endpoint with a request or two per run stays undecided however many
    rounds run, and would only spend them."""
    by_endpoint = {v.endpoint: v for v in verdicts}
    settle = {v.endpoint for v in verdicts if v.verdict == Verdict.INCONCLUSIVE}
    prove: set[str] = set()
    for change in changes:
        mine = [by_endpoint[e] for e in change.endpoints or [change.endpoint] if e in by_endpoint]
        if any(v.verdict == Verdict.IMPROVED for v in mine):
            continue
        prove |= {
            v.endpoint
            for v in mine
            if v.verdict != Verdict.REGRESSED and v.ratio_low is not None and v.ratio_low < 1 - rules.min_improvement
        }
    if decidable_only:
        settle = {e for e in settle if could_settle(by_endpoint[e], rules)}
        prove = {e for e in prove if could_prove(by_endpoint[e], rules)}
    return sorted(settle | prove)


def _shrunk_half_width(verdict: EndpointVerdict, rules: Validation) -> float | None:
    """The interval's half-width on a log scale at ``max_runs_per_arm`` runs: it shrinks with the square root of
    the runs (each run adds as many requests). None: no interval, or no runs left in the budget."""
    if verdict.ratio is None or verdict.ratio_low is None or verdict.ratio_high is None or verdict.ratio <= 0:
        return None
    if verdict.runs_after >= rules.max_runs_per_arm:
        return None
    half = (math.log(verdict.ratio_high) - math.log(max(verdict.ratio_low, 1e-9))) / 2
    return half * math.sqrt(verdict.runs_after / rules.max_runs_per_arm)


def could_settle(verdict: EndpointVerdict, rules: Validation) -> bool:
    """Whether the runs left could settle an inconclusive endpoint, were its estimate to stay where it is: the
    interval under the regression margin (not worse), or clear of 1 with the estimate past it (regressed)."""
    shrunk = _shrunk_half_width(verdict, rules)
    if shrunk is None or verdict.ratio is None:
        return False
    margin = 1 + rules.regression_margin
    return verdict.ratio * math.exp(shrunk) <= margin or (
        verdict.ratio >= margin and verdict.ratio * math.exp(-shrunk) > 1
    )


def could_prove(verdict: EndpointVerdict, rules: Validation) -> bool:
    """Whether the runs left could prove a gain on this endpoint: an interval of the shrunk width around an
    estimate at the improvement bar (or past it) clear of 1."""
    shrunk = _shrunk_half_width(verdict, rules)
    if shrunk is None or verdict.ratio is None:
        return False
    return min(verdict.ratio, 1 - rules.min_improvement) * math.exp(shrunk) < 1


def changes_without_effect(changes: list[ChangeRecord], verdicts: list[EndpointVerdict]) -> list[ChangeRecord]:
    """Changes that did not prove themselves and are undone: none of their endpoints improved in latency and,
    for one judged on wire bytes on some endpoints (``bytes_attribution``), none of those shrank. Its
    bytes-judged endpoints do not count in latency: the whole's gain there is another change's doing."""
    improved = {v.endpoint for v in verdicts if v.verdict == Verdict.IMPROVED}

    def proven(change: ChangeRecord) -> bool:
        if any(b.verdict == Verdict.IMPROVED for b in change.bytes_attribution):
            return True
        judged_on_bytes = {b.endpoint for b in change.bytes_attribution}
        return bool(improved & (set(change.endpoints or [change.endpoint]) - judged_on_bytes))

    return [c for c in changes if not proven(c)]


# Findings about what an answer weighs: the changes addressing them are judged on the bytes they save.
PAYLOAD_FINDINGS = frozenset({FindingType.UNCOMPRESSED, FindingType.LARGE_PAYLOAD})


def payload_endpoints(
    change: ChangeRecord, recommendations: list[Recommendation], findings: list[Finding]
) -> list[str]:
    """The endpoints on which ``change`` addresses a payload finding (compression, a smaller answer) or the
    caching headers of the asset the endpoint itself serves."""
    return sorted({f.endpoint for f in _addressed(change, recommendations, findings) if _judged_on_answers(f)})


def caching_endpoints(
    change: ChangeRecord, recommendations: list[Recommendation], findings: list[Finding]
) -> list[str]:
    """The endpoints whose own answers ``change`` claims to make cacheable by browsers and proxies."""
    return sorted(
        {f.endpoint for f in _addressed(change, recommendations, findings) if f.type == FindingType.HTTP_CACHING}
        & set(payload_endpoints(change, recommendations, findings))
    )


def _addressed(change: ChangeRecord, recommendations: list[Recommendation], findings: list[Finding]) -> list[Finding]:
    recommendation = next((r for r in recommendations if r.id == change.recommendation_id), None)
    if recommendation is None:
        return []
    addressed = set(recommendation.finding_ids or [recommendation.finding_id])
    return [f for f in findings if f.id in addressed]


def _judged_on_answers(finding: Finding) -> bool:
    # A page's assets are other URLs than the page's own answer: a change there is judged as before.
    own_asset = finding.type == FindingType.HTTP_CACHING and finding.evidence.get("served_by") == "the endpoint"
    return finding.type in PAYLOAD_FINDINGS or own_asset


def bytes_verdict(endpoint: str, without: float, with_it: float, rules: Validation) -> BytesVerdict:
    """Improved when the answers shrank by ``min_improvement`` at least; regressed when they grew by the
    ``regression_margin``. Wire bytes of the same requests hardly vary, so one measurement each way tells."""
    ratio = bytes_ratio(without, with_it)
    numbers = f"{without:,.0f} -> {with_it:,.0f} bytes on the wire (x{ratio_digits(ratio)})"
    if ratio <= 1 - rules.min_improvement:
        verdict, why = Verdict.IMPROVED, f"{numbers}: smaller by {1 - ratio:.0%}"
    elif ratio >= 1 + rules.regression_margin:
        verdict, why = Verdict.REGRESSED, f"{numbers}: larger by {ratio - 1:.0%}"
    else:
        verdict, why = Verdict.NOT_WORSE, f"{numbers}: less than the {rules.min_improvement:.0%} asked for"
    return BytesVerdict(endpoint=endpoint, without_bytes=without, with_bytes=with_it, verdict=verdict, explanation=why)


def with_caching_verdict(verdict: BytesVerdict, fresh_without_s: int, fresh_with_s: int) -> BytesVerdict:
    """A change that claims to let caches keep an asset, judged by its headers: improved when its answers give
    caches a lifetime with it and none without, whatever the bytes (a load test has no browser cache)."""
    if fresh_with_s > 0 and fresh_without_s == 0:
        why = f"kept by caches for {fresh_with_s:,} s with it (Cache-Control max-age), not at all without; "
        return verdict.model_copy(update={"verdict": Verdict.IMPROVED, "explanation": why + verdict.explanation})
    why = f"caches may keep it {fresh_with_s:,} s with it, {fresh_without_s:,} s without: no change there; "
    return verdict.model_copy(update={"explanation": why + verdict.explanation})


class TailExcess(NamedTuple):
    """The share of a bake's requests above the reference p95 against the reference's own share (about 5%),
    and the one-sided p-value that the bake's share is larger."""

    p_value: float
    share_after: float
    share_before: float


def guard_check(
    validated: LoadTestResult,
    watched: LoadTestResult,
    playbook: Playbook,
    tails: dict[str, TailExcess],
) -> GuardResult:
    """Breached when an endpoint fails too often, or its p95 is beyond the guard's limit and that is no chance.

    ``tails`` holds, per endpoint, how often the bake's requests exceed the reference p95 (``TailExcess``); the
    p-values are Holm-adjusted across the endpoints here, since a bake watches them all. A breach needs all
    three: p95 beyond the guard's tolerance, significance of the tail test, and a p95 excess of at least
    ``min_effect``; a short bake's p95 alone is noise. The tail test, not a shift of the median, because a
    rollout step slows only its share of the requests: at 10% the median does not move, the p95 does.
    """
    guard = playbook.deployment.guard
    rules = playbook.validation
    # Imported here: the campaign workflow imports this module, and the statistics libraries behind Holm
    # (scipy, statsmodels) would add over a second to every worker's start for a check only an activity makes.

    reasons = []
    adjusted = holm_adjusted({endpoint: tail.p_value for endpoint, tail in tails.items()})
    for now in watched.endpoints:
        # Two failures at least: one failed request out of five is not yet a rate.
        if now.error_rate > guard.max_error_rate and now.errors >= 2:
            reasons.append(f"{now.endpoint}: error rate {now.error_rate:.1%} > {guard.max_error_rate:.1%}")
        before, tail = validated.stats(now.endpoint), tails.get(now.endpoint)
        if before is None or tail is None:
            continue
        limit = max(before.p95 * (1 + guard.p95_tolerance), before.p95 + guard.p95_min_excess_ms)
        p_value = adjusted[now.endpoint]
        if (
            now.p95 > limit
            and p_value < rules.significance
            and now.p95 - before.p95 >= rules.effect_floor_ms(before.p95)
        ):
            reasons.append(
                f"{now.endpoint}: p95 {now.p95:.1f} ms > {limit:.1f} ms (reference {before.p95:.1f} ms); "
                f"{tail.share_after:.0%} of requests above the reference p95 against {tail.share_before:.0%}, "
                f"Holm-adjusted p={p_value:.2g}"
            )
    return GuardResult(breached=bool(reasons), reasons=reasons)


# Trials within this share of the best p95 are as good: short trials differ by more than that from noise alone.
TRIAL_TIE = 0.05


def best_trial(trials: list[Trial]) -> Trial | None:
    """The trial of a tunable lever to keep: of those that did not fail and came within ``TRIAL_TIE`` of the
    lowest p95, the one with the smallest value (fewer connections, workers or memory for the same latency)."""
    measured = [t for t in trials if not t.failed and t.p95_ms is not None]
    if not measured:
        return None
    lowest = min(t.p95_ms or 0.0 for t in measured)
    return min((t for t in measured if (t.p95_ms or 0.0) <= lowest * (1 + TRIAL_TIE)), key=lambda t: t.value)
