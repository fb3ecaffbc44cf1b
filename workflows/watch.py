"""The standing watch of one target: a light probe load at the playbook's interval, each endpoint's p95 kept as a
series, a lasting degradation alerted once and, when the playbook says so, answered with a campaign.

It runs for as long as nobody stops it, so its history is bounded: after ``PROBES_PER_RUN`` probes (or when
Temporal suggests it) it continues as new, carrying the latest probes, the drifts it alerted and the campaigns
it launched. The judgement (change points, permutation tests: numpy) runs in an activity.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.alerts import alert_request
    from ratchet.analysis.load_shapes import ShapeRun, load_request
    from ratchet.analysis.watch import already_alerted, drift_key, kept_points, still_remembered
    from ratchet.config.common import Role
    from ratchet.config.playbook import AlertKind
    from ratchet.contracts import (
        AlertResult,
        CampaignInput,
        LoadTestResult,
        WatchDrift,
        WatchInput,
        WatchJudgement,
        WatchJudgeRequest,
        WatchPoint,
        WatchStatus,
    )
    from ratchet.temporal.client import CAMPAIGN_QUEUE_SUFFIX

from workflows.catalogue import JUDGE_WATCH, RUN_LOAD_TEST, SEND_ALERT, ActivitySpec, call

WATCH_PREFIX = "ratchet-watch-"


def watch_id(target_name: str) -> str:
    """A target's watch: one at a time (its workflow id)."""
    return WATCH_PREFIX + target_name


# About a dozen events per probe (load test, judgement, timer): a run stays far under Temporal's 50,000.
PROBES_PER_RUN = 100
EVENTS_KEPT = 50


