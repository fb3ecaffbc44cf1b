"""Validation: the changes against their absence, interleaved; what did not prove itself is undone."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.decisions import (
        changes_without_effect,
        undecided_endpoints,
        validation_outcome,
        validation_summary,
    )
    from ratchet.analysis.slo import projected_checks, share_met
    from ratchet.config.common import Phase, Role
    from ratchet.config.playbook import AlertKind, Attribution, Gate
    from ratchet.contracts import (
        CampaignState,
        ChangeRecord,
        ChangeState,
        CompareResult,
        EndpointVerdict,
        LoadTestResult,
        PageLoadRequest,
        PageLoadResult,
        ValidationLoad,
        ValidationLoadRequest,
        ValidationOutcome,
        Verdict,
    )

from workflows.campaign.arms import compare_runs, measure_arms
from workflows.campaign.attribution import leave_one_out, payload_attribution, payload_of
from workflows.campaign.context import Campaign, Stop
from workflows.campaign.gates import ask_gate, gate_or_abort
from workflows.campaign.reshapes import rerun_shapes
from workflows.campaign.saga import undo, unwind
from workflows.catalogue import MEASURE_PAGE_LOADS, SIZE_VALIDATION_LOAD


async def validation_phase(campaign: Campaign, baseline: LoadTestResult) -> LoadTestResult:
    campaign.begin(Phase.VALIDATION)
    await gate_or_abort(campaign, Phase.VALIDATION)
    applied = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    interleave = campaign.input.playbook.validation.interleave
    if interleave and workflow.patched("focused-validation"):
        await size_validation_load(campaign, baseline, applied)
    if interleave and workflow.patched("interleaved-validation"):
        comparison, candidate = await interleaved_validation(campaign, applied)
    else:  # older campaigns replay with the assessment's baseline against one validation run
        candidate = await campaign.load_test(
            "validation", Role.TEST_ENGINEER, "Validation load test (same load as baseline)"
        )
        comparison = await compare_runs(
            campaign, baseline, candidate, "Compare before/after per endpoint (Mann-Whitney on raw samples)"
        )
    campaign.status.validation = candidate
    campaign.status.validation_rules = campaign.input.playbook.validation
    campaign.status.workflow_costs = campaign.input.playbook.workflows
    campaign.status.verdicts = comparison.verdicts
    campaign.status.slo_after = comparison.slo
    campaign.status.service_verdicts = comparison.service
    if campaign.status.page_loads and workflow.patched("page-load-after"):
        comparison = await page_loads_after(campaign, comparison)
    campaign.status.cost, campaign.status.cost_rules = comparison.cost, campaign.input.playbook.costs
    if workflow.patched("payload-attribution"):
        await payload_attribution(campaign, applied)
    payload_gain = any(b.verdict == Verdict.IMPROVED for c in applied for b in c.bytes_attribution)
    projected = (
        projected_checks(campaign.status.slo_before, comparison.verdicts)
        if workflow.patched("projected-acceptance-bar")
        else None
    )
    outcome = validation_outcome(
        comparison.verdicts, comparison.slo, campaign.input.playbook, payload_gain=payload_gain, projected=projected
    )
    verdicts = {v.endpoint: v for v in comparison.verdicts}
    if outcome in (ValidationOutcome.MET, ValidationOutcome.PARTIAL):  # a failed one fails whatever they say
        await settle_inconclusive(campaign, comparison.verdicts)
    if outcome in (ValidationOutcome.FAILED, ValidationOutcome.REGRESSED):
        summary = validation_summary(comparison.verdicts, comparison.slo)
        regressed = outcome == ValidationOutcome.REGRESSED
        campaign.alert(
            AlertKind.REGRESSION if regressed else AlertKind.VALIDATION_FAILED,
            f"{campaign.input.campaign_id}: validation {outcome.value}, changes rolled back",
            summary[:2500],
            changes=", ".join(c.lever for c in campaign.status.changes if c.state == ChangeState.APPLIED),
        )
        campaign.end(Phase.VALIDATION, outcome.value, summary)
        await unwind(campaign, f"validation {outcome.value}: {summary}")
        campaign.skip(Phase.DEPLOYMENT, "validation did not pass")
        raise Stop(CampaignState.ROLLED_BACK, f"validation {outcome.value}: changes rolled back", summary)
    # A change whose endpoint did not improve did not prove itself, whatever the whole did.
    for change in reversed(changes_without_effect(applied, comparison.verdicts)):
        endpoints = change.endpoints or [change.endpoint]
        in_bytes = {b.endpoint: f"{b.endpoint}: {b.explanation}" for b in change.bytes_attribution}
        why = "; ".join(
            in_bytes.get(e) or (verdicts[e].explanation if e in verdicts else f"{e} was not measured")
            for e in endpoints
        )
        await undo(campaign, change, f"did not improve {', '.join(endpoints)}: {why}")
    if (
        campaign.input.playbook.validation.attribution in (Attribution.LEAVE_ONE_OUT, Attribution.AUTO)
        and campaign.input.playbook.validation.interleave
        and workflow.patched("leave-one-out")
    ):
        await leave_one_out(campaign, comparison.verdicts)
    kept = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    if not kept:
        campaign.end(Phase.VALIDATION, "no change proved itself", "every change was rolled back")
        campaign.alert(
            AlertKind.VALIDATION_FAILED,
            f"{campaign.input.campaign_id}: no change proved itself, rolled back",
            "; ".join(f"{c.lever}: {c.reason}" for c in campaign.status.changes if c.reason)[:2500],
        )
        campaign.skip(Phase.DEPLOYMENT, "nothing left to deploy")
        raise Stop(CampaignState.ROLLED_BACK, "no change proved itself: rolled back")
    # Campaigns validated before the shapes could be run again replay without asking for them.
    if campaign.input.playbook.validation.rerun_shapes and workflow.patched("rerun-shapes"):
        await rerun_shapes(campaign)
    note = f"{outcome.value}: " + "; ".join(f"{v.endpoint} {v.verdict.value}" for v in comparison.verdicts)
    note += "".join(f"; {r.label} {r.verdict}" for r in campaign.status.shape_reruns)
    note += "".join(f"; {v.subject} {v.metric} {v.verdict.value}" for v in campaign.status.service_verdicts)
    if outcome == ValidationOutcome.PARTIAL:
        bar = campaign.input.playbook.validation.acceptance_bar
        note += f" (at or above the acceptance bar {bar:.0%}: accepted)"
        if projected is not None and share_met(comparison.slo) < bar:
            note += (
                f"; the validation's runs met {share_met(comparison.slo):.0%} of the targets, slowed in both arms "
                f"alike; at the baseline's conditions with the proven gains, {share_met(projected):.0%}"
            )
    campaign.end(Phase.VALIDATION, outcome.value, note)
    campaign.validation_outcome = outcome
    return candidate


async def page_loads_after(campaign: Campaign, comparison: CompareResult) -> CompareResult:
    """The pages on the playbook's devices again, with every change in place: their verdicts join the service
    targets', their checks the SLO checks after the changes (and so the acceptance bar)."""
    before = campaign.status.page_loads
    measured: PageLoadResult = await campaign.activity(
        MEASURE_PAGE_LOADS,
        PageLoadRequest(
            campaign_id=campaign.input.campaign_id,
            target=campaign.input.target,
            playbook=campaign.input.playbook,
            pages=list(dict.fromkeys(p.endpoint for p in before)),
            before=before,
        ),
        Role.TEST_ENGINEER,
        "Page load on each device profile with the changes",
    )
    for note in measured.notes:
        campaign.event(f"page load: {note}")
    campaign.status.page_loads_after = measured.pages
    campaign.status.service_verdicts = campaign.status.service_verdicts + measured.verdicts
    campaign.status.slo_after = comparison.slo + measured.checks
    return comparison.model_copy(update={"slo": campaign.status.slo_after})


