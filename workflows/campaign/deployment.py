"""Deployment: the gate, the bake against a reference of exactly the kept changes, or a staged rollout."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Phase, Role
    from ratchet.config.playbook import AlertKind
    from ratchet.contracts import (
        CampaignState,
        ChangeState,
        GuardRequest,
        GuardResult,
        LoadTestResult,
        RolloutChange,
        RolloutInput,
        RolloutResult,
        ValidationOutcome,
        WatchInput,
    )
    from ratchet.temporal.client import CAMPAIGN_QUEUE_SUFFIX
    from workflows.rollout import rollout_id

from workflows.campaign.context import Campaign, Stop
from workflows.campaign.gates import ask_gate
from workflows.campaign.saga import put_changes, unwind
from workflows.catalogue import CHECK_GUARD
from workflows.watch import watch_id


async def deployment_phase(campaign: Campaign, validated: LoadTestResult) -> None:
    campaign.begin(Phase.DEPLOYMENT)
    decision = await ask_gate(campaign, Phase.DEPLOYMENT)
    if decision is not None and decision.decision == "rejected":
        campaign.end(Phase.DEPLOYMENT, "rejected", decision.note)
        await unwind(campaign, f"deployment rejected: {decision.note}")
        raise Stop(CampaignState.ROLLED_BACK, "deployment rejected: changes rolled back", decision.note)
    if campaign.input.target.production is not None and workflow.patched("rollout"):
        await roll_out(campaign, validated)  # ends the campaign
    if workflow.patched("kept-reference"):
        validated = await guard_reference(campaign)
    guard = await bake_window(campaign, validated, "bake")
    if guard.breached and workflow.patched("guard-confirms"):
        # The reference and the bake measure the same changes minutes apart: a breach is either a regression
        # that lasts (a leak, a cache that stops serving) or a disturbance of the host for a few seconds. A
        # second window against the same reference tells them apart: a lasting one breaches it too.
        first = "; ".join(guard.reasons)
        campaign.event(f"guard: breached in the first bake window ({first}); measuring a second window to confirm")
        second = await bake_run(campaign, "bake-2")
        confirmed = await guarded(campaign, validated, second)
        if confirmed.breached and workflow.patched("guard-control-window"):
            confirmed = await against_control(campaign, confirmed, second)
        if confirmed.breached:
            guard = GuardResult(breached=True, reasons=[*confirmed.reasons, f"(first window: {first})"])
        elif confirmed.reasons:  # a lasting breach that the control window showed to be the host's
            guard = confirmed
        else:
            campaign.event(f"guard: held in the second window; the first window's breach did not last ({first})")
            guard = confirmed
    campaign.status.guard = guard
    if guard.breached:
        reasons = "; ".join(guard.reasons)
        campaign.alert(
            AlertKind.GUARD_BREACHED,
            f"{campaign.input.campaign_id}: guard breached while baking, rolled back",
            reasons[:2500],
        )
        campaign.end(Phase.DEPLOYMENT, "guard breached", reasons)
        await unwind(campaign, f"guard breached: {reasons}")
        raise Stop(CampaignState.ROLLED_BACK, "guard breached during bake: changes rolled back", reasons)
    for change in campaign.status.changes:
        if change.state == ChangeState.APPLIED:
            change.state = ChangeState.KEPT
    kept = [c.lever for c in campaign.status.changes if c.state == ChangeState.KEPT]
    bake = campaign.input.playbook.deployment.bake.total_seconds()
    campaign.end(Phase.DEPLOYMENT, "baked", f"guard held for {bake:g}s; kept: {', '.join(kept)}")
    label = "targets met" if campaign.validation_outcome == ValidationOutcome.MET else "partial: accepted and monitored"
    label = await watch_if_partial(campaign) or label
    raise Stop(CampaignState.COMPLETED, f"{label}; {len(kept)} change(s) kept", "guard held during the bake")


async def watch_if_partial(campaign: Campaign) -> str:
    """A partial result, accepted, is put under the standing watch (the playbook's ``watch:``), started as a child
    that outlives the campaign; the label that says so, or "" where nothing changes (a result that met every
    target; campaigns started before the watch existed)."""
    if campaign.validation_outcome != ValidationOutcome.PARTIAL or not workflow.patched("watch-after-partial"):
        return ""
    if not campaign.input.playbook.watch.after_partial:
        return "partial: accepted"
    target, prefix = campaign.input.target, campaign.input.task_queue_prefix
    watching = watch_id(target.name)
    try:
        await workflow.start_child_workflow(
            "WatchWorkflow",
            WatchInput(watch_id=watching, playbook=campaign.input.playbook, target=target, task_queue_prefix=prefix),
            id=watching,
            task_queue=f"{prefix}-{CAMPAIGN_QUEUE_SUFFIX}",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"Watch of {target.name}, started by {campaign.input.campaign_id} (partial result)",
        )
        campaign.event(f"partial result put under the watch {watching} (`ratchet watch status {target.name}`)")
    except WorkflowAlreadyStartedError:
        campaign.event(f"partial result: {watching} already watches the target")
    campaign.status.watch_id = watching
    return "partial: accepted and monitored"


async def bake_window(campaign: Campaign, validated: LoadTestResult, label: str) -> GuardResult:
    """One bake window: the kept changes watched under the production mix, judged against ``validated``."""
    return await guarded(campaign, validated, await bake_run(campaign, label))


async def bake_run(campaign: Campaign, label: str, what: str = "the kept changes") -> LoadTestResult:
    bake = campaign.input.playbook.deployment.bake.total_seconds()
    return await campaign.load_test(
        # The same warm-up as the other runs: cold connections would read as a regression.
        label,
        Role.DEVOPS_ENGINEER,
        f"Bake: watch {what} for {bake:g}s",
        duration_s=bake,
        roots_only=True,  # the guard reads the load test's own samples
    )


async def guarded(
    campaign: Campaign, reference: LoadTestResult, watched: LoadTestResult, against: str = "the validated values"
) -> GuardResult:
    guard: GuardResult = await campaign.activity(
        CHECK_GUARD,
        GuardRequest(
            campaign_id=campaign.input.campaign_id, validated=reference, watch=watched, playbook=campaign.input.playbook
        ),
        Role.DEVOPS_ENGINEER,
        f"Guard: error rate and p95 against {against}",
    )
    return guard


async def against_control(campaign: Campaign, confirmed: GuardResult, second: LoadTestResult) -> GuardResult:
    """A breach that lasts two windows is the changes' or the host's (slower than at the reference, minutes
    ago: a neighbour's load, a noisy disk). A window with the changes undone, right after, tells them apart:
    the second window is judged against it. Worse than without the changes: theirs, and they roll back (the
    breach is returned). Not worse: the host's; the changes are put back and kept, and the reasons say so."""
    kept = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    breach = "; ".join(confirmed.reasons)
    campaign.event(f"guard: breached in the second window too ({breach}); measuring a window without the changes")
    await put_changes(campaign, kept, False)
    control = await bake_run(campaign, "bake-control", "the target without the changes")
    await put_changes(campaign, kept, True)
    verdict = await guarded(campaign, control, second, "the window without the changes")
    if verdict.breached:
        return GuardResult(breached=True, reasons=[*verdict.reasons, "(worse than the target without the changes)"])
    said = (
        f"the target without the changes breached as much ({breach}): the host is slower than at the "
        "reference, not the changes; kept"
    )
    campaign.event(f"guard: {said}")
    return GuardResult(breached=False, reasons=[said])


async def guard_reference(campaign: Campaign) -> LoadTestResult:
    """The bake's reference: exactly the kept changes (validation may have undone some after its last run,
    and its runs were focused on the endpoints under test), under the same mix of load as the bake."""
    rules = campaign.input.playbook.validation
    duration = (rules.run_duration or campaign.input.playbook.load.duration).total_seconds()
    reference = await campaign.load_test(
        "guard-reference",
        Role.DEVOPS_ENGINEER,
        "Guard reference: the kept changes, the production mix of load",
        duration_s=duration,
        roots_only=True,
    )
    campaign.status.guard_reference = reference
    return reference


async def roll_out(campaign: Campaign, validated: LoadTestResult) -> None:
    """The kept changes go to production in the playbook's steps (a child workflow, promote/abort by update);
    a breach rolls production back, and the changes here too."""
    kept = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    changes = []
    for change in kept:
        lever = next(r.lever for r in campaign.status.recommendations if r.id == change.recommendation_id)
        assert lever is not None
        changes.append(
            RolloutChange(change_id=change.change_id, lever=lever, role=change.role, parameter=change.parameter)
        )
    steps = ", ".join(f"{s:g}%" for s in campaign.input.playbook.deployment.rollout.steps)
    campaign.event(
        f"rolling {len(changes)} change(s) out to production in steps of {steps} ({rollout_id(campaign.input.campaign_id)})"
    )
    result: RolloutResult = await workflow.execute_child_workflow(
        "RolloutWorkflow",
        RolloutInput(
            campaign_id=campaign.input.campaign_id,
            changes=changes,
            production=campaign.input.target.in_production(),
            playbook=campaign.input.playbook,
            validated=validated,
            task_queue_prefix=campaign.input.task_queue_prefix,
        ),
        id=rollout_id(campaign.input.campaign_id),
        result_type=RolloutResult,
        static_summary=f"Rollout of {campaign.input.campaign_id} to production ({steps})",
    )
    campaign.status.rollout = result
    guards = [step.guard for step in result.steps if step.guard is not None]
    if guards:
        campaign.status.guard = guards[-1]
    if result.outcome != "completed":
        campaign.end(Phase.DEPLOYMENT, f"rollout {result.outcome}", result.reason)
        if result.outcome == "rolled-back":
            campaign.alert(
                AlertKind.GUARD_BREACHED, f"{campaign.input.campaign_id}: rollout rolled back", result.reason[:2500]
            )
        await unwind(campaign, f"rollout {result.outcome}: {result.reason}")
        raise Stop(CampaignState.ROLLED_BACK, f"rollout {result.outcome}: changes rolled back", result.reason)
    for change in kept:
        change.state = ChangeState.KEPT
    names = ", ".join(c.lever for c in kept)
    campaign.end(Phase.DEPLOYMENT, "rolled out", f"in production at {steps}, the guard held; kept: {names}")
    watched = await watch_if_partial(campaign)
    raise Stop(
        CampaignState.COMPLETED,
        f"rolled out to production; {len(kept)} change(s) kept" + (f"; {watched}" if watched else ""),
        "the guard held at every step",
    )
