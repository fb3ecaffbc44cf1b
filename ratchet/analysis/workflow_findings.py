"""A temporal-workflow target's findings: the bottlenecks of each endpoint's executions (read from their
histories, ``ratchet.workflow_analytics``) as campaign findings, which levers address by type and endpoint."""

from __future__ import annotations

from ratchet.config.common import FindingType
from ratchet.contracts import BlindSpot, Finding
from ratchet.workflow_analytics.bottlenecks import find_bottlenecks
from ratchet.workflow_analytics.steps import Execution


def workflow_findings(executions: dict[str, list[Execution]], requests: dict[str, int]) -> list[Finding]:
    """Per endpoint, its executions' bottlenecks; the impact weighs each by the endpoint's share of the load."""
    total = sum(requests.values()) or 1
    findings = []
    for endpoint, found in executions.items():
        share = requests.get(endpoint, 0) / total
        for bottleneck in find_bottlenecks(found):
            findings.append(
                Finding(
                    id="",
                    type=FindingType(bottleneck.type),
                    endpoint=endpoint,
                    severity=bottleneck.severity,  # type: ignore[arg-type]
                    impact=round(bottleneck.impact * share, 4),
                    estimated_gain_ms=bottleneck.estimated_improvement_ms,
                    summary=f"{endpoint}: {bottleneck.summary}",
                    evidence=bottleneck.evidence
                    | {
                        "step": bottleneck.step,
                        "share_of_execution_time": bottleneck.impact,
                        "executions": len(found),
                        # The same bottleneck in another run or campaign: its numbers differ, its step does not.
                        "fingerprint": f"{bottleneck.type}|{endpoint}|{bottleneck.step}",
                    },
                )
            )
    return findings


HISTORY_BLIND_SPOT = BlindSpot(
    kind="inside-activities",
    blind_to=["queries and calls inside an activity", "plans", "N+1 patterns within a step"],
    summary="a workflow target is seen through its executions' histories: each step's queue wait, work, "
    "retries and payloads, not what an activity does inside",
    advice="Where a step is slow with no bottleneck named, profile its activity, or trace its worker and "
    "analyse that service as an http target.",
)


def history_notes(executions: dict[str, list[Execution]]) -> list[str]:
    """Where the histories were too few to judge, said where the findings are read."""
    notes = []
    for endpoint, found in executions.items():
        if len(found) < 20:
            notes.append(
                f"{endpoint}: only {len(found)} execution(s) measured; bottlenecks need at least 5, queue and "
                "growth patterns many more (raise load.duration or load.rate)"
            )
    return notes
