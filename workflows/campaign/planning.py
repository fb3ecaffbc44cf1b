"""Planning: levers ranked for the findings, approved at the gate, conflicts held back."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.decisions import DecisionTier, decision_tier
    from ratchet.config.common import Phase, Role
    from ratchet.config.playbook import AlertKind
    from ratchet.contracts import (
        AssessResult,
        CampaignState,
        PlanRequest,
        PlanResult,
        Recommendation,
    )

from workflows.campaign.context import Campaign, Stop
from workflows.campaign.gates import ask_gate
from workflows.catalogue import PLAN_CHANGES


async def planning_phase(campaign: Campaign, assessment: AssessResult) -> list[Recommendation]:
    campaign.begin(Phase.PLANNING)
    plan: PlanResult = await campaign.activity(
        PLAN_CHANGES,
        PlanRequest(
            campaign_id=campaign.input.campaign_id,
            findings=assessment.findings,
            target=campaign.input.target,
            playbook=campaign.input.playbook,
            retry_disproved=campaign.input.retry_disproved,
        ),
        Role.PERF_OPTIMIZER,
        "Rank levers for the findings",
    )
    campaign.status.recommendations = plan.recommendations
    campaign.status.gain_model = plan.gain_model
    campaign.event(f"planning: predicted gains {plan.gain_model}")
    for note in plan.notes:
        campaign.event(f"planning: {note}")
    if workflow.patched("decision-tiers"):  # campaigns planned before the tiers replay without them
        tier, why = decision_tier(assessment.findings, plan.recommendations)
        campaign.status.decision_tier, campaign.status.decision_note = tier.value, why
        campaign.event(f"decision: {tier.value}: {why}")
        if tier == DecisionTier.ARCHITECTURE:
            escalate_architecture(campaign, why)
    if not any(r.lever is not None for r in plan.recommendations):
        campaign.end(Phase.PLANNING, "manual advice only", "no lever can address the findings")
        raise Stop(CampaignState.COMPLETED, "manual advice only", "the findings need a person; see the plan")
    decision = await ask_gate(campaign, Phase.PLANNING)
    if decision is not None and decision.decision == "rejected":
        campaign.end(Phase.PLANNING, "rejected", decision.note)
        raise Stop(CampaignState.REJECTED, "plan rejected: nothing applied", decision.note)
    campaign.approved_only = decision.only if decision is not None else None
    if workflow.patched("conflicting-levers"):  # older campaigns replay without the check
        hold_back_conflicts(campaign, plan.recommendations)
    chosen = [r.id for r in plan.recommendations if is_approved(campaign, r)]
    if not chosen:
        campaign.end(Phase.PLANNING, "nothing approved", "the approval named no recommendation with a lever")
        raise Stop(CampaignState.COMPLETED, "nothing approved: nothing applied")
    campaign.end(Phase.PLANNING, "approved", f"approved: {', '.join(chosen)}")
    return plan.recommendations


def escalate_architecture(campaign: Campaign, why: str) -> None:
    """Hand an architecture-level problem to the planning gate's escalation approvers (the approvers when it
    names none) with its evidence, and end here: no lever is tried."""
    playbook = campaign.input.playbook
    gate = playbook.gates.get(Phase.PLANNING)
    people = ", ".join((gate.escalate_to if gate is not None and gate.escalate_to else None) or playbook.approvers)
    campaign.alert(
        AlertKind.ESCALATION,
        f"{campaign.input.campaign_id}: an architecture-level problem for {people}",
        why[:2500],
        phase=Phase.PLANNING.value,
        escalated_to=people,
    )
    campaign.end(Phase.PLANNING, "escalated: architecture", f"to {people}")
    raise Stop(
        CampaignState.COMPLETED,
        "escalated: architecture-level problem",
        f"to {people}: {why}; nothing applied (the plan for the other findings is in the report)",
    )


def hold_back_conflicts(campaign: Campaign, recommendations: list[Recommendation]) -> None:
    """Of approved levers that conflict, keep the best-ranked: they are never applied in the same trial."""
    if campaign.approved_only is None:
        return  # the recommended set: planning already kept conflicts out of it
    kept: list[str] = []
    for recommendation in recommendations:
        if recommendation.id not in campaign.approved_only or recommendation.lever is None:
            continue
        clash = next((other for other in kept if other in recommendation.conflicts_with), None)
        if clash is None:
            kept.append(recommendation.id)
        else:
            campaign.event(f"{recommendation.id} ({recommendation.lever.name}) held back: it conflicts with {clash}")
    campaign.approved_only = kept


def is_approved(campaign: Campaign, recommendation: Recommendation) -> bool:
    if recommendation.lever is None:
        return False
    if campaign.approved_only is not None:
        return recommendation.id in campaign.approved_only
    return recommendation.recommended
