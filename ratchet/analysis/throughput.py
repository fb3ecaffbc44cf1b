"""The throughput target: the stress run's knee against the rate the playbook asks the service to sustain."""

from __future__ import annotations

from ratchet.analysis.knee import knee_summary
from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook
from ratchet.contracts import Finding, LoadTestResult, SloCheck, StressReport

# The checks and findings about the service as a whole, not one endpoint.
WHOLE_SERVICE = "(the service)"
THROUGHPUT = "throughput_rps"


def last_stress(load_shapes: list[LoadTestResult]) -> StressReport | None:
    """The stress run's report, when the assessment ran one."""
    return next((r.stress for r in reversed(load_shapes) if r.stress is not None), None)


def throughput_check(stress: StressReport | None, playbook: Playbook) -> SloCheck | None:
    """The knee against ``slo.throughput_rps``; None when no target is set, no stress run measured one, or the
    run never broke below the target (its highest step is then all it shows: see ``unchecked_throughput_note``)."""
    wanted = playbook.slo.throughput_rps
    if wanted is None or stress is None or not stress.steps:
        return None
    knee = stress.knee_rate or 0.0
    if stress.broke_at_rate is None and knee < wanted:
        return None  # sustained every step asked, all below the target: not measured up to it
    return SloCheck(endpoint=WHOLE_SERVICE, metric=THROUGHPUT, limit=wanted, value=knee, met=knee >= wanted)


def unchecked_throughput_note(stress: StressReport | None, playbook: Playbook) -> str | None:
    """What the assessment says when the target is set and the measurements cannot judge it."""
    wanted = playbook.slo.throughput_rps
    if wanted is None:
        return None
    if stress is None or not stress.steps:
        return (
            f"throughput target ({wanted:g} req/s) not checked: the playbook runs no stress load (load.stress) "
            "whose knee would show what the service sustains"
        )
    if stress.broke_at_rate is None and (stress.knee_rate or 0) < wanted:
        return (
            f"throughput target ({wanted:g} req/s) not checked: the stress run met its targets up to its highest "
            f"step, {stress.steps[-1].rate:g} req/s (raise load.stress.max_rate above {wanted:g})"
        )
    return None


def capacity_findings(check: SloCheck | None, stress: StressReport | None, playbook: Playbook) -> list[Finding]:
    """A finding when the knee misses the throughput target: high when it is below ``architecture_share`` of
    it (a gap no tuning of one endpoint closes: more instances, another design), medium otherwise."""
    if check is None or check.met or stress is None:
        return []
    share = check.value / check.limit
    far = share < playbook.slo.architecture_share
    return [
        Finding(
            id="",
            type=FindingType.CAPACITY,
            endpoint=WHOLE_SERVICE,
            severity="high" if far else "medium",
            impact=round(1 - share, 3),
            estimated_gain_ms=0.0,
            summary=f"the service sustains {check.value:g} req/s, {share:.0%} of the {check.limit:g} req/s asked "
            f"({knee_summary(stress)})",
            evidence={
                "fingerprint": f"{FindingType.CAPACITY.value}|{WHOLE_SERVICE}|{THROUGHPUT}",
                "knee_rate": check.value,
                "asked_rate": check.limit,
                "share": round(share, 3),
                "architecture_share": playbook.slo.architecture_share,
                "broke_at_rate": stress.broke_at_rate,
                "break_reason": stress.break_reason,
                "steps": [
                    {"rate": s.rate, "achieved": s.achieved_rate, "p95": s.p95, "errors": s.error_rate, "met": s.met}
                    for s in stress.steps
                ],
            },
        )
    ]


def is_architecture_level(finding: Finding) -> bool:
    """A capacity gap past the playbook's architecture share (set on the finding when it was made)."""
    return finding.type == FindingType.CAPACITY and finding.severity == "high"
