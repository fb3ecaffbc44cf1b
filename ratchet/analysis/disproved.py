"""Memory per target: a lever that an earlier campaign tried for a finding and undid because it gave nothing is
not recommended again for the same finding, unless the evidence changed materially since.

"Gave nothing" is validation's word: undone because its endpoints did not improve, or because without it the
others gave the same (leave-one-out). Changes undone for other reasons (a rejection, a cancel, a breached guard,
changed answers) say nothing of the lever's effect and are not remembered here. A later campaign that kept the
lever clears it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.contracts import CampaignStatus, ChangeState, Finding, Recommendation

# Reasons validation writes when it undoes a change for want of effect (workflows/campaign/validation.py).
_NO_EFFECT = ("did not improve", "leave-one-out:")
MATERIAL_CHANGE = 2.0
"""The evidence changed materially when the finding's estimated gain is at least this many times the one the
lever was disproved on (the endpoint got slower, the data grew): then the lever is tried again."""


@dataclass(frozen=True)
class Disproof:
    campaign_id: str
    reason: str
    estimated_gain_ms: float


Key = tuple[str, str, str]  # lever, finding type, endpoint


def disproofs(statuses: list[CampaignStatus]) -> dict[Key, Disproof]:
    """Per (lever, finding type, endpoint), the latest campaign's disproof, from finished campaigns oldest first;
    a later campaign that kept the lever for it forgets the disproof."""
    found: dict[Key, Disproof] = {}
    for status in statuses:
        recommendations = {r.id: r for r in status.recommendations}
        findings = {f.id: f for f in status.findings}
        for change in status.changes:
            recommendation = recommendations.get(change.recommendation_id)
            finding = findings.get(recommendation.finding_id) if recommendation is not None else None
            if finding is None:
                continue
            key = (change.lever, finding.type.value, finding.endpoint)
            if change.state == ChangeState.KEPT:
                found.pop(key, None)
            elif change.state == ChangeState.ROLLED_BACK and change.reason.startswith(_NO_EFFECT):
                found[key] = Disproof(status.campaign_id, change.reason, finding.estimated_gain_ms)
    return found


def hold_back_disproved(
    recommendations: list[Recommendation], findings: list[Finding], known: dict[Key, Disproof]
) -> tuple[list[Recommendation], list[str]]:
    """The recommendations with those disproved on the same finding no longer recommended (a person may still
    pick them); and one sentence per lever held back, for the campaign's events."""
    by_id = {f.id: f for f in findings}
    held: list[str] = []
    result = []
    for recommendation in recommendations:
        finding = by_id.get(recommendation.finding_id)
        if recommendation.lever is None or not recommendation.recommended or finding is None:
            result.append(recommendation)
            continue
        disproof = known.get((recommendation.lever.name, finding.type.value, finding.endpoint))
        if disproof is None or finding.estimated_gain_ms >= MATERIAL_CHANGE * disproof.estimated_gain_ms:
            result.append(recommendation)
            continue
        sentence = (
            f"{recommendation.lever.name} not recommended for {finding.type.value} on {finding.endpoint}: campaign "
            f"{disproof.campaign_id} undid it ({disproof.reason[:300]}); the evidence has not changed materially "
            f"(estimated gain {finding.estimated_gain_ms:.1f} ms, {disproof.estimated_gain_ms:.1f} ms then). "
            "Approve it by id, or run with --retry-disproved, to try it again"
        )
        held.append(sentence)
        result.append(
            recommendation.model_copy(
                update={"recommended": False, "rationale": f"{sentence}. {recommendation.rationale}"}
            )
        )
    return result, held
