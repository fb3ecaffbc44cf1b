"""Gates: a campaign waits for a person's answer where the playbook asks, escalates, and times out."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Phase
    from ratchet.config.playbook import AlertKind, Gate, TimeoutAction
    from ratchet.contracts import (
        ApprovalInput,
        CampaignState,
        GateDecision,
        GateState,
        RejectionInput,
    )

from workflows.campaign.context import Campaign, Stop
from workflows.campaign.saga import unwind


async def gate_or_abort(campaign: Campaign, phase: Phase) -> None:
    decision = await ask_gate(campaign, phase)
    if decision is not None and decision.decision == "rejected":
        campaign.end(phase, "rejected", decision.note)
        await unwind(campaign, f"{phase.value} rejected: {decision.note}")
        raise Stop(CampaignState.REJECTED, f"{phase.value} rejected: changes rolled back", decision.note)


async def ask_gate(
    campaign: Campaign, phase: Phase, *, gate: Gate | None = None, question: str = ""
) -> GateDecision | None:
    """Wait for a person if the playbook gates this phase (or ``gate`` is given); None when it does not."""
    gate = gate or campaign.input.playbook.gates.get(phase)
    if gate is None:
        return None
    if campaign.input.auto_approve_as:
        decision = GateDecision(
            phase=phase,
            decision="auto-approved",
            by=campaign.input.auto_approve_as,
            at=workflow.now(),
            note="approved automatically (--auto-approve or a non-interactive run)",
        )
        campaign.status.gates.append(decision)
        campaign.event(f"{phase.value} gate auto-approved as {campaign.input.auto_approve_as}")
        return decision
    now = workflow.now()
    campaign.answer = None
    campaign.status.waiting = GateState(
        phase=phase,
        since=now,
        deadline=now + gate.timeout,
        approvers=list(campaign.input.playbook.approvers),
        question=question,
    )
    campaign.set_state(CampaignState.WAITING)
    asked = f": {question}" if question else ""
    campaign.event(
        f"waiting for approval of {phase.value} (until {campaign.status.waiting.deadline:%Y-%m-%d %H:%M}Z){asked}"
    )
    campaign.alert(
        AlertKind.GATE_WAITING,
        f"{campaign.input.campaign_id}: {phase.value} waits for approval",
        question or f"ratchet approve {campaign.input.campaign_id} --phase {phase.value} --as NAME",
        phase=phase.value,
        deadline=f"{campaign.status.waiting.deadline:%Y-%m-%d %H:%M}Z",
        approvers=", ".join(campaign.status.waiting.approvers),
    )
    answered = await wait_for_answer(campaign, gate.timeout)
    if not answered and gate.on_timeout == TimeoutAction.ESCALATE:
        waiting = campaign.status.waiting
        waiting.escalated = True
        waiting.approvers = sorted({*waiting.approvers, *gate.escalate_to})
        waiting.deadline = workflow.now() + gate.escalation_timeout
        campaign.event(f"{phase.value} gate escalated to {', '.join(gate.escalate_to) or 'the same approvers'}")
        campaign.refresh_details()
        answered = await wait_for_answer(campaign, gate.escalation_timeout)
    campaign.status.waiting = None
    campaign.set_state(CampaignState.RUNNING)
    if not answered:
        decision = GateDecision(phase=phase, decision="timed-out", by="", at=workflow.now(), note="no answer in time")
        campaign.status.gates.append(decision)
        campaign.end(phase, "timed out", "no approval in time")
        await unwind(campaign, f"{phase.value} gate timed out")
        raise Stop(CampaignState.ABORTED, f"{phase.value} gate timed out: aborted", "changes rolled back")
    assert campaign.answer is not None
    campaign.status.gates.append(campaign.answer)
    return campaign.answer


async def wait_for_answer(campaign: Campaign, timeout: timedelta) -> bool:
    try:
        await workflow.wait_condition(lambda: campaign.answer is not None, timeout=timeout)
    except TimeoutError:
        return False
    return True


def refuse(campaign: Campaign, phase: Phase | None, approver: str, only: list[str] | None = None) -> str | None:
    """Why an answer cannot be taken now, or None when it can."""
    waiting = campaign.status.waiting
    if waiting is None or campaign.answer is not None:
        return f"no phase is waiting for approval (current phase: {campaign.status.phase or 'none'})"
    if phase is not None and phase != waiting.phase:
        return f"phase {phase.value} is not waiting for approval; {waiting.phase.value} is"
    if approver not in waiting.approvers:
        return f"{approver!r} is not an approver of this campaign; approvers: {', '.join(waiting.approvers)}"
    if only is not None:
        if not only:
            # An empty list (an unset shell variable, say) would approve nothing, or all, by accident.
            return "--only names no recommendation; give their ids (e.g. R1,R3), or leave --only out to approve all"
        if waiting.phase != Phase.PLANNING:
            return "choosing recommendations (--only) applies to the planning gate only"
        known = {r.id for r in campaign.status.recommendations}
        unknown = sorted(set(only) - known)
        if unknown:
            return f"unknown recommendation id(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
    return None


def take_approval(campaign: Campaign, answer: ApprovalInput) -> str:
    campaign.answer = GateDecision(
        phase=answer.phase,
        decision="approved",
        by=answer.approver,
        at=workflow.now(),
        only=answer.only,
        note=answer.comment,
    )
    chosen = f" (only {', '.join(answer.only)})" if answer.only else ""
    campaign.event(f"{answer.phase.value} approved by {answer.approver}{chosen}")
    return f"{answer.phase.value} approved by {answer.approver}{chosen}"


def take_rejection(campaign: Campaign, answer: RejectionInput) -> str:
    assert campaign.status.waiting is not None
    phase = campaign.status.waiting.phase
    campaign.answer = GateDecision(
        phase=phase, decision="rejected", by=answer.approver, at=workflow.now(), note=answer.reason
    )
    campaign.event(f"{phase.value} rejected by {answer.approver}: {answer.reason}")
    return f"{phase.value} rejected by {answer.approver}"