async def size_validation_load(campaign: Campaign, baseline: LoadTestResult, applied: list[ChangeRecord]) -> None:
    """The endpoints the changes address in latency get a rate of their own in the validation's runs, enough
    requests per run to decide (the rest of the mix stays as background); payload endpoints are judged on
    their bytes and need no requests for it."""
    measured = {e.name for e in campaign.input.target.endpoints}
    endpoints = sorted(
        {e for c in applied for e in c.endpoints or [c.endpoint] if e in measured and e not in payload_of(campaign, c)}
    )
    if not endpoints:
        return
    request = ValidationLoadRequest(
        campaign_id=campaign.input.campaign_id,
        baseline_run_id=baseline.run_id,
        endpoints=endpoints,
        target=campaign.input.target,
        playbook=campaign.input.playbook,
    )
    load: ValidationLoad = await campaign.activity(
        SIZE_VALIDATION_LOAD,
        request,
        Role.PERF_OPTIMIZER,
        f"Size the validation load: requests per run for {', '.join(endpoints)}",
    )
    campaign.status.validation_load = load
    campaign.focus = load.focus
    campaign.event(load.note)


async def interleaved_validation(
    campaign: Campaign, applied: list[ChangeRecord]
) -> tuple[CompareResult, LoadTestResult]:
    """Both arms measured now, the changes undone for the before arm and re-applied for the after arm
    (``_arms``), while any verdict is still undecided. Ends with every change in place."""

    def run(in_place: bool, number: int) -> tuple[str, str]:
        arm = "after" if in_place else "before"
        state = "in place" if in_place else "undone"
        return f"validation-{arm}-{number}", f"Validation run {number}, {arm} arm (changes {state})"

    # Campaigns started before replay with extra rounds for any undecided endpoint, decidable or not, and on
    # the endpoints judged on their wire bytes: there latency on a fast test link says little (the server's
    # compression shows, the saved transfer does not), so more rounds would only spend the budget.
    decidable_only = workflow.patched("decidable-rounds")
    bytes_only = {e for c in applied for e in payload_of(campaign, c)} - set(campaign.focus)

    def undecided(verdicts: list[EndpointVerdict]) -> list[str]:
        rules = campaign.input.playbook.validation
        pending = undecided_endpoints(verdicts, applied, rules, decidable_only=decidable_only)
        return [e for e in pending if not (decidable_only and e in bytes_only)]

    comparison, arms = await measure_arms(
        campaign,
        applied,
        run,
        "validation",
        lambda rounds: f"Compare the arms after {rounds} runs each (hierarchical bootstrap, Mann-Whitney, Holm)",
        undecided,
        record=True,
    )
    return comparison, arms[True][-1]


