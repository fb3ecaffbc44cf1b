"""The assessment's other load shapes again after the changes (``validation.rerun_shapes``): the stress run's
knee, and the peak and soak runs per endpoint (Mann-Whitney on their raw samples, as validation compares)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.load_shapes import extra_shapes
    from ratchet.analysis.reshapes import knee_verdict
    from ratchet.config.common import Role
    from ratchet.config.playbook import AlertKind
    from ratchet.contracts import (
        ChangeState,
        LoadTestResult,
        ShapeRerun,
        Verdict,
    )

from workflows.campaign.arms import compare_runs
from workflows.campaign.context import Campaign
from workflows.campaign.saga import put_changes


async def rerun_shapes(campaign: Campaign) -> None:
    """Each of the assessment's peak, stress and soak runs once more, the kept changes in place; a regression is
    alerted (the latency verdicts decide what is kept: one run a side is evidence to look at, not to undo by)."""
    playbook = campaign.input.playbook
    before = {run.label: run for run in campaign.status.load_shapes}
    shapes = [shape for shape in extra_shapes(playbook) if shape.label in before]
    if not playbook.validation.rerun_shapes or not shapes:
        return
    kept = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    await put_changes(campaign, kept, True)
    for shape in shapes:
        label = f"{shape.label}-after"
        after = await campaign.load_test(
            label,
            Role.TEST_ENGINEER,
            f"{shape.label.capitalize()} load again, with the changes",
            shape=shape.__class__(
                label, shape.rate, shape.duration_s, shape.warmup_s, shape.stress, shape.bounded_memory
            ),
        )
        rerun = await judged(campaign, before[shape.label], after)
        campaign.status.shape_reruns.append(rerun)
        campaign.event(f"{shape.label} after the changes: {rerun.verdict}: {rerun.sentence}")
        if rerun.verdict == "regressed":
            campaign.alert(
                AlertKind.REGRESSION,
                f"{campaign.input.campaign_id}: the {shape.label} load regressed after the changes",
                rerun.sentence[:2500],
            )


async def judged(campaign: Campaign, before: LoadTestResult, after: LoadTestResult) -> ShapeRerun:
    if before.stress is not None and after.stress is not None:
        verdict, sentence = knee_verdict(before.stress, after.stress)
    else:
        comparison = await compare_runs(
            campaign, before, after, f"Compare the {before.label} load before and after the changes"
        )
        verdicts = comparison.verdicts
        regressed = [v for v in verdicts if v.verdict == Verdict.REGRESSED]
        improved = [v for v in verdicts if v.verdict == Verdict.IMPROVED]
        verdict = "regressed" if regressed else "improved" if improved else "unchanged"
        sentence = "; ".join(f"{v.endpoint} {v.verdict.value} {v.ratio_text()}" for v in verdicts) or "nothing measured"
        soak = comparison.soak  # a soak's drift over its length, before and after (None before it was judged)
        if soak is not None:
            sentence += f"; {soak.sentence}"
            verdict = "regressed" if "regressed" in (verdict, soak.verdict) else verdict
            verdict = "improved" if verdict == "unchanged" and soak.verdict == "improved" else verdict
    if before.resources is not None and after.resources is not None:
        sentence += f"; peak memory {before.resources.rss_mb_max:g} -> {after.resources.rss_mb_max:g} MB"
    return ShapeRerun(
        label=before.label, verdict=verdict, sentence=sentence, before_run_id=before.run_id, after_run_id=after.run_id
    )
