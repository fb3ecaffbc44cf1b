"""The campaign's hold on its target: one campaign per target at a time, the others refused or queued."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.contracts import CampaignState
    from ratchet.target_lock import lock_workflow_id

from workflows.campaign.context import Campaign, Stop
from workflows.target_lock import retry_wait, try_lock


async def hold_target(campaign: Campaign) -> None:
    """Take the target's lock before anything is measured or changed. Held: refused, or (``queue``) waited
    for, retried until the campaign that holds it closes."""
    target = campaign.input.target
    attempt = 0
    while not await try_lock(target, campaign.input.campaign_id):
        where = f"{target.name} ({target.base})"
        if not campaign.input.queue:
            raise Stop(
                CampaignState.FAILED,
                f"refused: another campaign runs on {where}",
                f"its lock {lock_workflow_id(target)} is held; launch with --queue to wait for it. Nothing was "
                "measured or changed.",
            )
        if attempt == 0:
            campaign.event(f"queued: another campaign runs on {where}; this one starts when it ends")
        await workflow.sleep(retry_wait(attempt))
        attempt += 1
    if attempt:
        campaign.event(f"the target is free: starting after {attempt} tries")
