"""Signed answers: with ``approvals: signed`` a gate takes only an answer signed by the approver it names."""

from __future__ import annotations

from datetime import UTC, datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.approvals import signed_message, verify
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
    """Why a signed answer cannot be taken (unsigned, replayed, forged, stale), or None. Pure: the same on
    replay (the signature's check is computation, its age is measured against the workflow's clock)."""
    rules = campaign.input.playbook.approvals
    if rules.mode != "signed":
        return None
    if not signature or signed_at is None:
        return (
            "unsigned: this campaign's playbook requires signed approvals; `ratchet approve`/`reject` sign with the "
            "approver's key (`ratchet keys create NAME`), or pass signed_at and signature in the input"
        )
    if signature in campaign.signatures_taken:
        return "replayed: this signed answer was already taken"
    key = rules.keys.get(approver)
    if key is None:
        return f"no public key for {approver!r} in the playbook's approvals.keys"
    message = signed_message(
        campaign_id=campaign.input.campaign_id,
        action=action,
        phase=phase.value if phase is not None else "",
        approver=approver,
        only=only,
        signed_at=signed_at,
    )
    if not verify(key, message, signature):
        return (
            f"forged: the signature is not {approver}'s over this answer (campaign {campaign.input.campaign_id}, "
            f"{action}, phase {phase.value if phase else 'any'}, its recommendations and time)"
        )
    moment = signed_at if signed_at.tzinfo is not None else signed_at.replace(tzinfo=UTC)
    if abs(workflow.now() - moment) > rules.max_age:
        return f"stale: signed at {moment:%Y-%m-%d %H:%M:%S %Z}, more than {rules.max_age} from now"
    return None


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
