"""Every activity a workflow calls, in one typed catalogue, and the one way workflows call them.

An entry says the activity's name, its argument and result types, its timeouts, heartbeat and retry policy,
whether a cancellation may interrupt it, and which roles serve it (their workers register it from here:
``roles.role_activities``). The campaign, the rollout and the calibration call activities through ``call``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Role
    from ratchet.contracts import (
        AlertRequest,
        AlertResult,
        ArmsRequest,
        AssessRequest,
        AssessResult,
        BehaviourCheck,
        BehaviourRequest,
        BehaviourSummary,
        CalibrateRequest,
        CalibrationResult,
        CampaignStatus,
        CompareRequest,
        CompareResult,
        GeneratorRequest,
        GeneratorResult,
        GuardRequest,
        GuardResult,
        LeverCall,
        LeverOutcome,
        LoadTestRequest,
        LoadTestResult,
        PageLoadRequest,
        PageLoadResult,
        PlanRequest,
        PlanResult,
        ProbeRequest,
        ProbeSummary,
        ReportRequest,
        ReportResult,
        SplitLoadTest,
        SuggestRequest,
        SuggestResult,
        ValidationLoad,
        ValidationLoadRequest,
        WatchJudgement,
        WatchJudgeRequest,
        WeeklyRequest,
        WeeklyResult,
        WireBytesRequest,
        WireBytesResult,
    )

QUICK = timedelta(minutes=2)
HEARTBEAT = timedelta(seconds=20)
STEP_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
# Compensations must get through: retry longer, with backoff, before declaring the target dirty.
UNDO_RETRY = RetryPolicy(
    maximum_attempts=10, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)
# An alert is worth a few tries, never a stuck campaign: it is sent beside the campaign, not in its way.
ALERT_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))

_MEASURING = (Role.PERF_OPTIMIZER, Role.TEST_ENGINEER, Role.DEVOPS_ENGINEER)
_CHANGING = (Role.BACKEND_DEVELOPER, Role.FRONTEND_DEVELOPER, Role.DEVOPS_ENGINEER)


@dataclass(frozen=True)
class ActivitySpec:
    """One activity as workflows call it and workers serve it."""

    name: str
    argument: type[Any]
    result: type[Any]
    roles: tuple[Role, ...]
    timeout: timedelta | None = QUICK
    """None: the caller says, from the work asked (a load test's length)."""
    heartbeat: timedelta | None = None
    retry: RetryPolicy = field(default_factory=lambda: STEP_RETRY)
    interruptible: bool = True
    """False for what changes the target: a half-applied change is worse than a finished one (the saga undoes it)."""


RUN_LOAD_TEST = ActivitySpec("run_load_test", LoadTestRequest, LoadTestResult, _MEASURING, None, HEARTBEAT)
SUMMARIZE_LOAD_TEST = ActivitySpec(
    "summarize_load_test", SplitLoadTest, LoadTestResult, _MEASURING, timedelta(minutes=10), HEARTBEAT
)
GENERATE_LOAD = ActivitySpec(
    "generate_load", GeneratorRequest, GeneratorResult, (Role.LOAD_GENERATOR,), None, HEARTBEAT
)
PROBE_ENDPOINTS = ActivitySpec(
    "probe_endpoints", ProbeRequest, ProbeSummary, (Role.PERF_OPTIMIZER,), timedelta(minutes=5), timedelta(seconds=60)
)
MEASURE_WIRE_BYTES = ActivitySpec("measure_wire_bytes", WireBytesRequest, WireBytesResult, (Role.PERF_OPTIMIZER,))
# Throttled devices' first visits: seconds each, heartbeating as they go.
MEASURE_PAGE_LOADS = ActivitySpec(
    "measure_page_loads",
    PageLoadRequest,
    PageLoadResult,
    (Role.TEST_ENGINEER,),
    timedelta(minutes=15),
    timedelta(seconds=60),
)
FIND_BOTTLENECKS = ActivitySpec("find_bottlenecks", AssessRequest, AssessResult, (Role.PERF_OPTIMIZER,))
PLAN_CHANGES = ActivitySpec("plan_changes", PlanRequest, PlanResult, (Role.PERF_OPTIMIZER,))
COMPARE_RUNS = ActivitySpec("compare_runs", CompareRequest, CompareResult, (Role.PERF_OPTIMIZER, Role.TEST_ENGINEER))
COMPARE_ARMS = ActivitySpec("compare_arms", ArmsRequest, CompareResult, (Role.PERF_OPTIMIZER, Role.TEST_ENGINEER))
SIZE_VALIDATION_LOAD = ActivitySpec(
    "size_validation_load", ValidationLoadRequest, ValidationLoad, (Role.PERF_OPTIMIZER,)
)
CALIBRATE_NOISE = ActivitySpec(
    "calibrate_noise", CalibrateRequest, CalibrationResult, (Role.PERF_OPTIMIZER,), timedelta(minutes=5)
)
JUDGE_WATCH = ActivitySpec("judge_watch", WatchJudgeRequest, WatchJudgement, (Role.PERF_OPTIMIZER,))
RECORD_CAMPAIGN = ActivitySpec("record_campaign", CampaignStatus, type(None), (Role.PERF_OPTIMIZER,))
WRITE_WEEKLY_REPORT = ActivitySpec("write_weekly_report", WeeklyRequest, WeeklyResult, (Role.PERF_OPTIMIZER,))
WRITE_REPORT = ActivitySpec("write_report", ReportRequest, ReportResult, (Role.PERF_OPTIMIZER,))
SEND_ALERT = ActivitySpec("send_alert", AlertRequest, AlertResult, (Role.PERF_OPTIMIZER,), None, retry=ALERT_RETRY)
RECORD_BEHAVIOUR = ActivitySpec("record_behaviour", BehaviourRequest, BehaviourSummary, (Role.TEST_ENGINEER,))
CHECK_BEHAVIOUR = ActivitySpec("check_behaviour", BehaviourRequest, BehaviourCheck, (Role.TEST_ENGINEER,))
CHECK_GUARD = ActivitySpec("check_guard", GuardRequest, GuardResult, (Role.DEVOPS_ENGINEER,))
SUGGEST_VALUE = ActivitySpec("suggest_value", SuggestRequest, SuggestResult, (Role.DEVOPS_ENGINEER,))
APPLY_LEVER = ActivitySpec(
    "apply_lever", LeverCall, LeverOutcome, _CHANGING, timedelta(minutes=15), HEARTBEAT, interruptible=False
)
ROLLBACK_LEVER = ActivitySpec(
    "rollback_lever", LeverCall, LeverOutcome, _CHANGING, timedelta(minutes=15), HEARTBEAT, UNDO_RETRY, False
)

CATALOGUE: dict[str, ActivitySpec] = {
    spec.name: spec
    for spec in (
        RUN_LOAD_TEST,
        SUMMARIZE_LOAD_TEST,
        GENERATE_LOAD,
        PROBE_ENDPOINTS,
        MEASURE_WIRE_BYTES,
        MEASURE_PAGE_LOADS,
        FIND_BOTTLENECKS,
        PLAN_CHANGES,
        COMPARE_RUNS,
        COMPARE_ARMS,
        SIZE_VALIDATION_LOAD,
        CALIBRATE_NOISE,
        JUDGE_WATCH,
        RECORD_CAMPAIGN,
        WRITE_REPORT,
        WRITE_WEEKLY_REPORT,
        SEND_ALERT,
        RECORD_BEHAVIOUR,
        CHECK_BEHAVIOUR,
        CHECK_GUARD,
        SUGGEST_VALUE,
        APPLY_LEVER,
        ROLLBACK_LEVER,
    )
}


def queue(prefix: str, role: Role) -> str:
    """The task queue of a role's workers."""
    return f"{prefix}-{role.value}"


async def call(
    spec: ActivitySpec,
    argument: Any,
    *,
    prefix: str,
    role: Role,
    summary: str,
    timeout: timedelta | None = None,
    shielded: bool = True,
) -> Any:
    """Run ``spec`` on ``role``'s queue, with the catalogue's options (``timeout`` where the work asked sets it).

    ``shielded`` (what campaigns do): a cancellation of the workflow is seen at once, whatever the activity
    does; then an interruptible activity is told to stop (a measurement's heartbeat stops k6, which keeps
    the partial samples) and awaited, one that changes the target is awaited to its end (the saga undoes
    it), and the cancellation goes on. Not shielded: the activity is cancelled as Temporal does by default
    (rollouts started before their levers were shielded replay so).
    """
    assert role in spec.roles, f"{spec.name} is not served by {role.value}"
    start_to_close = timeout or spec.timeout
    assert start_to_close is not None, f"{spec.name}: the caller must give its timeout"
    handle = workflow.start_activity(
        spec.name,
        argument,
        task_queue=queue(prefix, role),
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=spec.heartbeat,
        retry_policy=spec.retry,
        result_type=spec.result,
        summary=summary,
        cancellation_type=(
            workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
            if shielded
            else workflow.ActivityCancellationType.TRY_CANCEL
        ),
    )
    if not shielded:
        return await handle
    try:
        return await asyncio.shield(handle)
    except asyncio.CancelledError:
        if spec.interruptible:
            handle.cancel()
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await handle
        raise