async def settle_inconclusive(campaign: Campaign, verdicts: list[EndpointVerdict]) -> None:
    """Verdicts still inconclusive after the run budget: the playbook accepts them, rolls back, or asks a
    person at the validation gate (approve: accept them as not worse; reject: roll every change back)."""
    unsure = [v for v in verdicts if v.verdict == Verdict.INCONCLUSIVE]
    if not unsure:
        return
    rules = campaign.input.playbook.validation
    runs = max(v.runs_after for v in unsure)
    listed = "; ".join(f"{v.endpoint}: {v.explanation}" for v in unsure)
    question = (
        f"{len(unsure)} endpoint(s) inconclusive after {runs} runs per arm ({', '.join(v.endpoint for v in unsure)})"
        ": approve to accept them as not worse, reject to roll every change back"
    )
    if rules.on_inconclusive == "accept":
        campaign.event(f"validation: accepted as not worse by the playbook: {listed}")
        return
    why = "the playbook rolls inconclusive validations back"
    if rules.on_inconclusive == "ask":
        gate = campaign.input.playbook.gates.get(Phase.VALIDATION) or Gate()
        decision = await ask_gate(campaign, Phase.VALIDATION, gate=gate, question=question)
        if decision is not None and decision.decision != "rejected":
            campaign.event(f"validation: inconclusive endpoints accepted by {decision.by}: {listed}")
            return
        why = f"rejected by {decision.by}: {decision.note}" if decision is not None else "no answer"
    campaign.end(Phase.VALIDATION, "inconclusive", listed)
    campaign.alert(
        AlertKind.VALIDATION_FAILED,
        f"{campaign.input.campaign_id}: validation inconclusive, changes rolled back",
        f"{why}: {listed}"[:2500],
    )
    await unwind(campaign, f"validation inconclusive, not accepted ({why})")
    campaign.skip(Phase.DEPLOYMENT, "validation did not pass")
    raise Stop(CampaignState.ROLLED_BACK, "validation inconclusive: changes rolled back", listed)
