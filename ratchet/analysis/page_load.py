"""The page load target: each page's median LCP and FCP on each device profile (first visits in Chromium)
against the playbook's ``slo.page_load``, a finding per page and profile that misses it, and the verdict after
the changes (the same visits again), visit by visit."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass

from ratchet.analysis.service_verdicts import log_ratio_interval, ratio_service_verdict
from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook
from ratchet.contracts import Finding, PageVitals, ServiceVerdict, SloCheck

_METRICS = ("lcp", "fcp")


def page_subject(page: PageVitals) -> str:
    """A page on a device, where an endpoint would be named."""
    return f"{page.endpoint} ({page.profile})"


def _limits(playbook: Playbook) -> dict[str, float]:
    wanted = playbook.slo.page_load
    if wanted is None:
        return {}
    return {f"{m}_ms": limit for m in _METRICS if (limit := getattr(wanted, f"{m}_ms")) is not None}


def page_load_checks(pages: list[PageVitals], playbook: Playbook) -> list[SloCheck]:
    """A check per page, profile and target that the visits measured."""
    checks = []
    for page in pages:
        for metric, limit in _limits(playbook).items():
            value = getattr(page, metric)
            if value is not None:
                checks.append(
                    SloCheck(endpoint=page_subject(page), metric=metric, limit=limit, value=value, met=value < limit)
                )
    return checks


def unchecked_page_load_note(pages: list[PageVitals], probed_pages: int, playbook: Playbook) -> str | None:
    if playbook.slo.page_load is None or pages:
        return None
    why = "the target has no page (a GET endpoint answering HTML)" if not probed_pages else "no page was measured"
    return f"page load targets not checked: {why}"


def page_load_findings(checks: list[SloCheck], pages: list[PageVitals]) -> list[Finding]:
    """A page-load finding per page and profile with a target missed: high at twice a target."""
    by_subject = {page_subject(p): p for p in pages}
    missed: dict[str, list[SloCheck]] = {}
    for check in checks:
        if check.endpoint in by_subject and not check.met:
            missed.setdefault(check.endpoint, []).append(check)
    findings = []
    for subject, failed in missed.items():
        page = by_subject[subject]
        said = "; ".join(f"{c.metric.removesuffix('_ms').upper()} {c.value:.0f} ms over {c.limit:g} ms" for c in failed)
        findings.append(
            Finding(
                id="",
                type=FindingType.PAGE_LOAD,
                endpoint=page.endpoint,
                severity="high" if any(c.value >= 2 * c.limit for c in failed) else "medium",
                impact=0.0,
                estimated_gain_ms=round(max(c.value - c.limit for c in failed), 1),
                summary=f"{page.endpoint} on {page.profile}: {said} (median of {page.visits} first visits; "
                f"{page.bytes / 1e6:.2f} MB in {page.requests:.0f} requests)",
                evidence={
                    "fingerprint": f"{FindingType.PAGE_LOAD.value}|{page.endpoint}|{page.profile}",
                    "profile": page.profile,
                    "checks": [c.model_dump() for c in failed],
                    "lcp_samples": page.lcp_samples,
                    "fcp_samples": page.fcp_samples,
                    "page_weight_bytes": page.bytes,
                    "requests": page.requests,
                },
            )
        )
    return findings


@dataclass(frozen=True)
class _Paired:
    """One page, profile and metric measured both before and after the changes."""

    before: PageVitals
    after: PageVitals
    metric: str
    limit: float
    was: list[float]
    now: list[float]


def _paired(before: list[PageVitals], after: list[PageVitals], playbook: Playbook) -> Iterator[_Paired]:
    """Each page, profile and metric with a target, measured on both sides (a page not measured before the
    changes was noted then)."""
    earlier = {page_subject(p): p for p in before}
    for page in after:
        old = earlier.get(page_subject(page))
        if old is None:
            continue
        for metric, limit in _limits(playbook).items():
            samples = metric.removesuffix("_ms") + "_samples"
            yield _Paired(old, page, metric, limit, getattr(old, samples), getattr(page, samples))


def page_load_verdicts(before: list[PageVitals], after: list[PageVitals], playbook: Playbook) -> list[ServiceVerdict]:
    """Each page, profile and target measured before and after the changes: Welch's t interval of the ratio
    over the visits (each a first view in a fresh browser, on the same emulated device and link)."""
    rules = playbook.validation
    level = 1 - rules.significance
    verdicts = []
    for pair in _paired(before, after, playbook):
        was, now = pair.was, pair.now
        if len(was) < 2 or len(now) < 2:
            continue  # said by unjudged_page_metrics
        _, low, high = log_ratio_interval(now, was, level)
        before_value, after_value = statistics.median(was), statistics.median(now)
        verdicts.append(
            ratio_service_verdict(
                page_subject(pair.after),
                pair.metric,
                before_value,
                after_value,
                (low, high),
                margin=rules.regression_margin,
                limit=pair.limit,
                digits=1,
                explanation=f"median of {len(was)} first visits before and {len(now)} after on {pair.after.profile}: "
                f"x{after_value / before_value if before_value else 1:.2f} [{low:.2f}-{high:.2f}] at {level:.0%}",
            )
        )
    return verdicts


def unjudged_page_metrics(before: list[PageVitals], after: list[PageVitals], playbook: Playbook) -> list[str]:
    """A note per page, profile and target that got no verdict: fewer than two visits measured it on a side."""
    return [
        f"{page_subject(pair.after)} {pair.metric.removesuffix('_ms').upper()}: not judged, measured by "
        f"{len(pair.was)} of {pair.before.visits} visits before and {len(pair.now)} of {pair.after.visits} after "
        "(a verdict needs 2 on each side)"
        for pair in _paired(before, after, playbook)
        if len(pair.was) < 2 or len(pair.now) < 2
    ]
