"""The campaign: one durable workflow, six phases, gates for people, a saga that undoes what did not pay off.

Orchestration only. Every decision is a pure function of small payloads (ratchet.analysis.decisions);
every effect is an activity on the task queue of the role that owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ratchet.alerts import alert_request
    from ratchet.analysis.decisions import (
        AfterAssessment,
        after_assessment,
        best_trial,
        bytes_verdict,
        changes_without_effect,
        payload_endpoints,
        undecided_endpoints,
        validation_outcome,
        validation_summary,
    )
    from ratchet.analysis.knee import knee_summary
    from ratchet.analysis.load_shapes import ShapeRun, extra_shapes
    from ratchet.config.common import PHASE_TITLES, Phase, Role
    from ratchet.config.playbook import AlertKind, Attribution, Gate, TimeoutAction
    from ratchet.config.target import Target
    from ratchet.contracts import (
        AlertRequest,
        AlertResult,
        ApprovalInput,
        ArmRun,
        ArmsRequest,
        AssessRequest,
        AssessResult,
        BehaviourCheck,
        BehaviourRequest,
        BehaviourSummary,
        CampaignInput,
        CampaignState,
        CampaignStatus,
        ChangeRecord,
        ChangeState,
        CompareRequest,
        CompareResult,
        EndpointVerdict,
        Event,
        GateDecision,
        GateState,
        GeneratorRequest,
        GeneratorResult,
        GuardRequest,
        GuardResult,
        LeverCall,
        LeverOutcome,
        LoadTestRequest,
        LoadTestResult,
        PhaseRecord,
        PlanRequest,
        PlanResult,
        ProbeRequest,
        ProbeSummary,
        Recommendation,
        RejectionInput,
        ReportRequest,
        ReportResult,
        RolloutChange,
        RolloutInput,
        RolloutResult,
        SplitLoadTest,
        SuggestRequest,
        SuggestResult,
        Trial,
        ValidationLoad,
        ValidationLoadRequest,
        ValidationOutcome,
        Verdict,
        WireBytesRequest,
        WireBytesResult,
    )
    from workflows import search_attributes as sa
    from workflows.rollout import rollout_id

_QUICK = timedelta(minutes=2)
_PROBE_TIMEOUT = timedelta(minutes=5)
_PROBE_HEARTBEAT = timedelta(seconds=60)
_GENERATOR_LEAD = timedelta(seconds=10)
_LEVER_TIMEOUT = timedelta(minutes=15)
_LEVER_HEARTBEAT = timedelta(seconds=20)
_STEP_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1))
# Compensations must get through: retry longer, with backoff, before declaring the target dirty.
_UNDO_RETRY = RetryPolicy(
    maximum_attempts=10, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


# An alert is worth a few tries, never a stuck campaign: it is sent beside the campaign, not in its way.
_ALERT_RETRY = RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2))

_CHANGES_TARGET = frozenset({"apply_lever", "rollback_lever"})


class _Stop(Exception):
    """Ends the campaign early with a final state and outcome (not an error)."""

    def __init__(self, state: CampaignState, outcome: str, detail: str = "") -> None:
        super().__init__(outcome)
        self.state, self.outcome, self.detail = state, outcome, detail


@workflow.defn(name="CampaignWorkflow")
class CampaignWorkflow:
    """Assessment, planning, optimization, frontend, validation, deployment; then report and history."""

    @workflow.init
    def __init__(self, request: CampaignInput) -> None:
        self._input = request
        self._status = CampaignStatus(
            campaign_id=request.campaign_id,
            target=request.target.name,
            playbook=request.playbook.name,
            phases=[PhaseRecord(phase=p, title=PHASE_TITLES[p]) for p in Phase],
        )
        self._answer: GateDecision | None = None
        self._approved_only: list[str] | None = None
        self._validation_outcome = ValidationOutcome.MET
        self._behaviour_recorded = False
        self._measured_without: set[str] = set()  # changes undone for a measurement, to re-apply after
        self._focus: dict[str, float] = {}  # endpoint -> req/s of the validation's endpoints under test
        self._alerts: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ run

    @workflow.run
    async def run(self, request: CampaignInput) -> CampaignStatus:
        self._event(f"campaign started on {request.target.name} with playbook {request.playbook.name}")
        await self._record()
        try:
            await self._campaign()
        except _Stop as stop:
            await self._finish(stop.state, stop.outcome, stop.detail)
        except asyncio.CancelledError:
            # Cancelled by a person: undo everything, write the report, then let the cancellation through.
            await asyncio.shield(asyncio.ensure_future(self._cancelled()))
            raise
        except ActivityError as failure:
            cause = failure.cause.message if isinstance(failure.cause, ApplicationError) else str(failure.cause)
            await self._unwind(f"campaign failed: {cause}")
            await self._finish(CampaignState.FAILED, "failed", f"{failure.activity_type} failed: {cause}")
            raise ApplicationError(f"campaign failed: {cause}", non_retryable=True) from failure
        return self._status

    async def _cancelled(self) -> None:
        self._event("cancellation requested: undoing applied changes")
        await self._unwind("campaign cancelled")
        await self._finish(CampaignState.CANCELLED, "cancelled", "cancelled by request; every applied change undone")

    async def _campaign(self) -> None:
        baseline, assessment = await self._assessment()
        recommendations = await self._planning(assessment)
        approved = [r for r in recommendations if self._is_approved(r)]
        await self._optimization(approved)
        await self._frontend(approved)
        if self._behaviour_recorded:
            await self._keep_behaviour()
            if not any(c.state == ChangeState.APPLIED for c in self._status.changes):
                self._skip(Phase.VALIDATION, "every change altered what the service answers and was undone")
                self._skip(Phase.DEPLOYMENT, "nothing left to deploy")
                detail = "; ".join(c.reason for c in self._status.changes if c.reason)
                raise _Stop(CampaignState.ROLLED_BACK, "changes altered the answers: rolled back", detail)
        validation = await self._validation(baseline)
        await self._deployment(validation)

    # ------------------------------------------------------------------ phases

    async def _assessment(self) -> tuple[LoadTestResult, AssessResult]:
        self._begin(Phase.ASSESSMENT)
        baseline = await self._load_test("baseline", Role.PERF_OPTIMIZER, "Baseline load test (k6)")
        self._status.baseline = baseline
        for note in baseline.notes:  # what the baseline could not measure (no spans, no resources): said at once
            self._event(f"baseline: {note}")
        for shape in extra_shapes(self._input.playbook):
            result = await self._load_test(
                shape.label, Role.PERF_OPTIMIZER, f"{shape.label.capitalize()} load test (k6)", shape=shape
            )
            self._status.load_shapes.append(result)
            if result.stress is not None:
                self._event(f"stress: {knee_summary(result.stress)}")
        probe = None
        if workflow.patched("probe-endpoints"):  # campaigns started before the probe existed replay without it
            probe = await self._activity(
                "probe_endpoints",
                ProbeRequest(
                    campaign_id=self._input.campaign_id, target=self._input.target, playbook=self._input.playbook
                ),
                Role.PERF_OPTIMIZER,
                "Probe answers: sizes, encodings, repeats, page assets, a traced burst",
                result_type=ProbeSummary,
                timeout=_PROBE_TIMEOUT,
                heartbeat=_PROBE_HEARTBEAT,
            )
            for note in probe.notes:
                self._event(f"probe: {note}")
            self._status.pages = probe.pages
        if workflow.patched("behaviour-checks"):  # older campaigns replay without the functional checks
            recorded: BehaviourSummary = await self._activity(
                "record_behaviour",
                BehaviourRequest(campaign_id=self._input.campaign_id, target=self._input.target),
                Role.TEST_ENGINEER,
                "Record what the target answers before any change",
                result_type=BehaviourSummary,
            )
            self._behaviour_recorded = True
            self._event(f"behaviour recorded: {recorded.answers} answers, {recorded.scenarios} scenario(s)")
            for note in recorded.notes:
                self._event(f"behaviour: {note}")
        assessment: AssessResult = await self._activity(
            "find_bottlenecks",
            AssessRequest(
                campaign_id=self._input.campaign_id,
                baseline=baseline,
                target=self._input.target,
                playbook=self._input.playbook,
                probe=probe,
                load_shapes=self._status.load_shapes,
            ),
            Role.PERF_OPTIMIZER,
            "Find bottlenecks: critical paths of the traces, plans, answers",
            result_type=AssessResult,
        )
        self._status.findings = assessment.findings
        self._status.database = assessment.database
        self._status.anomalies = assessment.anomalies
        # What the assessment could not see is said where a person reads, not only in the activity's result.
        self._status.assessment_notes = assessment.notes
        for note in assessment.notes:
            self._event(f"assessment: {note}")
        for anomaly in assessment.anomalous_baselines:
            # Said before anything is planned on it: a person at the planning gate sees it in the events.
            self._event(f"baseline unlike its history: {anomaly.sentence}")
        self._status.slo_before = assessment.slo
        decision = after_assessment(assessment, low_findings_met=workflow.patched("low-findings-met"))
        met = sum(c.met for c in assessment.slo)
        note = f"{len(assessment.findings)} finding(s); {met}/{len(assessment.slo)} SLO checks met"
        if decision == AfterAssessment.TARGETS_MET:
            self._end(Phase.ASSESSMENT, "targets already met", note)
            detail = "no bottleneck found and every SLO met"
            if assessment.findings:
                detail = f"every SLO met; {len(assessment.findings)} low finding(s) left for a person (see the report)"
            raise _Stop(CampaignState.COMPLETED, "targets already met", detail)
        if decision == AfterAssessment.NOTHING_ACTIONABLE:
            self._end(Phase.ASSESSMENT, "nothing actionable", note)
            raise _Stop(
                CampaignState.COMPLETED,
                "targets not met, nothing actionable",
                "some SLO checks fail but no finding explains them; see the baseline in the report",
            )
        self._end(Phase.ASSESSMENT, "bottlenecks found", note)
        return baseline, assessment

    async def _planning(self, assessment: AssessResult) -> list[Recommendation]:
        self._begin(Phase.PLANNING)
        plan: PlanResult = await self._activity(
            "plan_changes",
            PlanRequest(
                campaign_id=self._input.campaign_id,
                findings=assessment.findings,
                target=self._input.target,
                playbook=self._input.playbook,
                retry_disproved=self._input.retry_disproved,
            ),
            Role.PERF_OPTIMIZER,
            "Rank levers for the findings",
            result_type=PlanResult,
        )
        self._status.recommendations = plan.recommendations
        self._status.gain_model = plan.gain_model
        self._event(f"planning: predicted gains {plan.gain_model}")
        for note in plan.notes:
            self._event(f"planning: {note}")
        if not any(r.lever is not None for r in plan.recommendations):
            self._end(Phase.PLANNING, "manual advice only", "no lever can address the findings")
            raise _Stop(CampaignState.COMPLETED, "manual advice only", "the findings need a person; see the plan")
        decision = await self._gate(Phase.PLANNING)
        if decision is not None and decision.decision == "rejected":
            self._end(Phase.PLANNING, "rejected", decision.note)
            raise _Stop(CampaignState.REJECTED, "plan rejected: nothing applied", decision.note)
        self._approved_only = decision.only if decision is not None else None
        if workflow.patched("conflicting-levers"):  # older campaigns replay without the check
            self._hold_back_conflicts(plan.recommendations)
        chosen = [r.id for r in plan.recommendations if self._is_approved(r)]
        if not chosen:
            self._end(Phase.PLANNING, "nothing approved", "the approval named no recommendation with a lever")
            raise _Stop(CampaignState.COMPLETED, "nothing approved: nothing applied")
        self._end(Phase.PLANNING, "approved", f"approved: {', '.join(chosen)}")
        return plan.recommendations

    def _hold_back_conflicts(self, recommendations: list[Recommendation]) -> None:
        """Of approved levers that conflict, keep the best-ranked: they are never applied in the same trial."""
        if self._approved_only is None:
            return  # the recommended set: planning already kept conflicts out of it
        kept: list[str] = []
        for recommendation in recommendations:
            if recommendation.id not in self._approved_only or recommendation.lever is None:
                continue
            clash = next((other for other in kept if other in recommendation.conflicts_with), None)
            if clash is None:
                kept.append(recommendation.id)
            else:
                self._event(f"{recommendation.id} ({recommendation.lever.name}) held back: it conflicts with {clash}")
        self._approved_only = kept

    def _is_approved(self, recommendation: Recommendation) -> bool:
        if recommendation.lever is None:
            return False
        if self._approved_only is not None:
            return recommendation.id in self._approved_only
        return recommendation.recommended

    async def _optimization(self, approved: list[Recommendation]) -> None:
        self._begin(Phase.OPTIMIZATION)
        await self._gate_or_abort(Phase.OPTIMIZATION)
        mine = [r for r in approved if r.role in (Role.BACKEND_DEVELOPER, Role.DEVOPS_ENGINEER, Role.PERF_OPTIMIZER)]
        tunable = [r for r in mine if _tunable(r)] if workflow.patched("tune-levers") else []
        plain = [r for r in mine if r not in tunable]
        if workflow.patched("roles-in-parallel"):  # older campaigns replay with one change at a time
            await self._apply_by_role(plain)
        else:
            for recommendation in plain:
                await self._apply(recommendation)
        # Tuned last: its trials measure the target with every other change of the phase in place.
        for recommendation in tunable:
            await self._tune(recommendation)
        self._end(Phase.OPTIMIZATION, "applied" if mine else "skipped", self._change_note(mine))

    async def _apply_by_role(self, recommendations: list[Recommendation]) -> None:
        """Each role applies its changes in plan order, on its own queue, while the other roles apply theirs
        (approved changes never conflict). Every role finishes what it started before a failure unwinds."""
        by_role: dict[Role, list[Recommendation]] = {}
        for recommendation in recommendations:
            by_role.setdefault(recommendation.role, []).append(recommendation)

        async def apply_in_order(mine: list[Recommendation]) -> None:
            for recommendation in mine:
                await self._apply(recommendation)

        outcomes = await asyncio.gather(*(apply_in_order(mine) for mine in by_role.values()), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _frontend(self, approved: list[Recommendation]) -> None:
        mine = [r for r in approved if r.role == Role.FRONTEND_DEVELOPER]
        if not mine:
            self._skip(Phase.FRONTEND, "no frontend change in the approved plan")
            return
        self._begin(Phase.FRONTEND)
        await self._gate_or_abort(Phase.FRONTEND)
        for recommendation in mine:
            await self._apply(recommendation)
        self._end(Phase.FRONTEND, "applied", self._change_note(mine))

    async def _validation(self, baseline: LoadTestResult) -> LoadTestResult:
        self._begin(Phase.VALIDATION)
        await self._gate_or_abort(Phase.VALIDATION)
        applied = [c for c in self._status.changes if c.state == ChangeState.APPLIED]
        interleave = self._input.playbook.validation.interleave
        if interleave and workflow.patched("focused-validation"):
            await self._size_validation_load(baseline, applied)
        if interleave and workflow.patched("interleaved-validation"):
            comparison, candidate = await self._interleaved(applied)
        else:  # older campaigns replay with the assessment's baseline against one validation run
            candidate = await self._load_test(
                "validation", Role.TEST_ENGINEER, "Validation load test (same load as baseline)"
            )
            comparison = await self._activity(
                "compare_runs",
                CompareRequest(
                    campaign_id=self._input.campaign_id,
                    baseline=baseline,
                    candidate=candidate,
                    playbook=self._input.playbook,
                    target=self._input.target,
                ),
                Role.PERF_OPTIMIZER,
                "Compare before/after per endpoint (Mann-Whitney on raw samples)",
                result_type=CompareResult,
            )
        self._status.validation = candidate
        self._status.validation_rules = self._input.playbook.validation
        self._status.verdicts = comparison.verdicts
        self._status.slo_after = comparison.slo
        if workflow.patched("payload-attribution"):
            await self._payload_attribution(applied)
        payload_gain = any(b.verdict == Verdict.IMPROVED for c in applied for b in c.bytes_attribution)
        outcome = validation_outcome(
            comparison.verdicts, comparison.slo, self._input.playbook, payload_gain=payload_gain
        )
        verdicts = {v.endpoint: v for v in comparison.verdicts}
        if outcome in (ValidationOutcome.MET, ValidationOutcome.PARTIAL):  # a failed one fails whatever they say
            await self._settle_inconclusive(comparison.verdicts)
        if outcome in (ValidationOutcome.FAILED, ValidationOutcome.REGRESSED):
            summary = validation_summary(comparison.verdicts, comparison.slo)
            regressed = outcome == ValidationOutcome.REGRESSED
            self._alert(
                AlertKind.REGRESSION if regressed else AlertKind.VALIDATION_FAILED,
                f"{self._input.campaign_id}: validation {outcome.value}, changes rolled back",
                summary[:2500],
                changes=", ".join(c.lever for c in self._status.changes if c.state == ChangeState.APPLIED),
            )
            self._end(Phase.VALIDATION, outcome.value, summary)
            await self._unwind(f"validation {outcome.value}: {summary}")
            self._skip(Phase.DEPLOYMENT, "validation did not pass")
            raise _Stop(CampaignState.ROLLED_BACK, f"validation {outcome.value}: changes rolled back", summary)
        # A change whose endpoint did not improve did not prove itself, whatever the whole did.
        for change in reversed(changes_without_effect(applied, comparison.verdicts)):
            endpoints = change.endpoints or [change.endpoint]
            in_bytes = {b.endpoint: f"{b.endpoint}: {b.explanation}" for b in change.bytes_attribution}
            why = "; ".join(
                in_bytes.get(e) or (verdicts[e].explanation if e in verdicts else f"{e} was not measured")
                for e in endpoints
            )
            await self._undo(change, f"did not improve {', '.join(endpoints)}: {why}")
        if (
            self._input.playbook.validation.attribution in (Attribution.LEAVE_ONE_OUT, Attribution.AUTO)
            and self._input.playbook.validation.interleave
            and workflow.patched("leave-one-out")
        ):
            await self._leave_one_out(comparison.verdicts)
        kept = [c for c in self._status.changes if c.state == ChangeState.APPLIED]
        if not kept:
            self._end(Phase.VALIDATION, "no change proved itself", "every change was rolled back")
            self._alert(
                AlertKind.VALIDATION_FAILED, f"{self._input.campaign_id}: no change proved itself, rolled back",
                "; ".join(f"{c.lever}: {c.reason}" for c in self._status.changes if c.reason)[:2500],
            )  # fmt: skip
            self._skip(Phase.DEPLOYMENT, "nothing left to deploy")
            raise _Stop(CampaignState.ROLLED_BACK, "no change proved itself: rolled back")
        note = f"{outcome.value}: " + "; ".join(f"{v.endpoint} {v.verdict.value}" for v in comparison.verdicts)
        if outcome == ValidationOutcome.PARTIAL:
            note += f" (at or above the acceptance bar {self._input.playbook.validation.acceptance_bar:.0%}: accepted)"
        self._end(Phase.VALIDATION, outcome.value, note)
        self._validation_outcome = outcome
        return candidate

    async def _size_validation_load(self, baseline: LoadTestResult, applied: list[ChangeRecord]) -> None:
        """The endpoints the changes address in latency get a rate of their own in the validation's runs, enough
        requests per run to decide (the rest of the mix stays as background); payload endpoints are judged on
        their bytes and need no requests for it."""
        measured = {e.name for e in self._input.target.endpoints}
        endpoints = sorted(
            {e for c in applied for e in c.endpoints or [c.endpoint] if e in measured and e not in self._payload_of(c)}
        )
        if not endpoints:
            return
        request = ValidationLoadRequest(
            campaign_id=self._input.campaign_id, baseline_run_id=baseline.run_id, endpoints=endpoints,
            target=self._input.target, playbook=self._input.playbook,
        )  # fmt: skip
        load: ValidationLoad = await self._activity(
            "size_validation_load", request, Role.PERF_OPTIMIZER,
            f"Size the validation load: requests per run for {', '.join(endpoints)}", result_type=ValidationLoad,
        )  # fmt: skip
        self._status.validation_load = load
        self._focus = load.focus
        self._event(load.note)

    async def _interleaved(self, applied: list[ChangeRecord]) -> tuple[CompareResult, LoadTestResult]:
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
        bytes_only = {e for c in applied for e in self._payload_of(c)} - set(self._focus)

        def undecided(verdicts: list[EndpointVerdict]) -> list[str]:
            rules = self._input.playbook.validation
            pending = undecided_endpoints(verdicts, applied, rules, decidable_only=decidable_only)
            return [e for e in pending if not (decidable_only and e in bytes_only)]

        comparison, arms = await self._arms(
            applied, run, "validation",
            lambda rounds: f"Compare the arms after {rounds} runs each (hierarchical bootstrap, Mann-Whitney, Holm)",
            undecided,
            record=True,
        )  # fmt: skip
        return comparison, arms[True][-1]

    async def _arms(
        self,
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
        rules = self._input.playbook.validation
        duration = (rules.run_duration or self._input.playbook.load.duration).total_seconds()

        async def validation_run(label: str, summary: str) -> LoadTestResult:
            return await self._load_test(label, Role.TEST_ENGINEER, summary, duration_s=duration, focus=self._focus)

        measure = measure or validation_run
        first_rounds = rounds_first or rules.runs_per_arm
        arms: dict[bool, list[LoadTestResult]] = {False: [], True: []}
        rounds = 0
        while True:
            for in_place in (False, True) if rounds % 2 == 0 else (True, False):
                await self._put_changes(changes, in_place)
                label, summary = run(in_place, len(arms[in_place]) + 1)
                measured = await measure(label, summary)
                arms[in_place].append(measured)
                if record:
                    self._status.validation_runs.append(ArmRun(arm="after" if in_place else "before", run=measured))
            rounds += 1
            if rounds < first_rounds:
                continue
            comparison = await self._compare_arms(
                [r.run_id for r in arms[False]], [r.run_id for r in arms[True]], compare(rounds)
            )
            pending = undecided(comparison.verdicts) if undecided is not None else []
            if not pending or rounds >= rules.max_runs_per_arm:
                break
            self._event(f"{what}: {', '.join(pending)} undecided after {rounds} runs per arm: one more each")
        await self._put_changes(changes, True)
        return comparison, arms

    async def _payload_attribution(self, applied: list[ChangeRecord]) -> None:
        """A change that addresses payload findings (compression, a smaller answer) is judged on the bytes it
        saves there; its latency on a fast test link says little. As the playbook attributes: by endpoint,
        the answers with every change undone against all in place, credited to each change for its endpoints;
        leave-one-out, each change's endpoints without it and with it, the others in place."""
        rules = self._input.playbook.validation
        mine = {c.change_id: self._payload_of(c) for c in applied}
        judged = [c for c in applied if mine[c.change_id]]
        if not judged:
            return
        # (changes toggled, endpoints measured, changes credited, who) per measurement
        one_by_one = rules.attribution == Attribution.LEAVE_ONE_OUT or (
            rules.attribution == Attribution.AUTO and _share_an_endpoint([mine[c.change_id] for c in judged])
        )
        if one_by_one:
            measurements = [([c], mine[c.change_id], [c], c.lever) for c in judged]
        else:
            every = sorted({e for c in judged for e in mine[c.change_id]})
            measurements = [(applied, every, judged, "the changes")]
        # Two changes that save the same bytes (gzip, and an asset pipeline that compresses too) each look useless
        # with the other in place. One that saved nothing is held back while the next ones are measured, so that
        # one of them proves the saving; campaigns started before replay without it.
        redundancy = one_by_one and workflow.patched("payload-redundancy")
        held: list[ChangeRecord] = []
        for number, (toggled, endpoints, credited, who) in enumerate(measurements):
            measured = {}
            for in_place in (False, True):
                await self._put_changes(toggled, in_place)
                request = WireBytesRequest(
                    campaign_id=self._input.campaign_id, target=self._input.target, endpoints=endpoints
                )
                result: WireBytesResult = await self._activity(
                    "measure_wire_bytes", request, Role.PERF_OPTIMIZER,
                    f"Wire bytes of {', '.join(endpoints)} {'with' if in_place else 'without'} {who}",
                    result_type=WireBytesResult,
                )  # fmt: skip
                measured[in_place] = result.bytes
            for change in credited:
                change.bytes_attribution = [
                    bytes_verdict(e, measured[False][e], measured[True][e], rules) for e in mine[change.change_id]
                ]
                self._event(
                    f"payload: {change.lever}: "
                    + "; ".join(f"{b.endpoint} {b.verdict.value} ({b.explanation})" for b in change.bytes_attribution)
                )
            saved_nothing = [c for c in credited if not any(b.verdict == Verdict.IMPROVED for b in c.bytes_attribution)]
            if redundancy and workflow.patched("redundancy-by-endpoint"):
                # Per endpoint: gzip saves the export's bytes but nothing on the script an asset pipeline also
                # compresses; held back there, the pipeline is measured without it and proves that saving.
                later = {e for _, measured_next, _, _ in measurements[number + 1 :] for e in measured_next}
                saved_nothing = [
                    c for c in credited
                    if any(b.verdict != Verdict.IMPROVED and b.endpoint in later for b in c.bytes_attribution)
                ]  # fmt: skip
            if redundancy and saved_nothing:
                await self._put_changes(saved_nothing, False)
                held += saved_nothing
        if held:
            await self._put_changes(held, True)

    def _payload_of(self, change: ChangeRecord) -> list[str]:
        """The endpoints where ``change`` addresses a payload finding: judged there on its wire bytes."""
        return payload_endpoints(change, self._status.recommendations, self._status.findings)

    async def _compare_arms(self, before_run_ids: list[str], after_run_ids: list[str], summary: str) -> CompareResult:
        request = ArmsRequest(
            campaign_id=self._input.campaign_id, before_run_ids=before_run_ids, after_run_ids=after_run_ids,
            playbook=self._input.playbook,
        )  # fmt: skip
        return await self._activity("compare_arms", request, Role.PERF_OPTIMIZER, summary, result_type=CompareResult)

    async def _leave_one_out(self, verdicts: list[EndpointVerdict]) -> None:
        """Where several kept changes share an improved endpoint, the whole's gain says nothing of each one's:
        each of them is measured once more, interleaved, with the others in place and itself undone (more
        rounds while its gain there is still undecided). A change without which its endpoints are not faster
        by the improvement margin gave nothing and is undone."""
        improved = {v.endpoint for v in verdicts if v.verdict == Verdict.IMPROVED}
        kept = [c for c in self._status.changes if c.state == ChangeState.APPLIED]
        for change in kept:
            mine = set(change.endpoints or [change.endpoint]) & improved
            shared = any(
                mine & set(other.endpoints or [other.endpoint])
                for other in kept
                if other is not change and other.state == ChangeState.APPLIED  # not one undone meanwhile
            )
            if not shared or change.state != ChangeState.APPLIED:
                continue
            if any(b.verdict == Verdict.IMPROVED for b in change.bytes_attribution):
                continue  # proved itself in the bytes it saves; its latency there is the others' doing
            comparison = await self._without_one(change, mine)
            own = [v for v in comparison.verdicts if v.endpoint in mine]
            change.attribution = own
            if any(v.verdict == Verdict.IMPROVED for v in own):
                self._event(f"attribution: {change.lever} proved its own gain on {', '.join(sorted(mine))}")
                continue
            why = "; ".join(f"{v.endpoint}: {v.explanation}" for v in own) or "its endpoints were not measured"
            await self._undo(change, f"leave-one-out: without it the others give the same ({why})")

    async def _without_one(self, change: ChangeRecord, mine: set[str]) -> CompareResult:
        """Interleaved arms without and with one change, the others in place; more rounds while more runs
        could still show its gain on ``mine`` (its improved endpoints)."""
        rules = self._input.playbook.validation

        def run(in_place: bool, number: int) -> tuple[str, str]:
            side = "with" if in_place else "without"
            return (
                f"attribution-{change.change_id}-{side}-{number}",
                f"Attribution of {change.lever}: run {number} {side} it",
            )

        # Campaigns started before replay with the playbook's first rounds and extra rounds for any undecided
        # endpoint; since, two rounds first (the question is one change's gain, and the budget adds more while
        # it is undecided) and extra rounds only where the budget could decide.
        shorter = workflow.patched("decidable-rounds")

        def still_open(verdicts: list[EndpointVerdict]) -> list[str]:
            own = change.model_copy(update={"endpoints": sorted(mine)})
            return [e for e in undecided_endpoints(verdicts, [own], rules, decidable_only=shorter) if e in mine]

        comparison, _ = await self._arms(
            [change], run, f"attribution of {change.lever}",
            lambda _: f"Attribution of {change.lever}: with it against without it",
            # Campaigns started before the extra rounds replay with the playbook's runs per arm only.
            still_open if workflow.patched("adaptive-attribution") else None,
            rounds_first=min(2, rules.runs_per_arm) if shorter else None,
        )  # fmt: skip
        return comparison

    async def _put_changes(self, changes: list[ChangeRecord], in_place: bool) -> None:
        """Undo (newest first) or re-apply (in order) changes for an arm of a measurement. Their saga state
        stays applied: a failure meanwhile unwinds them, and undoing an undone lever does nothing."""
        todo = [c for c in changes if (c.change_id in self._measured_without) == in_place]
        for change in todo if in_place else list(reversed(todo)):
            await self._activity(
                "apply_lever" if in_place else "rollback_lever",
                self._lever_call(change).model_copy(update={"for_measurement": True}), change.role,
                f"{'Re-apply' if in_place else 'Undo'} {change.lever} ({change.change_id}) for a validation run",
                result_type=LeverOutcome, timeout=_LEVER_TIMEOUT, heartbeat=_LEVER_HEARTBEAT,
                retry=_STEP_RETRY if in_place else _UNDO_RETRY,
            )  # fmt: skip
            if in_place:
                self._measured_without.discard(change.change_id)
            else:
                self._measured_without.add(change.change_id)
        if todo:
            self._event(f"{len(todo)} change(s) {'re-applied' if in_place else 'undone'} for the next measurement")

    async def _settle_inconclusive(self, verdicts: list[EndpointVerdict]) -> None:
        """Verdicts still inconclusive after the run budget: the playbook accepts them, rolls back, or asks a
        person at the validation gate (approve: accept them as not worse; reject: roll every change back)."""
        unsure = [v for v in verdicts if v.verdict == Verdict.INCONCLUSIVE]
        if not unsure:
            return
        rules = self._input.playbook.validation
        runs = max(v.runs_after for v in unsure)
        listed = "; ".join(f"{v.endpoint}: {v.explanation}" for v in unsure)
        question = (
            f"{len(unsure)} endpoint(s) inconclusive after {runs} runs per arm ({', '.join(v.endpoint for v in unsure)})"
            ": approve to accept them as not worse, reject to roll every change back"
        )
        if rules.on_inconclusive == "accept":
            self._event(f"validation: accepted as not worse by the playbook: {listed}")
            return
        why = "the playbook rolls inconclusive validations back"
        if rules.on_inconclusive == "ask":
            gate = self._input.playbook.gates.get(Phase.VALIDATION) or Gate()
            decision = await self._gate(Phase.VALIDATION, gate=gate, question=question)
            if decision is not None and decision.decision != "rejected":
                self._event(f"validation: inconclusive endpoints accepted by {decision.by}: {listed}")
                return
            why = f"rejected by {decision.by}: {decision.note}" if decision is not None else "no answer"
        self._end(Phase.VALIDATION, "inconclusive", listed)
        self._alert(
            AlertKind.VALIDATION_FAILED, f"{self._input.campaign_id}: validation inconclusive, changes rolled back",
            f"{why}: {listed}"[:2500],
        )  # fmt: skip
        await self._unwind(f"validation inconclusive, not accepted ({why})")
        self._skip(Phase.DEPLOYMENT, "validation did not pass")
        raise _Stop(CampaignState.ROLLED_BACK, "validation inconclusive: changes rolled back", listed)

    async def _deployment(self, validated: LoadTestResult) -> None:
        self._begin(Phase.DEPLOYMENT)
        decision = await self._gate(Phase.DEPLOYMENT)
        if decision is not None and decision.decision == "rejected":
            self._end(Phase.DEPLOYMENT, "rejected", decision.note)
            await self._unwind(f"deployment rejected: {decision.note}")
            raise _Stop(CampaignState.ROLLED_BACK, "deployment rejected: changes rolled back", decision.note)
        if self._input.target.production is not None and workflow.patched("rollout"):
            await self._roll_out(validated)  # ends the campaign
        if workflow.patched("kept-reference"):
            validated = await self._guard_reference()
        guard = await self._bake(validated, "bake")
        if guard.breached and workflow.patched("guard-confirms"):
            # The reference and the bake measure the same changes minutes apart: a breach is either a regression
            # that lasts (a leak, a cache that stops serving) or a disturbance of the host for a few seconds. A
            # second window against the same reference tells them apart: a lasting one breaches it too.
            first = "; ".join(guard.reasons)
            self._event(f"guard: breached in the first bake window ({first}); measuring a second window to confirm")
            confirmed = await self._bake(validated, "bake-2")
            if confirmed.breached:
                guard = GuardResult(breached=True, reasons=[*confirmed.reasons, f"(first window: {first})"])
            else:
                self._event(f"guard: held in the second window; the first window's breach did not last ({first})")
                guard = confirmed
        self._status.guard = guard
        if guard.breached:
            reasons = "; ".join(guard.reasons)
            self._alert(
                AlertKind.GUARD_BREACHED, f"{self._input.campaign_id}: guard breached while baking, rolled back",
                reasons[:2500],
            )  # fmt: skip
            self._end(Phase.DEPLOYMENT, "guard breached", reasons)
            await self._unwind(f"guard breached: {reasons}")
            raise _Stop(CampaignState.ROLLED_BACK, "guard breached during bake: changes rolled back", reasons)
        for change in self._status.changes:
            if change.state == ChangeState.APPLIED:
                change.state = ChangeState.KEPT
        kept = [c.lever for c in self._status.changes if c.state == ChangeState.KEPT]
        bake = self._input.playbook.deployment.bake.total_seconds()
        self._end(Phase.DEPLOYMENT, "baked", f"guard held for {bake:g}s; kept: {', '.join(kept)}")
        label = (
            "targets met" if self._validation_outcome == ValidationOutcome.MET else "partial: accepted and monitored"
        )
        raise _Stop(CampaignState.COMPLETED, f"{label}; {len(kept)} change(s) kept", "guard held during the bake")

    async def _bake(self, validated: LoadTestResult, label: str) -> GuardResult:
        """One bake window: the kept changes watched under the production mix, judged against ``validated``."""
        bake = self._input.playbook.deployment.bake.total_seconds()
        watched = await self._load_test(
            # The same warm-up as the other runs: cold connections would read as a regression.
            label,
            Role.DEVOPS_ENGINEER,
            f"Bake: watch the kept changes for {bake:g}s",
            duration_s=bake,
        )
        guard: GuardResult = await self._activity(
            "check_guard",
            GuardRequest(
                campaign_id=self._input.campaign_id, validated=validated, watch=watched, playbook=self._input.playbook
            ),
            Role.DEVOPS_ENGINEER,
            "Guard: error rate and p95 against the validated values",
            result_type=GuardResult,
        )
        return guard

    async def _guard_reference(self) -> LoadTestResult:
        """The bake's reference: exactly the kept changes (validation may have undone some after its last run,
        and its runs were focused on the endpoints under test), under the same mix of load as the bake."""
        rules = self._input.playbook.validation
        duration = (rules.run_duration or self._input.playbook.load.duration).total_seconds()
        reference = await self._load_test(
            "guard-reference", Role.DEVOPS_ENGINEER, "Guard reference: the kept changes, the production mix of load",
            duration_s=duration,
        )  # fmt: skip
        self._status.guard_reference = reference
        return reference

    async def _roll_out(self, validated: LoadTestResult) -> None:
        """The kept changes go to production in the playbook's steps (a child workflow, promote/abort by update);
        a breach rolls production back, and the changes here too."""
        kept = [c for c in self._status.changes if c.state == ChangeState.APPLIED]
        changes = []
        for change in kept:
            lever = next(r.lever for r in self._status.recommendations if r.id == change.recommendation_id)
            assert lever is not None
            changes.append(
                RolloutChange(change_id=change.change_id, lever=lever, role=change.role, parameter=change.parameter)
            )
        steps = ", ".join(f"{s:g}%" for s in self._input.playbook.deployment.rollout.steps)
        self._event(
            f"rolling {len(changes)} change(s) out to production in steps of {steps} ({rollout_id(self._input.campaign_id)})"
        )
        result: RolloutResult = await workflow.execute_child_workflow(
            "RolloutWorkflow",
            RolloutInput(
                campaign_id=self._input.campaign_id, changes=changes, production=self._input.target.in_production(),
                playbook=self._input.playbook, validated=validated, task_queue_prefix=self._input.task_queue_prefix,
            ),
            id=rollout_id(self._input.campaign_id),
            result_type=RolloutResult,
            static_summary=f"Rollout of {self._input.campaign_id} to production ({steps})",
        )  # fmt: skip
        self._status.rollout = result
        guards = [step.guard for step in result.steps if step.guard is not None]
        if guards:
            self._status.guard = guards[-1]
        if result.outcome != "completed":
            self._end(Phase.DEPLOYMENT, f"rollout {result.outcome}", result.reason)
            if result.outcome == "rolled-back":
                self._alert(
                    AlertKind.GUARD_BREACHED, f"{self._input.campaign_id}: rollout rolled back", result.reason[:2500]
                )
            await self._unwind(f"rollout {result.outcome}: {result.reason}")
            raise _Stop(CampaignState.ROLLED_BACK, f"rollout {result.outcome}: changes rolled back", result.reason)
        for change in kept:
            change.state = ChangeState.KEPT
        names = ", ".join(c.lever for c in kept)
        self._end(Phase.DEPLOYMENT, "rolled out", f"in production at {steps}, the guard held; kept: {names}")
        raise _Stop(
            CampaignState.COMPLETED,
            f"rolled out to production; {len(kept)} change(s) kept",
            "the guard held at every step",
        )

    # ------------------------------------------------------------------ changes (saga)

    async def _apply(self, recommendation: Recommendation) -> None:
        await self._apply_change(self._register(recommendation), recommendation)

    def _register(self, recommendation: Recommendation) -> ChangeRecord:
        """A change for the recommendation, in the saga before anything is applied: a crash mid-apply still gets
        it undone."""
        assert recommendation.lever is not None
        change = ChangeRecord(
            change_id=f"C{len(self._status.changes) + 1}",
            recommendation_id=recommendation.id,
            lever=recommendation.lever.name,
            kind=recommendation.lever.kind,
            role=recommendation.role,
            endpoint=recommendation.endpoint,
            endpoints=recommendation.endpoints,
        )
        self._status.changes.append(change)
        return change

    async def _apply_change(self, change: ChangeRecord, recommendation: Recommendation) -> None:
        assert recommendation.lever is not None
        outcome: LeverOutcome = await self._activity(
            "apply_lever",
            self._lever_call(change, recommendation),
            recommendation.role,
            f"Apply {recommendation.lever.kind} lever {recommendation.lever.name} ({recommendation.id})",
            result_type=LeverOutcome,
            timeout=_LEVER_TIMEOUT,
            heartbeat=_LEVER_HEARTBEAT,
        )
        change.state = ChangeState.APPLIED
        change.applied_at = workflow.now()
        self._event(outcome.detail)

    def _lever_call(self, change: ChangeRecord, recommendation: Recommendation | None = None) -> LeverCall:
        if recommendation is None:
            recommendation = next(r for r in self._status.recommendations if r.id == change.recommendation_id)
        assert recommendation.lever is not None
        return LeverCall(
            campaign_id=self._input.campaign_id,
            change_id=change.change_id,
            lever=recommendation.lever,
            target=self._input.target,
            parameter=change.parameter,
        )

    # ------------------------------------------------------------------ functional safety (test-engineer)

    async def _behaves(self) -> BehaviourCheck:
        return await self._activity(
            "check_behaviour",
            BehaviourRequest(campaign_id=self._input.campaign_id, target=self._input.target),
            Role.TEST_ENGINEER,
            "Replay the recorded requests and scenarios",
            result_type=BehaviourCheck,
        )

    async def _keep_behaviour(self) -> None:
        """A change that alters what the target answers is rolled back, however much faster it is. With the
        applied changes in place, replay; on a difference, undo them newest first until the answers are the
        recorded ones again: the last one undone is the culprit, the ones undone before it are applied again."""
        check = await self._behaves()
        if check.same:
            self._event("behaviour unchanged by the applied changes")
            return
        innocent: list[ChangeRecord] = []
        for change in reversed([c for c in self._status.changes if c.state == ChangeState.APPLIED]):
            await self._undo(change, "undone while looking for the change that altered the answers")
            after = await self._behaves()
            if not after.same:
                innocent.append(change)
                continue
            change.reason = "changed what the service answers: " + "; ".join(check.differences)[:1500]
            self._event(f"{change.lever} changed the answers and stays undone: {check.differences[0][:300]}")
            break
        else:
            self._event("the answers differ even with every change undone: the target changed by itself")
        for change in reversed(innocent):
            recommendation = next(r for r in self._status.recommendations if r.id == change.recommendation_id)
            change.reason, change.rolled_back_at = "", None
            await self._apply_change(change, recommendation)

    # ------------------------------------------------------------------ tuning (devops-engineer)

    async def _tune(self, recommendation: Recommendation) -> None:
        """Short trial load tests on the lever's endpoints, each at the value the optimizer suggests from the
        trials so far, within the playbook's budget; the best value stays, or the lever is undone when the
        baseline was best. Every trial is a change of the target and stays in the saga."""
        lever = recommendation.lever
        assert lever is not None and lever.parameter is not None
        tuning = self._input.playbook.tuning
        change = self._register(recommendation)
        if tuning.trials == 0:
            change.parameter = lever.parameter.value(lever.parameter.default)
            await self._apply_change(change, recommendation)
            return
        endpoints = recommendation.endpoints or [recommendation.endpoint]
        target = self._input.target
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
                for c in self._status.changes
                if c.state == ChangeState.APPLIED
                and c is not change
                and set(c.endpoints or [c.endpoint]) & set(endpoints)
            ]
        if held_back:
            await self._put_changes(held_back, False)
            self._event(
                f"{lever.name}: trials run with {', '.join(c.lever for c in held_back)} held back (same endpoints)"
            )
        await self._run_trials(change, recommendation, trial_target)
        await self._keep_best_trial(change, recommendation, trial_target, proven=proves_itself)
        if held_back:
            await self._put_changes(held_back, True)

    async def _run_trials(self, change: ChangeRecord, recommendation: Recommendation, trial_target: Target) -> None:
        """Trials at the values the optimizer suggests from the trials so far, within the playbook's budget."""
        lever = recommendation.lever
        assert lever is not None and lever.parameter is not None
        tuning = self._input.playbook.tuning
        failures = 0
        for number in range(1, tuning.trials + 1):
            suggestion: SuggestResult = await self._activity(
                "suggest_value",
                SuggestRequest(
                    campaign_id=self._input.campaign_id, lever=lever.name, parameter=lever.parameter,
                    trials=change.trials,
                ),
                Role.DEVOPS_ENGINEER,
                f"Tune {lever.name}: value for trial {number} of {tuning.trials}",
                result_type=SuggestResult,
            )  # fmt: skip
            trial = await self._trial(change, recommendation, suggestion.value, number, trial_target)
            change.trials.append(trial)
            measured = f"p95 {trial.p95_ms:.1f} ms" if trial.p95_ms is not None else "no p95"
            self._event(
                f"{lever.name} trial {number}: value {trial.value:g} ({suggestion.why}): {measured}, "
                f"errors {trial.error_rate:.1%}{' - failed: ' + trial.note if trial.failed else ''}"
            )
            failures += trial.failed
            if failures > tuning.max_failed_trials:
                self._event(
                    f"{lever.name}: {failures} failed trials, more than {tuning.max_failed_trials}: tuning stops"
                )
                break

    async def _keep_best_trial(
        self, change: ChangeRecord, recommendation: Recommendation, trial_target: Target, *, proven: bool
    ) -> None:
        """The best trial's value stays when it is not the baseline's and (``proven``) beats the baseline value
        beyond chance when both are measured again; otherwise the lever is undone."""
        lever = recommendation.lever
        assert lever is not None and lever.parameter is not None
        best = best_trial(change.trials)
        baseline = lever.parameter.value(lever.parameter.baseline or 0)
        if best is None or best.value == baseline:
            why = (
                "no trial succeeded"
                if best is None
                else f"the baseline {baseline:g} was best (p95 {best.p95_ms:.1f} ms)"
            )
            await self._undo(change, f"tuning: {why}")
            return
        change.parameter = best.value
        await self._apply_change(change, recommendation)
        if proven:
            doubt = await self._beats_baseline(change, best, baseline, trial_target)
            if doubt:
                await self._undo(change, f"tuning: {doubt}")
                return
        self._event(f"{lever.name} tuned to {best.value:g}: p95 {best.p95_ms:.1f} ms in trial")

    async def _beats_baseline(self, change: ChangeRecord, best: Trial, baseline: float, trial_target: Target) -> str:
        """Empty when the chosen value beats the baseline value beyond chance, else why not. The best of a few
        noisy trials looks better than it is (it was chosen for looking best), so both values are measured
        afresh, interleaved (baseline, chosen, chosen, baseline), and compared as validation compares: some
        endpoint of the lever with its p95 interval below 1, Mann-Whitney significant and a gain of at least
        ``min_effect``. A baseline whose trial failed (errors, no answer) is beaten by any value that did not."""
        if not any(t.value == baseline and not t.failed for t in change.trials):
            self._event(f"{change.lever}: the baseline {baseline:g} failed its trial; {best.value:g} did not")
            return ""
        tuning = self._input.playbook.tuning
        rate = tuning.rate or self._input.playbook.load.rate
        duration, warmup = tuning.trial_duration.total_seconds(), tuning.trial_warmup.total_seconds()

        async def measure(label: str, summary: str) -> LoadTestResult:
            shape = ShapeRun(label, rate, duration, warmup)
            return await self._load_test(label, Role.DEVOPS_ENGINEER, summary, shape=shape, target=trial_target)

        def run(in_place: bool, number: int) -> tuple[str, str]:
            value = best.value if in_place else baseline
            return (
                f"confirm-{change.change_id}-{value:g}-{number}",
                f"Confirm {change.lever} at {value:g}, run {number}",
            )

        comparison, _ = await self._arms(
            [change], run, f"tuning of {change.lever}",
            lambda _: f"Tune {change.lever}: {best.value:g} against the baseline {baseline:g}",
            None, measure=measure, rounds_first=2,
        )  # fmt: skip
        rules = self._input.playbook.validation
        # Beyond chance, and by the playbook's minimum effect: a few percent is what back-to-back runs differ by.
        beaten = [
            v for v in comparison.verdicts
            if v.p_value_faster < rules.significance and v.ratio_high is not None and v.ratio_high < 1
            and (1 - (v.ratio or 1)) * v.before.p95 >= rules.effect_floor_ms(v.before.p95)
        ]  # fmt: skip
        found = "; ".join(
            f"{v.endpoint} {v.ratio_text()}, p faster {v.p_value_faster:.2g}" for v in comparison.verdicts
        )
        if beaten:
            self._event(f"{change.lever}: {best.value:g} beat the baseline {baseline:g} beyond chance ({found})")
            return ""
        return (
            f"{best.value:g} did not beat the baseline {baseline:g} beyond chance, measured again interleaved "
            f"(p < {rules.significance:g}, the p95 interval below 1 and a gain of {rules.min_effect} asked; "
            f"{found or 'nothing measured'})"
        )

    async def _trial(
        self, change: ChangeRecord, recommendation: Recommendation, value: float, number: int, target: Target
    ) -> Trial:
        """Set the lever to ``value``, load its endpoints briefly, and say how they did."""
        tuning = self._input.playbook.tuning
        change.parameter = value
        try:
            await self._apply_change(change, recommendation)
        except ActivityError as failure:
            return Trial(value=value, failed=True, note=f"could not set it: {failure.cause}")
        label = f"trial-{change.change_id}-{number}"
        shape = ShapeRun(
            label, tuning.rate or self._input.playbook.load.rate, tuning.trial_duration.total_seconds(),
            tuning.trial_warmup.total_seconds(),
        )  # fmt: skip
        try:
            result = await self._load_test(
                label, Role.DEVOPS_ENGINEER, f"Trial {number} at {value:g}", shape=shape, target=target
            )
        except ActivityError as failure:
            return Trial(value=value, failed=True, note=f"the trial load test failed: {failure.cause}")
        requests = sum(s.requests for s in result.endpoints)
        errors = sum(s.errors for s in result.endpoints) / requests if requests else 1.0
        limit = min(self._input.playbook.slo.for_endpoint(e.name).max_error_rate for e in target.endpoints)
        p95 = max((s.p95 for s in result.endpoints), default=None)
        if p95 is None or errors > limit:
            note = "nothing answered" if p95 is None else f"error rate {errors:.1%} over the SLO's {limit:.1%}"
            return Trial(value=value, p95_ms=p95, error_rate=errors, failed=True, note=note, run_id=result.run_id)
        return Trial(value=value, p95_ms=p95, error_rate=errors, run_id=result.run_id)

    async def _undo(self, change: ChangeRecord, reason: str) -> None:
        """Roll back one change, once: its state says whether that already happened."""
        if change.state in (ChangeState.ROLLED_BACK, ChangeState.FAILED):
            return
        try:
            outcome: LeverOutcome = await self._activity(
                "rollback_lever",
                self._lever_call(change),
                change.role,
                f"Roll back {change.lever} ({change.change_id}): {reason}"[:200],
                result_type=LeverOutcome,
                retry=_UNDO_RETRY,
                timeout=_LEVER_TIMEOUT,
                heartbeat=_LEVER_HEARTBEAT,
            )
        except ActivityError as failure:
            change.state = ChangeState.FAILED
            change.reason = f"rollback failed: {failure.cause}; reason for rollback: {reason}"
            self._event(f"could not undo {change.lever}: {failure.cause}")
            return
        change.state = ChangeState.ROLLED_BACK
        change.rolled_back_at = workflow.now()
        change.reason = reason
        self._event(f"rolled back {change.lever}: {reason} ({outcome.detail})")

    async def _unwind(self, reason: str) -> None:
        """Undo every change still in effect, newest first (each at most once)."""
        for change in reversed(self._status.changes):
            if change.state in (ChangeState.PENDING, ChangeState.APPLIED, ChangeState.KEPT):
                await self._undo(change, reason)

    # ------------------------------------------------------------------ gates

    async def _gate_or_abort(self, phase: Phase) -> None:
        decision = await self._gate(phase)
        if decision is not None and decision.decision == "rejected":
            self._end(phase, "rejected", decision.note)
            await self._unwind(f"{phase.value} rejected: {decision.note}")
            raise _Stop(CampaignState.REJECTED, f"{phase.value} rejected: changes rolled back", decision.note)

    async def _gate(self, phase: Phase, *, gate: Gate | None = None, question: str = "") -> GateDecision | None:
        """Wait for a person if the playbook gates this phase (or ``gate`` is given); None when it does not."""
        gate = gate or self._input.playbook.gates.get(phase)
        if gate is None:
            return None
        if self._input.auto_approve_as:
            decision = GateDecision(
                phase=phase, decision="auto-approved", by=self._input.auto_approve_as, at=workflow.now(),
                note="approved automatically (--auto-approve or a non-interactive run)",
            )  # fmt: skip
            self._status.gates.append(decision)
            self._event(f"{phase.value} gate auto-approved as {self._input.auto_approve_as}")
            return decision
        now = workflow.now()
        self._answer = None
        self._status.waiting = GateState(
            phase=phase, since=now, deadline=now + gate.timeout, approvers=list(self._input.playbook.approvers),
            question=question,
        )  # fmt: skip
        self._set_state(CampaignState.WAITING)
        asked = f": {question}" if question else ""
        self._event(
            f"waiting for approval of {phase.value} (until {self._status.waiting.deadline:%Y-%m-%d %H:%M}Z){asked}"
        )
        self._alert(
            AlertKind.GATE_WAITING,
            f"{self._input.campaign_id}: {phase.value} waits for approval",
            question or f"ratchet approve {self._input.campaign_id} --phase {phase.value} --as NAME",
            phase=phase.value,
            deadline=f"{self._status.waiting.deadline:%Y-%m-%d %H:%M}Z",
            approvers=", ".join(self._status.waiting.approvers),
        )
        answered = await self._wait_for_answer(gate.timeout)
        if not answered and gate.on_timeout == TimeoutAction.ESCALATE:
            waiting = self._status.waiting
            waiting.escalated = True
            waiting.approvers = sorted({*waiting.approvers, *gate.escalate_to})
            waiting.deadline = workflow.now() + gate.escalation_timeout
            self._event(f"{phase.value} gate escalated to {', '.join(gate.escalate_to) or 'the same approvers'}")
            self._refresh_details()
            answered = await self._wait_for_answer(gate.escalation_timeout)
        self._status.waiting = None
        self._set_state(CampaignState.RUNNING)
        if not answered:
            decision = GateDecision(
                phase=phase, decision="timed-out", by="", at=workflow.now(), note="no answer in time"
            )
            self._status.gates.append(decision)
            self._end(phase, "timed out", "no approval in time")
            await self._unwind(f"{phase.value} gate timed out")
            raise _Stop(CampaignState.ABORTED, f"{phase.value} gate timed out: aborted", "changes rolled back")
        assert self._answer is not None
        self._status.gates.append(self._answer)
        return self._answer

    async def _wait_for_answer(self, timeout: timedelta) -> bool:
        try:
            await workflow.wait_condition(lambda: self._answer is not None, timeout=timeout)
        except TimeoutError:
            return False
        return True

    def _refuse(self, phase: Phase | None, approver: str, only: list[str] | None = None) -> str | None:
        """Why an answer cannot be taken now, or None when it can."""
        waiting = self._status.waiting
        if waiting is None or self._answer is not None:
            return f"no phase is waiting for approval (current phase: {self._status.phase or 'none'})"
        if phase is not None and phase != waiting.phase:
            return f"phase {phase.value} is not waiting for approval; {waiting.phase.value} is"
        if approver not in waiting.approvers:
            return f"{approver!r} is not an approver of this campaign; approvers: {', '.join(waiting.approvers)}"
        if only is not None:
            if waiting.phase != Phase.PLANNING:
                return "choosing recommendations (--only) applies to the planning gate only"
            known = {r.id for r in self._status.recommendations}
            unknown = sorted(set(only) - known)
            if unknown:
                return f"unknown recommendation id(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        return None

    def _take_approval(self, answer: ApprovalInput) -> str:
        self._answer = GateDecision(
            phase=answer.phase, decision="approved", by=answer.approver, at=workflow.now(),
            only=answer.only, note=answer.comment,
        )  # fmt: skip
        chosen = f" (only {', '.join(answer.only)})" if answer.only else ""
        self._event(f"{answer.phase.value} approved by {answer.approver}{chosen}")
        return f"{answer.phase.value} approved by {answer.approver}{chosen}"

    def _take_rejection(self, answer: RejectionInput) -> str:
        assert self._status.waiting is not None
        phase = self._status.waiting.phase
        self._answer = GateDecision(
            phase=phase, decision="rejected", by=answer.approver, at=workflow.now(), note=answer.reason
        )
        self._event(f"{phase.value} rejected by {answer.approver}: {answer.reason}")
        return f"{phase.value} rejected by {answer.approver}"

    @workflow.update(name="approve")
    async def approve(self, answer: ApprovalInput) -> str:
        """Approve the waiting phase (optionally only some recommendations)."""
        return self._take_approval(answer)

    @approve.validator
    def _validate_approve(self, answer: ApprovalInput) -> None:
        refusal = self._refuse(answer.phase, answer.approver, answer.only)
        if refusal:
            raise ValueError(refusal)

    @workflow.update(name="reject")
    async def reject(self, answer: RejectionInput) -> str:
        """Reject the waiting phase with a reason."""
        return self._take_rejection(answer)

    @reject.validator
    def _validate_reject(self, answer: RejectionInput) -> None:
        refusal = self._refuse(answer.phase, answer.approver)
        if refusal:
            raise ValueError(refusal)

    @workflow.signal(name="approve_signal")
    def approve_signal(self, answer: ApprovalInput) -> None:
        """Fire-and-forget approval; refused answers are logged in the campaign's events."""
        refusal = self._refuse(answer.phase, answer.approver, answer.only)
        if refusal:
            self._event(f"ignored approval signal from {answer.approver}: {refusal}")
        else:
            self._take_approval(answer)

    @workflow.signal(name="reject_signal")
    def reject_signal(self, answer: RejectionInput) -> None:
        """Fire-and-forget rejection; refused answers are logged in the campaign's events."""
        refusal = self._refuse(answer.phase, answer.approver)
        if refusal:
            self._event(f"ignored rejection signal from {answer.approver}: {refusal}")
        else:
            self._take_rejection(answer)

    @workflow.query(name="status")
    def status(self) -> CampaignStatus:
        """The campaign's full status."""
        return self._status

    # ------------------------------------------------------------------ steps

    async def _load_test(
        self,
        label: str,
        role: Role,
        summary: str,
        *,
        duration_s: float | None = None,
        shape: ShapeRun | None = None,
        target: Target | None = None,
        focus: dict[str, float] | None = None,
    ) -> LoadTestResult:
        load = self._input.playbook.load
        if shape is None:
            duration = duration_s if duration_s is not None else load.duration.total_seconds()
            shape = ShapeRun(label, load.rate, duration, load.warmup.total_seconds())
        request = LoadTestRequest(
            campaign_id=self._input.campaign_id,
            label=label,
            target=target or self._input.target,
            rate=shape.rate,
            duration_s=shape.duration_s,
            warmup_s=shape.warmup_s,
            max_vus=load.max_vus,
            request_timeout_s=load.request_timeout.total_seconds(),
            stress=shape.stress,
            bounded_memory=shape.bounded_memory,
            focus=focus or {},
        )
        length = timedelta(seconds=shape.duration_s + shape.warmup_s + 120)
        if load.generators == 1:
            return await self._activity(
                "run_load_test", request, role, f"{summary}: {shape.describe()}",
                result_type=LoadTestResult, timeout=length, heartbeat=timedelta(seconds=20),
            )  # fmt: skip
        # Split: every generator's k6 waits paused, then resumes at one shared instant far enough ahead
        # for all of them to have started (their activities may wait in the queue for a worker).
        start_at = workflow.now() + _GENERATOR_LEAD
        count = load.generators
        generators = await asyncio.gather(
            *(
                self._activity(
                    "generate_load",
                    GeneratorRequest(request=request, index=index, count=count, start_at=start_at),
                    Role.LOAD_GENERATOR,
                    f"{summary}: generator {index + 1} of {count}, {shape.describe()} in all",
                    result_type=GeneratorResult,
                    timeout=length + _GENERATOR_LEAD,
                    heartbeat=timedelta(seconds=20),
                )
                for index in range(count)
            )
        )
        return await self._activity(
            "summarize_load_test", SplitLoadTest(request=request, generators=list(generators)), role,
            f"{summary}: merge the samples of {count} generators", result_type=LoadTestResult,
            timeout=timedelta(minutes=10), heartbeat=timedelta(seconds=20),
        )  # fmt: skip

    async def _activity(
        self,
        name: str,
        argument: Any,
        role: Role,
        summary: str,
        *,
        result_type: type[Any],
        timeout: timedelta = _QUICK,
        heartbeat: timedelta | None = None,
        retry: RetryPolicy = _STEP_RETRY,
    ) -> Any:
        # The shield keeps the workflow's cancellation from being swallowed by an activity that completes
        # anyway: the campaign sees it here, at once, whatever the activity does. Then a measurement is
        # told to stop (its heartbeat stops k6, which keeps the partial samples) and awaited; a lever is
        # never interrupted, as a half-applied change is worse than a finished one: the saga undoes it.
        handle = workflow.start_activity(
            name,
            argument,
            task_queue=f"{self._input.task_queue_prefix}-{role.value}",
            start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat,
            retry_policy=retry,
            result_type=result_type,
            summary=summary,
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        try:
            return await asyncio.shield(handle)
        except asyncio.CancelledError:
            if name not in _CHANGES_TARGET:
                handle.cancel()
            with contextlib.suppress(ActivityError, asyncio.CancelledError):
                await handle
            raise

    # ------------------------------------------------------------------ bookkeeping

    def _phase(self, phase: Phase) -> PhaseRecord:
        return next(p for p in self._status.phases if p.phase == phase)

    def _begin(self, phase: Phase) -> None:
        record = self._phase(phase)
        record.started_at = workflow.now()
        record.outcome = "running"
        self._status.phase = phase
        self._event(f"{record.title} started")
        workflow.upsert_search_attributes([sa.PHASE.value_set(phase.value)])
        self._refresh_details()

    def _end(self, phase: Phase, outcome: str, note: str = "") -> None:
        record = self._phase(phase)
        record.ended_at = workflow.now()
        record.outcome = outcome
        record.note = note
        self._event(f"{record.title}: {outcome}" + (f" - {note}" if note else ""))
        self._refresh_details()

    def _skip(self, phase: Phase, why: str) -> None:
        record = self._phase(phase)
        if record.outcome in ("pending",):
            record.outcome = "skipped"
            record.note = why
            self._event(f"{record.title} skipped: {why}")

    def _change_note(self, recommendations: list[Recommendation]) -> str:
        if not recommendations:
            return "no change of this kind was approved"
        return "applied " + ", ".join(r.lever.name for r in recommendations if r.lever)

    def _event(self, message: str) -> None:
        self._status.events.append(Event(at=workflow.now(), message=message))

    def _set_state(self, state: CampaignState) -> None:
        self._status.state = state
        workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])
        self._refresh_details()

    def _refresh_details(self) -> None:
        """Markdown shown in the Temporal UI's 'current details'."""
        s = self._status
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

    def _alert(self, kind: AlertKind, title: str, text: str, **facts: str) -> None:
        """Tell the playbook's webhook, when it wants this kind, beside the campaign: a slow or failing webhook
        never holds a phase up nor fails the campaign (the outcome is an event either way)."""
        if not workflow.patched("alerts"):  # older campaigns replay without alerts
            return
        fields = {"target": self._input.target.name, "playbook": self._input.playbook.name, **facts}
        request = alert_request(
            self._input.playbook.alerts, campaign_id=self._input.campaign_id, kind=kind, title=title, text=text,
            fields=fields,
        )  # fmt: skip
        if request is not None:
            self._alerts.append(asyncio.ensure_future(self._send_alert(request)))

    async def _send_alert(self, request: AlertRequest) -> None:
        try:
            result: AlertResult = await self._activity(
                "send_alert", request, Role.PERF_OPTIMIZER, f"Alert ({request.kind.value}): {request.title}"[:200],
                result_type=AlertResult, timeout=timedelta(seconds=request.timeout_s + 5), retry=_ALERT_RETRY,
            )  # fmt: skip
            self._event(f"alert {request.kind.value} sent ({result.detail or result.status})")
        except ActivityError as failure:
            self._event(f"alert {request.kind.value} not delivered: {failure.cause}")

    async def _record(self) -> None:
        await self._activity(
            "record_campaign",
            self._status,
            Role.PERF_OPTIMIZER,
            "Record the campaign in the store",
            result_type=type(None),
        )

    async def _finish(self, state: CampaignState, outcome: str, detail: str = "") -> None:
        for record in self._status.phases:
            if record.outcome == "running":
                record.outcome, record.ended_at = "interrupted", workflow.now()
            self._skip(record.phase, "not reached")
        self._status.outcome = outcome
        self._status.outcome_detail = detail
        if self._alerts:
            await asyncio.gather(*self._alerts, return_exceptions=True)  # each reports its failure as an event
        self._set_state(state)
        self._event(f"campaign {state.value}: {outcome}")
        try:
            report: ReportResult = await self._activity(
                "write_report", ReportRequest(status=self._status), Role.PERF_OPTIMIZER, "Write the HTML and Markdown report",
                result_type=ReportResult,
            )  # fmt: skip
            self._status.report_html = report.html_path
            self._status.report_markdown = report.markdown_path
        except ActivityError as failure:
            self._event(f"report could not be written: {failure.cause}")
        self._refresh_details()
        await self._record()


def _share_an_endpoint(endpoint_lists: list[list[str]]) -> bool:
    every = [e for endpoints in endpoint_lists for e in set(endpoints)]
    return len(every) != len(set(every))


def _tunable(recommendation: Recommendation) -> bool:
    lever = recommendation.lever
    return lever is not None and lever.parameter is not None and lever.parameter.kind == "range"
