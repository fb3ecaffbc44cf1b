"""Planning and validation steps of the perf-optimizer: pure analysis over stored evidence."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import psutil
from sqlmodel import select
from temporalio import activity

from ratchet.analysis import learning, planning
from ratchet.analysis.calibration import endpoint_noise, recommended_margin, recommended_runs_per_arm
from ratchet.analysis.cost import RunUsage, compare_costs
from ratchet.analysis.decisions import guard_check
from ratchet.analysis.disproved import disproofs, hold_back_disproved
from ratchet.analysis.load_shapes import SOAK
from ratchet.analysis.power import FOCUS_SHARE_CAP, focus_rates, requests_per_run
from ratchet.analysis.server_side import server_side_arms
from ratchet.analysis.service_verdicts import after_checks, service_verdicts
from ratchet.analysis.significance import judge_endpoints, tail_excess
from ratchet.analysis.slo import check_slos
from ratchet.analysis.soak import compare_soaks, soak_drift
from ratchet.analysis.tuning import suggest
from ratchet.analysis.watch import degradations
from ratchet.config.common import FindingType
from ratchet.contracts import (
    ArmsRequest,
    CalibrateRequest,
    CalibrationResult,
    CompareRequest,
    CompareResult,
    CostComparison,
    GuardRequest,
    GuardResult,
    PlanRequest,
    PlanResult,
    SoakDrift,
    SuggestRequest,
    SuggestResult,
    ValidationLoad,
    ValidationLoadRequest,
    WatchJudgement,
    WatchJudgeRequest,
)
from ratchet.errors import first_line
from ratchet.resources.sampler import resource_totals
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.outcomes import campaign_baseline, change_outcomes, finished_statuses
from ratchet.store.samples import (
    durations_by_endpoint,
    endpoint_arms,
    endpoint_durations,
    endpoint_stats,
    timed_durations,
)
from ratchet.store.server_time import server_durations
from ratchet.store.service_series import arm_series
from ratchet.store.tables import FindingRecord, RecommendationRecord
from ratchet.store.usage import run_usage


class AnalysisActivities:
    """plan_changes, compare_runs, compare_arms, size_validation_load, check_guard and suggest_value."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _learned_gains(self, request: PlanRequest) -> tuple[learning.LearnedGains | None, str]:
        """A gain model of the target's earlier outcomes, bound to this campaign's baseline, when there are
        enough outcomes and it predicted them better than the rules; and the sentence that says which."""
        try:
            with session_for(self.settings.resolved_store_url) as session:
                outcomes = change_outcomes(session=session, target=request.target.name, exclude=request.campaign_id)
                baselines = campaign_baseline(session=session, campaign_id=request.campaign_id)
            model = learning.train(outcomes)
        except Exception as exc:  # learning is a refinement: the rules still plan without it
            activity.logger.exception("learning gains for %s failed", request.campaign_id)
            return None, f"rule-based: learning from earlier outcomes failed ({first_line(exc)})"
        sentence = learning.describe(model, len(outcomes))
        if model is None or not model.beats_rules:
            return None, sentence
        return learning.LearnedGains(model, baselines), sentence

    def _plan(self, request: PlanRequest) -> PlanResult:
        learned, gain_model = self._learned_gains(request)
        recommendations = planning.plan(
            request.findings, request.target, limit=request.playbook.max_recommendations, learned=learned
        )
        notes: list[str] = []
        if not request.retry_disproved:
            with session_for(self.settings.resolved_store_url) as session:
                earlier = finished_statuses(session=session, target=request.target.name, exclude=request.campaign_id)
            recommendations, notes = hold_back_disproved(recommendations, request.findings, disproofs(earlier))
        with session_for(self.settings.resolved_store_url) as session:
            for r in recommendations:
                session.merge(
                    RecommendationRecord(
                        key=f"{request.campaign_id}:{r.id}",
                        campaign_id=request.campaign_id,
                        recommendation_id=r.id,
                        finding_id=r.finding_id,
                        lever=r.lever.name if r.lever else None,
                        score=r.score,
                        predicted_gain_ms=r.predicted_gain_ms,
                        recommended=r.recommended,
                        body_json=r.model_dump_json(),
                    )
                )
            session.commit()
        return PlanResult(recommendations=recommendations, gain_model=gain_model, notes=notes)

    @activity.defn(name="judge_watch")
    async def judge_watch(self, request: WatchJudgeRequest) -> WatchJudgement:
        """The watch's series judged: the degradations that last (change points, permutation tests)."""
        drifts = await asyncio.to_thread(degradations, request.points, request.playbook.watch, request.now)
        return WatchJudgement(drifts=drifts)

    @activity.defn(name="plan_changes")
    async def plan_changes(self, request: PlanRequest) -> PlanResult:
        """Rank the levers (declared and generated) that address the findings, by gains learned from the target's
        earlier outcomes when there are enough of them, else by the rules."""
        return await asyncio.to_thread(self._plan, request)

    def _compare(self, request: CompareRequest) -> CompareResult:
        pairs = {}
        for before in request.baseline.endpoints:
            after = request.candidate.stats(before.endpoint)
            if after is not None:
                pairs[before.endpoint] = (
                    before,
                    after,
                    [endpoint_durations(self.settings.samples_file(request.baseline.run_id), before.endpoint)],
                    [endpoint_durations(self.settings.samples_file(request.candidate.run_id), before.endpoint)],
                )
        verdicts = judge_endpoints(pairs, request.playbook)
        soak = None
        if request.baseline.label == SOAK:  # the soak run again after the changes: its drift, before and after
            significance = request.playbook.validation.significance
            warmup_s = request.playbook.load.warmup.total_seconds()
            soak = compare_soaks(
                self._soak_drift(request.baseline.run_id, significance, warmup_s),
                self._soak_drift(request.candidate.run_id, significance, warmup_s),
            )
        return CompareResult(
            verdicts=verdicts, slo=check_slos(request.candidate.endpoints, request.playbook), soak=soak
        )

    def _soak_drift(self, run_id: str, significance: float, warmup_s: float) -> SoakDrift:
        """The run's drift over its steady state: its samples start after the warm-up, its resources not."""
        times, durations = timed_durations(self.settings.samples_file(run_id))
        resources = self.settings.resources_file(run_id)
        seconds, _, memory = resource_totals(resources) if resources.is_file() else (np.empty(0), None, np.empty(0))
        steady = seconds >= warmup_s
        return soak_drift(times, durations, seconds[steady], memory[steady] / 2**20, significance)

    def _compare_arms(self, request: ArmsRequest) -> CompareResult:
        after_files = [self.settings.samples_file(run_id) for run_id in request.after_run_ids]
        client = endpoint_arms([self.settings.samples_file(run_id) for run_id in request.before_run_ids], after_files)
        # The service's own time where its traces cover the requests: gains are measured on the server side.
        arms, measured_at = server_side_arms(
            client,
            [server_durations(self.settings.spans_file(run_id)) for run_id in request.before_run_ids],
            [server_durations(self.settings.spans_file(run_id)) for run_id in request.after_run_ids],
            client_side=self._capacity_endpoints(request.campaign_id),
        )
        verdicts = judge_endpoints(arms, request.playbook, measured_at)
        service = service_verdicts(
            arm_series(self.settings, request.before_run_ids, request.playbook),
            arm_series(self.settings, request.after_run_ids, request.playbook),
            request.playbook,
            cores=os.cpu_count() or 1,
            memory_total_mb=psutil.virtual_memory().total / 2**20,
        )
        # Every endpoint the after arm measured is held to its targets, even one the before arm missed.
        return CompareResult(
            verdicts=verdicts,
            slo=check_slos(endpoint_stats(after_files), request.playbook) + after_checks(service),
            service=service,
            cost=self._priced_arms(request),
        )

    def _priced_arms(self, request: ArmsRequest) -> CostComparison | None:
        """Both arms' cost per 1,000 requests, when the playbook prices anything."""
        if not request.playbook.costs.priced:
            return None

        def used(run_ids: list[str]) -> list[RunUsage]:
            runs = [
                run_usage(
                    self.settings.samples_file(run_id),
                    self.settings.resources_file(run_id),
                    self.settings.spans_file(run_id),
                )
                for run_id in run_ids
            ]
            return [run for run in runs if run is not None]

        return compare_costs(used(request.before_run_ids), used(request.after_run_ids), request.playbook.costs)

    def _capacity_endpoints(self, campaign_id: str) -> set[str]:
        """Endpoints the campaign found saturated: a fix there shortens the wait before the handler starts,
        which only the client's clock sees, so they are judged on it."""
        with session_for(self.settings.resolved_store_url) as session:
            found = session.exec(
                select(FindingRecord.endpoint).where(
                    FindingRecord.campaign_id == campaign_id, FindingRecord.type == FindingType.SATURATION.value
                )
            ).all()
        return set(found)

    @activity.defn(name="compare_arms")
    async def compare_arms(self, request: ArmsRequest) -> CompareResult:
        """Verdict per endpoint from interleaved runs: each arm's runs, a hierarchical bootstrap, margins."""
        return await asyncio.to_thread(self._compare_arms, request)

    def _calibrate(self, request: CalibrateRequest) -> CalibrationResult:
        files = [self.settings.samples_file(run_id) for run_id in request.run_ids]
        rules = request.playbook.validation
        names = sorted({s.endpoint for s in endpoint_stats(files)})
        runs = [durations_by_endpoint(f) for f in files]
        noises = [
            endpoint_noise(
                name, [run.get(name, np.zeros(0)) for run in runs], rules, detect=request.detect, power=request.power
            )
            for name in names
        ]
        runs_per_arm = recommended_runs_per_arm(noises)
        notes = [f"{n.endpoint}: {n.note}" for n in noises if n.note]
        if runs_per_arm is None and any(n.run_spread is not None for n in noises):
            notes.append(
                f"a {request.detect:.0%} slowdown cannot clear the regression margin {rules.regression_margin:.0%}: "
                "ask to detect more, or lower the margin"
            )
        return CalibrationResult(
            calibration_id=request.calibration_id,
            target="",
            playbook=request.playbook.name,
            runs=len(files),
            run_seconds=0.0,
            detect=request.detect,
            power=request.power,
            endpoints=noises,
            runs_per_arm=runs_per_arm,
            regression_margin=recommended_margin(noises, rules, runs_per_arm or rules.runs_per_arm),
            notes=notes,
        )

    def _size_validation(self, request: ValidationLoadRequest) -> ValidationLoad:
        rules = request.playbook.validation
        baseline = self.settings.samples_file(request.baseline_run_id)
        needed = {
            endpoint: rules.min_requests_per_run or requests_per_run(endpoint_durations(baseline, endpoint), rules)
            for endpoint in request.endpoints
        }
        run_s = (rules.run_duration or request.playbook.load.duration).total_seconds()
        plan = focus_rates(
            needed, {e.name: e.weight for e in request.target.endpoints}, rate=request.playbook.load.rps, run_s=run_s
        )
        listed = ", ".join(f"{e} {plan.rates[e]:.1f}/s ({needed[e]} per run needed)" for e in sorted(needed))
        note = f"validation load focused on the endpoints under test: {listed}"
        if plan.capped:
            note += (
                f"; the load's {request.playbook.load.rps:g} req/s cannot give each what it needs within "
                f"{FOCUS_SHARE_CAP:.0%} of it: the verdicts say what they could detect"
            )
        if request.target.load_script is not None:
            note += "; the target's own k6 script decides its load: it finds these rates in RATCHET_FOCUS"
        return ValidationLoad(focus=plan.rates, needed_per_run=needed, capped=plan.capped, note=note)

    @activity.defn(name="size_validation_load")
    async def size_validation_load(self, request: ValidationLoadRequest) -> ValidationLoad:
        """Requests per run each endpoint under test needs to decide (from its baseline spread, or the playbook's
        min_requests_per_run), as rates of a focused validation load."""
        return await asyncio.to_thread(self._size_validation, request)

    @activity.defn(name="calibrate_noise")
    async def calibrate_noise(self, request: CalibrateRequest) -> CalibrationResult:
        """The run-to-run noise per endpoint of A/A runs, and the runs per arm and margin it calls for."""
        return await asyncio.to_thread(self._calibrate, request)

    @activity.defn(name="compare_runs")
    async def compare_runs(self, request: CompareRequest) -> CompareResult:
        """Before/after verdict per endpoint from the raw samples of both runs."""
        return await asyncio.to_thread(self._compare, request)

    def _guard(self, request: GuardRequest) -> GuardResult:
        tails = {}
        for now in request.watch.endpoints:
            reference = request.validated.stats(now.endpoint)
            if reference is None:
                continue
            before = endpoint_durations(self.settings.samples_file(request.validated.run_id), now.endpoint)
            after = endpoint_durations(self.settings.samples_file(request.watch.run_id), now.endpoint)
            tails[now.endpoint] = tail_excess(before, after, reference.p95)
        return guard_check(request.validated, request.watch, request.playbook, tails)

    @activity.defn(name="suggest_value")
    async def suggest_value(self, request: SuggestRequest) -> SuggestResult:
        """The next value to try for a tunable lever (Bayesian optimization over the trials so far)."""
        value, why = await asyncio.to_thread(suggest, request.parameter, request.trials)
        return SuggestResult(value=value, why=why)

    @activity.defn(name="check_guard")
    async def check_guard(self, request: GuardRequest) -> GuardResult:
        """Whether the bake run stayed within the guard's limits around the validated numbers."""
        return await asyncio.to_thread(self._guard, request)
