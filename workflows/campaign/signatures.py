"""Signed answers: with ``approvals: signed`` a gate takes only an answer signed by the approver it names."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.approvals import answer_refusal
    from ratchet.config.common import Phase

from workflows.campaign.context import Campaign


def signature_refusal(
    campaign: Campaign,
    *,
    action: str,
    phase: Phase | None,
    approver: str,
    only: list[str] | None,
    signed_at: datetime | None,
    signature: str | None,
) -> str | None:
    """Why a signed answer cannot be taken by this campaign, or None (``ratchet.approvals.answer_refusal``; its
    age is measured on the workflow's clock, so a replay decides the same)."""
    return answer_refusal(
        campaign.input.playbook.approvals,
        campaign.signatures_taken,
        workflow.now(),
        campaign_id=campaign.input.campaign_id,
        action=action,
        phase=phase.value if phase is not None else "",
        approver=approver,
        only=only,
        signed_at=signed_at,
        signature=signature,
    )


def auto_approval_refusal(campaign: Campaign) -> str | None:
    """An auto-approver (``--auto-approve --as NAME``) must have signed this campaign's auto-approval."""
    request = campaign.input
    if request.auto_approve_as is None:
        return None
    return signature_refusal(
        campaign,
        action="auto-approve",
        phase=None,
        approver=request.auto_approve_as,
        only=None,
        signed_at=request.auto_approve_signed_at,
        signature=request.auto_approve_signature,
    )
