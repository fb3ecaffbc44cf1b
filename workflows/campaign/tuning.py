"""Tuning: a lever with a range is tried at values the optimizer suggests and kept only when it proves itself."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.decisions import best_trial
    from ratchet.analysis.load_shapes import ShapeRun
    from ratchet.config.common import Role
    from ratchet.config.target import Target
    from ratchet.contracts import (
        ChangeRecord,
        ChangeState,
        LoadTestResult,
        Recommendation,
        SuggestRequest,
        SuggestResult,
        Trial,
    )

from workflows.campaign.arms import measure_arms
from workflows.campaign.context import Campaign
from workflows.campaign.saga import apply_change, put_changes, register, undo
from workflows.catalogue import SUGGEST_VALUE


async def tune(campaign: Campaign, recommendation: Recommendation) -> None:
    """Short trial load tests on the lever's endpoints, each at the value the optimizer suggests from the
    trials so far, within the playbook's budget; the best value stays, or the lever is undone when the
    baseline was best. Every trial is a change of the target and stays in the saga."""
    lever = recommendation.lever
    assert lever is not None and lever.parameter is not None
    tuning = campaign.input.playbook.tuning
    change = register(campaign, recommendation)
    if tuning.trials == 0:
        change.parameter = lever.parameter.value(lever.parameter.default)
        await apply_change(campaign, change, recommendation)
        return
    endpoints = recommendation.endpoints or [recommendation.endpoint]
    target = campaign.input.target
    # Only the lever's endpoints, no spans, no levers (they name other endpoints): a trial measures latency
    # and errors, quickly.
    trial_target = target.model_copy(
        update={"endpoints": [e for e in target.endpoints if e.name in endpoints], "traces": None, "levers": []}
    )
    # Other changes on the lever's endpoints are held back during the trials: with them in place the trials
    # would measure their gain too, and the chosen value would be credited with it.
    proves_itself = workflow.patched("tuning-proves-itself")
    held_back = []
    if proves_itself:
        held_back = [
            c
            for c in campaign.status.changes
            if c.state == ChangeState.APPLIED and c is not change and set(c.endpoints or [c.endpoint]) & set(endpoints)
        ]
    if held_back:
        await put_changes(campaign, held_back, False)
        campaign.event(
            f"{lever.name}: trials run with {', '.join(c.lever for c in held_back)} held back (same endpoints)"
        )
    await run_trials(campaign, change, recommendation, trial_target)
    await keep_best_trial(campaign, change, recommendation, trial_target, proven=proves_itself)
    if held_back:
        await put_changes(campaign, held_back, True)


async def run_trials(
    campaign: Campaign, change: ChangeRecord, recommendation: Recommendation, trial_target: Target
) -> None:
    """Trials at the values the optimizer suggests from the trials so far, within the playbook's budget."""
    lever = recommendation.lever
    assert lever is not None and lever.parameter is not None
    tuning = campaign.input.playbook.tuning
    failures = 0
    for number in range(1, tuning.trials + 1):
        suggestion: SuggestResult = await campaign.activity(
            SUGGEST_VALUE,
            SuggestRequest(
                campaign_id=campaign.input.campaign_id,
                lever=lever.name,
                parameter=lever.parameter,
                trials=change.trials,
            ),
            Role.DEVOPS_ENGINEER,
            f"Tune {lever.name}: value for trial {number} of {tuning.trials}",
        )
        trial = await run_trial(campaign, change, recommendation, suggestion.value, number, trial_target)
        change.trials.append(trial)
        measured = f"p95 {trial.p95_ms:.1f} ms" if trial.p95_ms is not None else "no p95"
        campaign.event(
            f"{lever.name} trial {number}: value {trial.value:g} ({suggestion.why}): {measured}, "
            f"errors {trial.error_rate:.1%}{' - failed: ' + trial.note if trial.failed else ''}"
        )
        failures += trial.failed
        if failures > tuning.max_failed_trials:
            campaign.event(
                f"{lever.name}: {failures} failed trials, more than {tuning.max_failed_trials}: tuning stops"
            )
            break


async def keep_best_trial(
    campaign: Campaign, change: ChangeRecord, recommendation: Recommendation, trial_target: Target, *, proven: bool
) -> None:
    """The best trial's value stays when it is not the baseline's and (``proven``) beats the baseline value
    beyond chance when both are measured again; otherwise the lever is undone."""
    lever = recommendation.lever
    assert lever is not None and lever.parameter is not None
    best = best_trial(change.trials)
    baseline = lever.parameter.value(lever.parameter.baseline or 0)
    if best is None or best.value == baseline:
        why = "no trial succeeded" if best is None else f"the baseline {baseline:g} was best (p95 {best.p95_ms:.1f} ms)"
        await undo(campaign, change, f"tuning: {why}")
        return
    change.parameter = best.value
    await apply_change(campaign, change, recommendation)
    if proven:
        doubt = await beats_baseline(campaign, change, best, baseline, trial_target)
        if doubt:
            await undo(campaign, change, f"tuning: {doubt}")
            return
    campaign.event(f"{lever.name} tuned to {best.value:g}: p95 {best.p95_ms:.1f} ms in trial")


