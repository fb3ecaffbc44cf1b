"""The campaign: one durable workflow, six phases, gates for people, a saga that undoes what did not pay off.

This module holds the workflow's face (run, updates, signals, query); each phase is a module of this package.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Phase
    from ratchet.contracts import (
        ApprovalInput,
        CampaignInput,
        CampaignState,
        CampaignStatus,
        ChangeState,
        RejectionInput,
    )

from workflows.campaign.assessment import assessment_phase
from workflows.campaign.context import Campaign, Stop
from workflows.campaign.deployment import deployment_phase
from workflows.campaign.gates import refuse, take_approval, take_rejection
from workflows.campaign.lock import hold_target
from workflows.campaign.optimization import frontend_phase, optimization_phase
from workflows.campaign.planning import is_approved, planning_phase
from workflows.campaign.safety import keep_behaviour
from workflows.campaign.saga import unwind
from workflows.campaign.signatures import auto_approval_refusal, signature_refusal
from workflows.campaign.validation import validation_phase


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    """Assessment, planning, optimization, frontend, validation, deployment; then report and history."""

    @workflow.init
    def __init__(self, request: CampaignInput) -> None:
        if not request.campaign_id:  # started by a schedule: one input for every run, each its own id
            request.campaign_id = workflow.info().workflow_id
        self._campaign = Campaign(request)

    @workflow.run
    async def run(self, request: CampaignInput) -> CampaignStatus:
        self._campaign.event(f"campaign started on {request.target.name} with playbook {request.playbook.name}")
        await self._campaign.record()
        try:
            refused = auto_approval_refusal(self._campaign)
            if refused:
                raise Stop(CampaignState.FAILED, "refused: the auto-approval is not validly signed", refused)
            if workflow.patched("target-lock"):
                await hold_target(self._campaign)
            await self._phases()
        except Stop as stop:
            await self._campaign.finish(stop.state, stop.outcome, stop.detail)
        except asyncio.CancelledError:
            # Cancelled by a person: undo everything, write the report, then let the cancellation through.
            await asyncio.shield(asyncio.ensure_future(self._cancelled()))
            raise
        except ActivityError as failure:
            cause = failure.cause.message if isinstance(failure.cause, ApplicationError) else str(failure.cause)
            await unwind(self._campaign, f"campaign failed: {cause}")
            await self._campaign.finish(CampaignState.FAILED, "failed", f"{failure.activity_type} failed: {cause}")
            raise ApplicationError(f"campaign failed: {cause}", non_retryable=True) from failure
        return self._campaign.status

    async def _cancelled(self) -> None:
        self._campaign.event("cancellation requested: undoing applied changes")
        await unwind(self._campaign, "campaign cancelled")
        await self._campaign.finish(
            CampaignState.CANCELLED, "cancelled", "cancelled by request; every applied change undone"
        )

    async def _phases(self) -> None:
        baseline, assessment = await assessment_phase(self._campaign)
        recommendations = await planning_phase(self._campaign, assessment)
        approved = [r for r in recommendations if is_approved(self._campaign, r)]
        await optimization_phase(self._campaign, approved)
        await frontend_phase(self._campaign, approved)
        if self._campaign.behaviour_recorded:
            await keep_behaviour(self._campaign)
            if not any(c.state == ChangeState.APPLIED for c in self._campaign.status.changes):
                self._campaign.skip(Phase.VALIDATION, "every change altered what the service answers and was undone")
                self._campaign.skip(Phase.DEPLOYMENT, "nothing left to deploy")
                detail = "; ".join(c.reason for c in self._campaign.status.changes if c.reason)
                raise Stop(CampaignState.ROLLED_BACK, "changes altered the answers: rolled back", detail)
        validation = await validation_phase(self._campaign, baseline)
        await deployment_phase(self._campaign, validation)

    @workflow.update(name="approve")
    async def approve(self, answer: ApprovalInput) -> str:
        """Approve the waiting phase (optionally only some recommendations)."""
        self._take_signature(answer.signature)
        return take_approval(self._campaign, answer)

    @approve.validator
    def _validate_approve(self, answer: ApprovalInput) -> None:
        refusal = self._approval_refusal(answer)
        if refusal:
            workflow.logger.warning("approval by %s refused: %s", answer.approver, refusal)
            raise ValueError(refusal)

    @workflow.update(name="reject")
    async def reject(self, answer: RejectionInput) -> str:
        """Reject the waiting phase with a reason."""
        self._take_signature(answer.signature)
        return take_rejection(self._campaign, answer)

    @reject.validator
    def _validate_reject(self, answer: RejectionInput) -> None:
        refusal = self._rejection_refusal(answer)
        if refusal:
            workflow.logger.warning("rejection by %s refused: %s", answer.approver, refusal)
            raise ValueError(refusal)

    @workflow.signal(name="approve_signal")
    def approve_signal(self, answer: ApprovalInput) -> None:
        """Fire-and-forget approval; refused answers are logged in the campaign's events."""
        refusal = self._approval_refusal(answer)
        if refusal:
            self._campaign.event(f"ignored approval signal from {answer.approver}: {refusal}")
        else:
            self._take_signature(answer.signature)
            take_approval(self._campaign, answer)

    @workflow.signal(name="reject_signal")
    def reject_signal(self, answer: RejectionInput) -> None:
        """Fire-and-forget rejection; refused answers are logged in the campaign's events."""
        refusal = self._rejection_refusal(answer)
        if refusal:
            self._campaign.event(f"ignored rejection signal from {answer.approver}: {refusal}")
        else:
            self._take_signature(answer.signature)
            take_rejection(self._campaign, answer)

    def _approval_refusal(self, answer: ApprovalInput) -> str | None:
        return signature_refusal(
            self._campaign,
            action="approve",
            phase=answer.phase,
            approver=answer.approver,
            only=answer.only,
            signed_at=answer.signed_at,
            signature=answer.signature,
        ) or refuse(self._campaign, answer.phase, answer.approver, answer.only)

    def _rejection_refusal(self, answer: RejectionInput) -> str | None:
        return signature_refusal(
            self._campaign,
            action="reject",
            phase=answer.phase,
            approver=answer.approver,
            only=None,
            signed_at=answer.signed_at,
            signature=answer.signature,
        ) or refuse(self._campaign, answer.phase, answer.approver)

    def _take_signature(self, signature: str | None) -> None:
        if signature:
            self._campaign.signatures_taken.add(signature)

    @workflow.query(name="status")
    def status(self) -> CampaignStatus:
        """The campaign's full status."""
        return self._campaign.status
