"""What every phase of a campaign shares: its input, the status a person reads, the bookkeeping of phases and
events, and the one way it runs an activity (on the queue of the role that owns it).

Orchestration only: every decision is a pure function of small payloads (ratchet.analysis.decisions); every
effect is an activity.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.alerts import alert_request
    from ratchet.analysis.load_shapes import ShapeRun, load_request
    from ratchet.config.common import PHASE_TITLES, Phase, Role
    from ratchet.config.playbook import AlertKind
    from ratchet.config.target import Target
    from ratchet.contracts import (
        AlertRequest,
        AlertResult,
        CampaignInput,
        CampaignState,
        CampaignStatus,
        Event,
        GateDecision,
        GeneratorRequest,
        LoadTestResult,
        PhaseRecord,
        Recommendation,
        ReportRequest,
        ReportResult,
        SplitLoadTest,
        ValidationOutcome,
    )
    from workflows import search_attributes as sa


from workflows.catalogue import (
    GENERATE_LOAD,
    RECORD_CAMPAIGN,
    RUN_LOAD_TEST,
    SEND_ALERT,
    SUMMARIZE_LOAD_TEST,
    WRITE_REPORT,
    ActivitySpec,
    call,
)

GENERATOR_LEAD = timedelta(seconds=10)


class Stop(Exception):
    """Ends the campaign early with a final state and outcome (not an error)."""

    def __init__(self, state: CampaignState, outcome: str, detail: str = "") -> None:
        super().__init__(outcome)
        self.state, self.outcome, self.detail = state, outcome, detail


class Campaign:
    """One campaign's shared state, handed to every phase, gate and step of the saga."""

    def __init__(self, request: CampaignInput) -> None:
        self.input = request
        self.status = CampaignStatus(
            campaign_id=request.campaign_id,
            target=request.target.name,
            playbook=request.playbook.name,
            phases=[PhaseRecord(phase=p, title=PHASE_TITLES[p]) for p in Phase],
        )
        self.answer: GateDecision | None = None
        self.approved_only: list[str] | None = None
        self.validation_outcome = ValidationOutcome.MET
        self.behaviour_recorded = False
        self.measured_without: set[str] = set()  # changes undone for a measurement, to re-apply after
        self.focus: dict[str, float] = {}  # endpoint -> req/s of the validation's endpoints under test
        self.alerts: list[asyncio.Task[None]] = []
        self.signatures_taken: set[str] = set()  # signed answers taken: the same one again is a replay

    async def load_test(
        self,
        label: str,
        role: Role,
        summary: str,
        *,
        duration_s: float | None = None,
        shape: ShapeRun | None = None,
        target: Target | None = None,
        focus: dict[str, float] | None = None,
        roots_only: bool = False,
    ) -> LoadTestResult:
        """One load test (split over the playbook's generators). ``roots_only``: a run whose spans are read for
        each request's root span alone (the arms' server-side time); its collection ends once they are in."""
        load = self.input.playbook.load
        if shape is None:
            duration = duration_s if duration_s is not None else load.duration.total_seconds()
            shape = ShapeRun(label, load.rps, duration, load.warmup.total_seconds())
        request = load_request(
            self.input.campaign_id, label, target or self.input.target, load, shape, focus, roots_only=roots_only
        )
        length = timedelta(seconds=shape.duration_s + shape.warmup_s + 120)
        if load.generators == 1:
            return await self.activity(
                RUN_LOAD_TEST,
                request,
                role,
                f"{summary}: {shape.describe()}",
                timeout=length,
            )
        # Split: every generator's k6 waits paused, then resumes at one shared instant far enough ahead
        # for all of them to have started (their activities may wait in the queue for a worker).
        start_at = workflow.now() + GENERATOR_LEAD
        count = load.generators
        generators = await asyncio.gather(
            *(
                self.activity(
                    GENERATE_LOAD,
                    GeneratorRequest(request=request, index=index, count=count, start_at=start_at),
                    Role.LOAD_GENERATOR,
                    f"{summary}: generator {index + 1} of {count}, {shape.describe()} in all",
                    timeout=length + GENERATOR_LEAD,
                )
                for index in range(count)
            )
        )
        return await self.activity(
            SUMMARIZE_LOAD_TEST,
            SplitLoadTest(request=request, generators=list(generators)),
            role,
            f"{summary}: merge the samples of {count} generators",
        )

    async def activity(
        self,
        spec: ActivitySpec,
        argument: Any,
        role: Role,
        summary: str,
        *,
        timeout: timedelta | None = None,
    ) -> Any:
        """Run a catalogued activity on ``role``'s queue, shielded (``workflows.catalogue.call``): the campaign
        sees its cancellation at once; a measurement is stopped, a lever finishes and the saga undoes it."""
        return await call(
            spec, argument, prefix=self.input.task_queue_prefix, role=role, summary=summary, timeout=timeout
        )

    def phase_record(self, phase: Phase) -> PhaseRecord:
        return next(p for p in self.status.phases if p.phase == phase)

    def begin(self, phase: Phase) -> None:
        record = self.phase_record(phase)
        record.started_at = workflow.now()
        record.outcome = "running"
        self.status.phase = phase
        self.event(f"{record.title} started")
        workflow.upsert_search_attributes([sa.PHASE.value_set(phase.value)])
        self.refresh_details()

    def end(self, phase: Phase, outcome: str, note: str = "") -> None:
        record = self.phase_record(phase)
        record.ended_at = workflow.now()
        record.outcome = outcome
        record.note = note
        self.event(f"{record.title}: {outcome}" + (f" - {note}" if note else ""))
        self.refresh_details()

    def skip(self, phase: Phase, why: str) -> None:
        record = self.phase_record(phase)
        if record.outcome in ("pending",):
            record.outcome = "skipped"
            record.note = why
            self.event(f"{record.title} skipped: {why}")

    def change_note(self, recommendations: list[Recommendation]) -> str:
        if not recommendations:
            return "no change of this kind was approved"
        return "applied " + ", ".join(r.lever.name for r in recommendations if r.lever)

    def event(self, message: str) -> None:
        self.status.events.append(Event(at=workflow.now(), message=message))

    def set_state(self, state: CampaignState) -> None:
        self.status.state = state
        workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])
        self.refresh_details()

    def refresh_details(self) -> None:
        """Markdown shown in the Temporal UI's 'current details'."""
        s = self.status
        lines = [f"**{s.state.value}** - phase: {s.phase.value if s.phase else '-'}"]
        if s.waiting:
            lines.append(
                f"Waiting for approval of **{s.waiting.phase.value}** by one of {', '.join(s.waiting.approvers)} "
                f"until {s.waiting.deadline:%Y-%m-%d %H:%M}Z"
            )
        for p in s.phases:
            lines.append(f"- {p.title}: {p.outcome}" + (f" ({p.note})" if p.note else ""))
        if s.outcome:
            lines.append(f"Outcome: **{s.outcome}**")
        workflow.set_current_details("\n".join(lines))

    def alert(self, kind: AlertKind, title: str, text: str, **facts: str) -> None:
        """Tell the playbook's webhook, when it wants this kind, beside the campaign: a slow or failing webhook
        never holds a phase up nor fails the campaign (the outcome is an event either way)."""
        if not workflow.patched("alerts"):  # older campaigns replay without alerts
            return
        fields = {"target": self.input.target.name, "playbook": self.input.playbook.name, **facts}
        request = alert_request(
            self.input.playbook.alerts,
            campaign_id=self.input.campaign_id,
            kind=kind,
            title=title,
            text=text,
            fields=fields,
        )
        if request is not None:
            self.alerts.append(asyncio.ensure_future(self.send_alert(request)))

    async def send_alert(self, request: AlertRequest) -> None:
        try:
            result: AlertResult = await self.activity(
                SEND_ALERT,
                request,
                Role.PERF_OPTIMIZER,
                f"Alert ({request.kind.value}): {request.title}"[:200],
                timeout=timedelta(seconds=request.timeout_s + 5),
            )
            self.event(f"alert {request.kind.value} sent ({result.detail or result.status})")
        except ActivityError as failure:
            self.event(f"alert {request.kind.value} not delivered: {failure.cause}")

    async def record(self) -> None:
        await self.activity(
            RECORD_CAMPAIGN,
            self.status,
            Role.PERF_OPTIMIZER,
            "Record the campaign in the store",
        )

    async def finish(self, state: CampaignState, outcome: str, detail: str = "") -> None:
        for record in self.status.phases:
            if record.outcome == "running":
                record.outcome, record.ended_at = "interrupted", workflow.now()
            self.skip(record.phase, "not reached")
        self.status.outcome = outcome
        self.status.outcome_detail = detail
        if self.alerts:
            await asyncio.gather(*self.alerts, return_exceptions=True)  # each reports its failure as an event
        self.set_state(state)
        self.event(f"campaign {state.value}: {outcome}")
        try:
            report: ReportResult = await self.activity(
                WRITE_REPORT,
                ReportRequest(status=self.status),
                Role.PERF_OPTIMIZER,
                "Write the HTML and Markdown report",
            )
            self.status.report_html = report.html_path
            self.status.report_markdown = report.markdown_path
        except ActivityError as failure:
            self.event(f"report could not be written: {failure.cause}")
        self.refresh_details()
        await self.record()