async def beats_baseline(
    campaign: Campaign, change: ChangeRecord, best: Trial, baseline: float, trial_target: Target
) -> str:
    """Empty when the chosen value beats the baseline value beyond chance, else why not. The best of a few
    noisy trials looks better than it is (it was chosen for looking best), so both values are measured
    afresh, interleaved (baseline, chosen, chosen, baseline), and compared as validation compares: some
    endpoint of the lever with its p95 interval below 1, Mann-Whitney significant and a gain of at least
    ``min_effect``. A baseline whose trial failed (errors, no answer) is beaten by any value that did not."""
    if not any(t.value == baseline and not t.failed for t in change.trials):
        campaign.event(f"{change.lever}: the baseline {baseline:g} failed its trial; {best.value:g} did not")
        return ""
    tuning = campaign.input.playbook.tuning
    rate = tuning.rate or campaign.input.playbook.load.rps
    duration, warmup = tuning.trial_duration.total_seconds(), tuning.trial_warmup.total_seconds()

    async def measure(label: str, summary: str) -> LoadTestResult:
        shape = ShapeRun(label, rate, duration, warmup)
        return await campaign.load_test(
            label, Role.DEVOPS_ENGINEER, summary, shape=shape, target=trial_target, roots_only=True
        )

    def run(in_place: bool, number: int) -> tuple[str, str]:
        value = best.value if in_place else baseline
        return (
            f"confirm-{change.change_id}-{value:g}-{number}",
            f"Confirm {change.lever} at {value:g}, run {number}",
        )

    comparison, _ = await measure_arms(
        campaign,
        [change],
        run,
        f"tuning of {change.lever}",
        lambda _: f"Tune {change.lever}: {best.value:g} against the baseline {baseline:g}",
        None,
        measure=measure,
        rounds_first=2,
    )
    rules = campaign.input.playbook.validation
    # Beyond chance, and by the playbook's minimum effect: a few percent is what back-to-back runs differ by.
    beaten = [
        v
        for v in comparison.verdicts
        if v.p_value_faster < rules.significance
        and v.ratio_high is not None
        and v.ratio_high < 1
        and (1 - (v.ratio or 1)) * v.before.p95 >= rules.effect_floor_ms(v.before.p95)
    ]
    found = "; ".join(f"{v.endpoint} {v.ratio_text()}, p faster {v.p_value_faster:.2g}" for v in comparison.verdicts)
    if beaten:
        campaign.event(f"{change.lever}: {best.value:g} beat the baseline {baseline:g} beyond chance ({found})")
        return ""
    return (
        f"{best.value:g} did not beat the baseline {baseline:g} beyond chance, measured again interleaved "
        f"(p < {rules.significance:g}, the p95 interval below 1 and a gain of {rules.min_effect} asked; "
        f"{found or 'nothing measured'})"
    )


async def run_trial(
    campaign: Campaign, change: ChangeRecord, recommendation: Recommendation, value: float, number: int, target: Target
) -> Trial:
    """Set the lever to ``value``, load its endpoints briefly, and say how they did."""
    tuning = campaign.input.playbook.tuning
    change.parameter = value
    try:
        await apply_change(campaign, change, recommendation)
    except ActivityError as failure:
        return Trial(value=value, failed=True, note=f"could not set it: {failure.cause}")
    label = f"trial-{change.change_id}-{number}"
    shape = ShapeRun(
        label,
        tuning.rate or campaign.input.playbook.load.rps,
        tuning.trial_duration.total_seconds(),
        tuning.trial_warmup.total_seconds(),
    )
    try:
        result = await campaign.load_test(
            label, Role.DEVOPS_ENGINEER, f"Trial {number} at {value:g}", shape=shape, target=target
        )
    except ActivityError as failure:
        return Trial(value=value, failed=True, note=f"the trial load test failed: {failure.cause}")
    requests = sum(s.requests for s in result.endpoints)
    errors = sum(s.errors for s in result.endpoints) / requests if requests else 1.0
    limit = min(campaign.input.playbook.slo.for_endpoint(e.name).max_error_rate for e in target.endpoints)
    p95 = max((s.p95 for s in result.endpoints), default=None)
    if p95 is None or errors > limit:
        note = "nothing answered" if p95 is None else f"error rate {errors:.1%} over the SLO's {limit:.1%}"
        return Trial(value=value, p95_ms=p95, error_rate=errors, failed=True, note=note, run_id=result.run_id)
    return Trial(value=value, p95_ms=p95, error_rate=errors, run_id=result.run_id)
