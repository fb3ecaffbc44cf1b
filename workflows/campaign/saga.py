"""The saga of a campaign's changes: each registered before it is applied, undone at most once, newest first."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.contracts import (
        ChangeRecord,
        ChangeState,
        LeverCall,
        LeverOutcome,
        Recommendation,
    )

from workflows.campaign.context import Campaign
from workflows.catalogue import APPLY_LEVER, ROLLBACK_LEVER


async def apply_recommendation(campaign: Campaign, recommendation: Recommendation) -> None:
    await apply_change(campaign, register(campaign, recommendation), recommendation)


def register(campaign: Campaign, recommendation: Recommendation) -> ChangeRecord:
    """A change for the recommendation, in the saga before anything is applied: a crash mid-apply still gets
    it undone."""
    assert recommendation.lever is not None
    change = ChangeRecord(
        change_id=f"C{len(campaign.status.changes) + 1}",
        recommendation_id=recommendation.id,
        lever=recommendation.lever.name,
        kind=recommendation.lever.kind,
        role=recommendation.role,
        endpoint=recommendation.endpoint,
        endpoints=recommendation.endpoints,
    )
    campaign.status.changes.append(change)
    return change


async def apply_change(campaign: Campaign, change: ChangeRecord, recommendation: Recommendation) -> None:
    assert recommendation.lever is not None
    outcome: LeverOutcome = await campaign.activity(
        APPLY_LEVER,
        lever_call(campaign, change, recommendation),
        recommendation.role,
        f"Apply {recommendation.lever.kind} lever {recommendation.lever.name} ({recommendation.id})",
    )
    change.state = ChangeState.APPLIED
    change.applied_at = workflow.now()
    campaign.event(outcome.detail)


def lever_call(campaign: Campaign, change: ChangeRecord, recommendation: Recommendation | None = None) -> LeverCall:
    if recommendation is None:
        recommendation = next(r for r in campaign.status.recommendations if r.id == change.recommendation_id)
    assert recommendation.lever is not None
    return LeverCall(
        campaign_id=campaign.input.campaign_id,
        change_id=change.change_id,
        lever=recommendation.lever,
        target=campaign.input.target,
        parameter=change.parameter,
    )


async def undo(campaign: Campaign, change: ChangeRecord, reason: str) -> None:
    """Roll back one change, once: its state says whether that already happened."""
    if change.state in (ChangeState.ROLLED_BACK, ChangeState.FAILED):
        return
    try:
        outcome: LeverOutcome = await campaign.activity(
            ROLLBACK_LEVER,
            lever_call(campaign, change),
            change.role,
            f"Roll back {change.lever} ({change.change_id}): {reason}"[:200],
        )
    except ActivityError as failure:
        change.state = ChangeState.FAILED
        change.reason = f"rollback failed: {failure.cause}; reason for rollback: {reason}"
        campaign.event(f"could not undo {change.lever}: {failure.cause}")
        return
    change.state = ChangeState.ROLLED_BACK
    change.rolled_back_at = workflow.now()
    change.reason = reason
    campaign.event(f"rolled back {change.lever}: {reason} ({outcome.detail})")


async def unwind(campaign: Campaign, reason: str) -> None:
    """Undo every change still in effect, newest first (each at most once)."""
    for change in reversed(campaign.status.changes):
        if change.state in (ChangeState.PENDING, ChangeState.APPLIED, ChangeState.KEPT):
            await undo(campaign, change, reason)


async def put_changes(campaign: Campaign, changes: list[ChangeRecord], in_place: bool) -> None:
    """Undo (newest first) or re-apply (in order) changes for an arm of a measurement. Their saga state
    stays applied: a failure meanwhile unwinds them, and undoing an undone lever does nothing."""
    todo = [c for c in changes if (c.change_id in campaign.measured_without) == in_place]
    for change in todo if in_place else list(reversed(todo)):
        await campaign.activity(
            APPLY_LEVER if in_place else ROLLBACK_LEVER,
            lever_call(campaign, change).model_copy(update={"for_measurement": True}),
            change.role,
            f"{'Re-apply' if in_place else 'Undo'} {change.lever} ({change.change_id}) for a validation run",
        )
        if in_place:
            campaign.measured_without.discard(change.change_id)
        else:
            campaign.measured_without.add(change.change_id)
    if todo:
        campaign.event(f"{len(todo)} change(s) {'re-applied' if in_place else 'undone'} for the next measurement")