@workflow.defn(name="WatchWorkflow")
class WatchWorkflow:
    def __init__(self) -> None:
        self.stopping = False
        self.state = WatchStatus(watch_id="", target="", probes=0, runs=0)

    @workflow.signal
    def stop(self) -> None:
        """End the watch after the probe in flight (`ratchet watch stop`)."""
        self.stopping = True

    @workflow.query
    def status(self) -> WatchStatus:
        return self.state

    @workflow.run
    async def run(self, watch: WatchInput) -> WatchStatus:
        rules = watch.playbook.watch
        self.state = WatchStatus(
            watch_id=watch.watch_id,
            target=watch.target.name,
            probes=watch.probes,
            runs=watch.runs,
            latest=watch.points[-1] if watch.points else None,
            alerted=list(watch.alerted),
            campaigns=list(watch.campaigns),
            events=list(watch.events),
        )
        points = list(watch.points)
        for _ in range(PROBES_PER_RUN):
            if self.stopping or workflow.info().is_continue_as_new_suggested():
                break
            point = await self.probe(watch)
            self.state.probes += 1
            if point is not None:
                points = [*points, point][-kept_points(rules) :]
                self.state.latest = point
                await self.judge(watch, points)
            with contextlib.suppress(TimeoutError):  # the interval passed: the next probe
                await workflow.wait_condition(lambda: self.stopping, timeout=rules.interval)
        if self.stopping:
            self.event("stopped")
            return self.state
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            watch.model_copy(
                update={
                    "points": points,
                    "alerted": self.state.alerted,
                    "campaigns": self.state.campaigns,
                    "probes": self.state.probes,
                    "events": self.state.events,
                    "runs": watch.runs + 1,
                }
            )
        )

    async def probe(self, watch: WatchInput) -> WatchPoint | None:
        """One light load on every endpoint; None when it failed (said in the events, the watch goes on)."""
        rules = watch.playbook.watch
        label = f"watch-{self.state.probes + 1}"
        shape = ShapeRun(label, rules.rate, rules.duration.total_seconds(), 0.0)
        request = load_request(watch.watch_id, label, watch.target, watch.playbook.load, shape)
        try:
            result: LoadTestResult = await activity(
                watch,
                RUN_LOAD_TEST,
                request,
                f"Watch probe {self.state.probes + 1}: {shape.describe()}",
                timeout=rules.duration + rules.interval,
            )
        except ActivityError as failure:
            self.event(f"probe {self.state.probes + 1} failed: {failure.cause}")
            return None
        p95 = {s.endpoint: s.p95 for s in result.endpoints if s.requests and s.errors < s.requests}
        return WatchPoint(at=workflow.now(), run_id=result.run_id, p95=p95, requests=result.requests)

    async def judge(self, watch: WatchInput, points: list[WatchPoint]) -> None:
        rules = watch.playbook.watch
        judgement: WatchJudgement = await activity(
            watch,
            JUDGE_WATCH,
            WatchJudgeRequest(points=points, playbook=watch.playbook, now=workflow.now()),
            f"Judge {len(points)} probes for a lasting degradation",
        )
        self.state.drifts = judgement.drifts
        self.state.alerted = still_remembered(self.state.alerted, workflow.now(), rules)
        new = [drift for drift in judgement.drifts if not already_alerted(drift, self.state.alerted, rules)]
        if not new:
            return
        # One alert (and at most one campaign) for what this probe showed, however many endpoints moved.
        self.state.alerted += [drift_key(drift) for drift in new]
        for drift in new:
            self.event(f"degraded: {drift.sentence}")
        launched = await self.launch(watch, new) if rules.on_drift == "campaign" else None
        await self.alert(watch, new, launched)

    async def launch(self, watch: WatchInput, drifts: list[WatchDrift]) -> str:
        """A campaign on the target, as a child the watch does not wait for (it outlives the watch's run); it
        waits its turn when another campaign runs on the target."""
        campaign_id = f"camp-{watch.target.name}-watch-{workflow.now():%Y%m%d-%H%M%S}"
        await workflow.start_child_workflow(
            "CampaignWorkflow",
            CampaignInput(
                campaign_id=campaign_id,
                playbook=watch.playbook,
                target=watch.target,
                task_queue_prefix=watch.task_queue_prefix,
                queue=True,
            ),
            id=campaign_id,
            task_queue=f"{watch.task_queue_prefix}-{CAMPAIGN_QUEUE_SUFFIX}",
            parent_close_policy=workflow.ParentClosePolicy.ABANDON,
            static_summary=f"Campaign launched by the watch: {'; '.join(d.sentence for d in drifts)}"[:400],
        )
        self.state.campaigns.append(campaign_id)
        self.event(f"campaign {campaign_id} launched for {', '.join(d.endpoint for d in drifts)}")
        return campaign_id

    async def alert(self, watch: WatchInput, drifts: list[WatchDrift], campaign_id: str | None) -> None:
        worst = max(drifts, key=lambda d: d.shift)
        moved = ", ".join(f"{d.endpoint} +{d.shift:.0%}" for d in drifts)
        request = alert_request(
            watch.playbook.alerts,
            campaign_id=watch.watch_id,
            kind=AlertKind.DEGRADATION,
            title=f"{watch.target.name}: p95 up ({moved})"[:150],
            text="\n".join(d.sentence for d in drifts) + (f"\ncampaign {campaign_id} launched" if campaign_id else ""),
            fields={
                "target": watch.target.name,
                "worst": f"{worst.endpoint}: {worst.before_ms:.1f} -> {worst.after_ms:.1f} ms",
                "since": f"{min(d.since for d in drifts):%Y-%m-%d %H:%M}Z",
            },
        )
        if request is None:
            return
        try:
            result: AlertResult = await activity(
                watch,
                SEND_ALERT,
                request,
                f"Alert: {request.title}"[:200],
                timeout=timedelta(seconds=request.timeout_s + 5),
            )
            self.event(f"alert sent ({result.detail or result.status})")
        except ActivityError as failure:
            self.event(f"alert not delivered: {failure.cause}")

    def event(self, message: str) -> None:
        self.state.events = [*self.state.events, f"{workflow.now():%Y-%m-%d %H:%M:%S}Z {message}"][-EVENTS_KEPT:]


async def activity(
    watch: WatchInput, spec: ActivitySpec, argument: Any, summary: str, timeout: timedelta | None = None
) -> Any:
    """Every activity of the watch is the perf-optimizer's, on the watch's queues."""
    return await call(
        spec, argument, prefix=watch.task_queue_prefix, role=Role.PERF_OPTIMIZER, summary=summary, timeout=timeout
    )
