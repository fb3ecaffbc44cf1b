"""Functional safety: a change that alters what the target answers is found and undone."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Role
    from ratchet.contracts import (
        BehaviourCheck,
        BehaviourRequest,
        ChangeRecord,
        ChangeState,
    )

from workflows.campaign.context import Campaign
from workflows.campaign.saga import apply_change, undo
from workflows.catalogue import CHECK_BEHAVIOUR


async def behaves(campaign: Campaign) -> BehaviourCheck:
    return await campaign.activity(
        CHECK_BEHAVIOUR,
        BehaviourRequest(campaign_id=campaign.input.campaign_id, target=campaign.input.target),
        Role.TEST_ENGINEER,
        "Replay the recorded requests and scenarios",
    )


async def keep_behaviour(campaign: Campaign) -> None:
    """A change that alters what the target answers is rolled back, however much faster it is. With the
    applied changes in place, replay; on a difference, undo them newest first until the answers are the
    recorded ones again: the last one undone is the culprit, the ones undone before it are applied again."""
    check = await behaves(campaign)
    if check.same:
        campaign.event("behaviour unchanged by the applied changes")
        return
    innocent: list[ChangeRecord] = []
    for change in reversed([c for c in campaign.status.changes if c.state == ChangeState.APPLIED]):
        await undo(campaign, change, "undone while looking for the change that altered the answers")
        after = await behaves(campaign)
        if not after.same:
            innocent.append(change)
            continue
        change.reason = "changed what the service answers: " + "; ".join(check.differences)[:1500]
        campaign.event(f"{change.lever} changed the answers and stays undone: {check.differences[0][:300]}")
        break
    else:
        campaign.event("the answers differ even with every change undone: the target changed by itself")
    for change in reversed(innocent):
        recommendation = next(r for r in campaign.status.recommendations if r.id == change.recommendation_id)
        change.reason, change.rolled_back_at = "", None
        await apply_change(campaign, change, recommendation)
