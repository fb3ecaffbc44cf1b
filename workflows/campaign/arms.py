"""Interleaved arms: the same load measured without and with changes, alternating, until the verdicts decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Role
    from ratchet.contracts import (
        ArmRun,
        ArmsRequest,
        ChangeRecord,
        CompareRequest,
        CompareResult,
        EndpointVerdict,
        LoadTestResult,
    )

from workflows.campaign.context import Campaign
from workflows.campaign.saga import put_changes
from workflows.catalogue import COMPARE_ARMS, COMPARE_RUNS


async def measure_arms(
    campaign: Campaign,
    changes: list[ChangeRecord],
    run: Callable[[bool, int], tuple[str, str]],
    what: str,
    compare: Callable[[int], str],
    undecided: Callable[[list[EndpointVerdict]], list[str]] | None,
    *,
    record: bool = False,
    measure: Callable[[str, str], Awaitable[LoadTestResult]] | None = None,
    rounds_first: int | None = None,
) -> tuple[CompareResult, dict[bool, list[LoadTestResult]]]:
    """Interleaved arms without and with ``changes``, alternating A B, B A, A B ... (each round reverses the
    last, so that drift and warm caches favour neither arm). After ``runs_per_arm`` rounds, one more round at
    a time while ``undecided`` names endpoints, up to ``max_runs_per_arm``. ``run(in_place, number)`` names
    a run and says what it is; ``measure(label, summary)`` runs it (default: the validation's load), and
    ``rounds_first`` replaces ``runs_per_arm``. Ends with the changes in place."""
    rules = campaign.input.playbook.validation
    duration = (rules.run_duration or campaign.input.playbook.load.duration).total_seconds()

    async def validation_run(label: str, summary: str) -> LoadTestResult:
        return await campaign.load_test(
            label, Role.TEST_ENGINEER, summary, duration_s=duration, focus=campaign.focus, roots_only=True
        )

    measure = measure or validation_run
    first_rounds = rounds_first or rules.runs_per_arm
    arms: dict[bool, list[LoadTestResult]] = {False: [], True: []}
    rounds = 0
    while True:
        for in_place in (False, True) if rounds % 2 == 0 else (True, False):
            await put_changes(campaign, changes, in_place)
            label, summary = run(in_place, len(arms[in_place]) + 1)
            measured = await measure(label, summary)
            arms[in_place].append(measured)
            if record:
                campaign.status.validation_runs.append(ArmRun(arm="after" if in_place else "before", run=measured))
        rounds += 1
        if rounds < first_rounds:
            continue
        comparison = await compare_arms(
            campaign, [r.run_id for r in arms[False]], [r.run_id for r in arms[True]], compare(rounds)
        )
        pending = undecided(comparison.verdicts) if undecided is not None else []
        if not pending or rounds >= rules.max_runs_per_arm:
            break
        campaign.event(f"{what}: {', '.join(pending)} undecided after {rounds} runs per arm: one more each")
    await put_changes(campaign, changes, True)
    return comparison, arms


async def compare_arms(
    campaign: Campaign, before_run_ids: list[str], after_run_ids: list[str], summary: str
) -> CompareResult:
    request = ArmsRequest(
        campaign_id=campaign.input.campaign_id,
        before_run_ids=before_run_ids,
        after_run_ids=after_run_ids,
        playbook=campaign.input.playbook,
    )
    return await campaign.activity(COMPARE_ARMS, request, Role.PERF_OPTIMIZER, summary)


async def compare_runs(
    campaign: Campaign, before: LoadTestResult, after: LoadTestResult, summary: str
) -> CompareResult:
    """Two runs compared per endpoint on their raw samples (Mann-Whitney, the playbook's margins)."""
    request = CompareRequest(
        campaign_id=campaign.input.campaign_id,
        baseline=before,
        candidate=after,
        playbook=campaign.input.playbook,
        target=campaign.input.target,
    )
    result: CompareResult = await campaign.activity(COMPARE_RUNS, request, Role.PERF_OPTIMIZER, summary)
    return result
