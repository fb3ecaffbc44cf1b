"""Assessment: baseline and other load shapes, probe, recorded behaviour, then the bottlenecks."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.decisions import (
        AfterAssessment,
        after_assessment,
    )
    from ratchet.analysis.knee import knee_summary
    from ratchet.analysis.load_shapes import extra_shapes
    from ratchet.config.common import Phase, Role
    from ratchet.contracts import (
        AssessRequest,
        AssessResult,
        BehaviourRequest,
        BehaviourSummary,
        CampaignState,
        LoadTestResult,
        ProbeRequest,
    )

from workflows.campaign.capacity import resolve_load_rate
from workflows.campaign.context import Campaign, Stop
from workflows.catalogue import FIND_BOTTLENECKS, PROBE_ENDPOINTS, RECORD_BEHAVIOUR


async def assessment_phase(campaign: Campaign) -> tuple[LoadTestResult, AssessResult]:
    campaign.begin(Phase.ASSESSMENT)
    # Older histories never hold `auto` (it did not exist): their commands are unchanged without a patch.
    await resolve_load_rate(campaign)
    baseline = await campaign.load_test("baseline", Role.PERF_OPTIMIZER, "Baseline load test (k6)")
    campaign.status.baseline = baseline
    for note in baseline.notes:  # what the baseline could not measure (no spans, no resources): said at once
        campaign.event(f"baseline: {note}")
    for shape in extra_shapes(campaign.input.playbook):
        result = await campaign.load_test(
            shape.label, Role.PERF_OPTIMIZER, f"{shape.label.capitalize()} load test (k6)", shape=shape
        )
        campaign.status.load_shapes.append(result)
        if result.stress is not None:
            campaign.event(f"stress: {knee_summary(result.stress)}")
    probe = None
    if workflow.patched("probe-endpoints"):  # campaigns started before the probe existed replay without it
        probe = await campaign.activity(
            PROBE_ENDPOINTS,
            ProbeRequest(
                campaign_id=campaign.input.campaign_id, target=campaign.input.target, playbook=campaign.input.playbook
            ),
            Role.PERF_OPTIMIZER,
            "Probe answers: sizes, encodings, repeats, page assets, a traced burst",
        )
        for note in probe.notes:
            campaign.event(f"probe: {note}")
        campaign.status.pages = probe.pages
        campaign.status.page_loads = probe.page_loads
    if workflow.patched("behaviour-checks"):  # older campaigns replay without the functional checks
        recorded: BehaviourSummary = await campaign.activity(
            RECORD_BEHAVIOUR,
            BehaviourRequest(campaign_id=campaign.input.campaign_id, target=campaign.input.target),
            Role.TEST_ENGINEER,
            "Record what the target answers before any change",
        )
        campaign.behaviour_recorded = True
        campaign.event(f"behaviour recorded: {recorded.answers} answers, {recorded.scenarios} scenario(s)")
        for note in recorded.notes:
            campaign.event(f"behaviour: {note}")
    assessment: AssessResult = await campaign.activity(
        FIND_BOTTLENECKS,
        AssessRequest(
            campaign_id=campaign.input.campaign_id,
            baseline=baseline,
            target=campaign.input.target,
            playbook=campaign.input.playbook,
            probe=probe,
            load_shapes=campaign.status.load_shapes,
        ),
        Role.PERF_OPTIMIZER,
        "Find bottlenecks: critical paths of the traces, plans, answers",
    )
    campaign.status.findings = assessment.findings
    campaign.status.database = assessment.database
    campaign.status.anomalies = assessment.anomalies
    # What the assessment could not see is said where a person reads, not only in the activity's result.
    campaign.status.assessment_notes = assessment.notes
    # What the detectors could not see comes first: silence from a blind detector must not read as "all clear".
    campaign.status.blind_spots = assessment.blind_spots
    for gap in assessment.blind_spots:
        campaign.event(f"blind spot: {gap.sentence()}")
    for note in assessment.notes:
        campaign.event(f"assessment: {note}")
    for anomaly in assessment.anomalous_baselines:
        # Said before anything is planned on it: a person at the planning gate sees it in the events.
        campaign.event(f"baseline unlike its history: {anomaly.sentence}")
    campaign.status.slo_before = assessment.slo
    decision = after_assessment(assessment, low_findings_met=workflow.patched("low-findings-met"))
    met = sum(c.met for c in assessment.slo)
    note = f"{len(assessment.findings)} finding(s); {met}/{len(assessment.slo)} SLO checks met"
    if decision == AfterAssessment.TARGETS_MET:
        campaign.end(Phase.ASSESSMENT, "targets already met", note)
        detail = "no bottleneck found and every SLO met"
        if assessment.findings:
            detail = f"every SLO met; {len(assessment.findings)} low finding(s) left for a person (see the report)"
        raise Stop(CampaignState.COMPLETED, "targets already met", detail)
    if decision == AfterAssessment.NOTHING_ACTIONABLE:
        campaign.end(Phase.ASSESSMENT, "nothing actionable", note)
        raise Stop(
            CampaignState.COMPLETED,
            "targets not met, nothing actionable",
            "some SLO checks fail but no finding explains them; see the baseline in the report",
        )
    campaign.end(Phase.ASSESSMENT, "bottlenecks found", note)
    return baseline, assessment
