"""The cache target: each declared cache's hit rate under the baseline load (its published hit and miss
counters) against the playbook's ``slo.cache_hit_rate``, and a finding for each cache that misses it."""

from __future__ import annotations

from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook
from ratchet.config.target import Target
from ratchet.contracts import CacheLookups, Finding, SloCheck

CACHE_HIT_RATE = "cache_hit_rate"


def cache_subject(name: str) -> str:
    """How a cache is named where an endpoint would be (checks, findings, reports)."""
    return f"(cache {name})"


def cache_checks(lookups: list[CacheLookups], playbook: Playbook) -> list[SloCheck]:
    """One check per cache that served any lookup during the run: a cache nobody asked is not judged."""
    limit = playbook.slo.cache_hit_rate
    if limit is None:
        return []
    return [
        SloCheck(
            endpoint=cache_subject(c.cache),
            metric=CACHE_HIT_RATE,
            limit=limit,
            value=round(rate, 4),
            met=rate >= limit,
            at_least=True,
        )
        for c in lookups
        if (rate := c.hit_rate) is not None
    ]


def unchecked_cache_note(lookups: list[CacheLookups], target: Target, playbook: Playbook) -> str | None:
    """What the assessment says when the playbook sets a hit rate target and some cache could not be judged."""
    limit = playbook.slo.cache_hit_rate
    if limit is None:
        return None
    if not target.caches:
        return (
            f"cache target (hit rate {limit:g}) not checked: the target declares no caches (name each cache's "
            "hit and miss counters under the target's caches:)"
        )
    judged = {c.cache for c in lookups if c.hit_rate is not None}
    idle = [c.name for c in target.caches if c.name not in judged]
    if not idle:
        return None
    return (
        f"cache target (hit rate {limit:g}) not checked for {', '.join(idle)}: no lookup was counted during the "
        "baseline (counters unreadable, or the load asked nothing of it)"
    )


def cache_findings(checks: list[SloCheck], lookups: list[CacheLookups]) -> list[Finding]:
    """A cache-hit-rate finding per cache below the target: high when under half of it, medium otherwise.

    No latency gain is claimed: what a miss costs shows in the endpoints' own findings; this one says where
    the lookups go."""
    counted = {cache_subject(c.cache): c for c in lookups}
    findings = []
    for check in checks:
        if check.metric != CACHE_HIT_RATE or check.met:
            continue
        served = counted[check.endpoint]
        findings.append(
            Finding(
                id="",
                type=FindingType.CACHE_HIT_RATE,
                endpoint=check.endpoint,
                severity="high" if check.value < check.limit / 2 else "medium",
                impact=0.0,
                estimated_gain_ms=0.0,
                summary=f"{check.endpoint} served {check.value:.0%} of {served.lookups:.0f} lookups under the "
                f"baseline load, under the {check.limit:.0%} target",
                evidence={
                    "fingerprint": f"{FindingType.CACHE_HIT_RATE.value}|{check.endpoint}",
                    "hit_rate": check.value,
                    "limit": check.limit,
                    "hits": served.hits,
                    "misses": served.misses,
                },
            )
        )
    return findings
