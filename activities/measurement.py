"""Load tests with k6: generated script, raw samples into Parquet, exact percentiles, live heartbeats.

A load test runs whole in ``run_load_test``, or split over N load generators: N ``generate_load`` activities
on the load-generator task queue, each running its k6 execution segment from a shared start instant into the
run's sample folder, then ``summarize_load_test`` merges their samples and judges the run centrally.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import datetime

import numpy as np
from sqlmodel import delete
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ratchet.analysis.knee import stress_report
from ratchet.config.target import Target
from ratchet.contracts import (
    GeneratorRequest,
    GeneratorResult,
    LoadTestRequest,
    LoadTestResult,
    ResourceSummary,
    SplitLoadTest,
)
from ratchet.database.statement_stats import StatementRecorder
from ratchet.errors import MeasurementError
from ratchet.k6.progress import Progress
from ratchet.k6.runner import K6Run, Segment, run_k6
from ratchet.k6.script import AbortConditions, render_arrival_rate_script
from ratchet.resources.caches import CacheRecorder, recorded_lookups
from ratchet.resources.sampler import ResourceSampler, read_resources, summarize_resources
from ratchet.resources.target import target_processes
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.sample_stream import LiveCounts, SampleStream
from ratchet.store.samples import endpoint_stats, finalize_run_samples, step_samples
from ratchet.store.tables import Measurement
from ratchet.traces.collect import collect_spans_of_run, wait_for_receiver
from ratchet.traces.store import run_trace_prefix
from ratchet.workflow_load.run import Steps, WorkflowProgress, connect_target, drive_workflows, keep_run


def run_id_of(request: LoadTestRequest) -> str:
    """The id of a load run: its samples, spans and resources are stored under it."""
    return f"{request.campaign_id}-{request.label}"


def script_env(request: LoadTestRequest) -> dict[str, str]:
    """What a user's own k6 script may read from ``__ENV`` to follow the playbook's load."""
    stress = request.stress
    stages = [{"rate": rate, "duration": f"{stress.step_s:g}s"} for rate in stress.rates] if stress else []
    return {
        "RATCHET_BASE_URL": request.target.base,
        "RATCHET_RATE": f"{request.rate:g}",
        "RATCHET_DURATION": f"{request.duration_s + request.warmup_s:g}s",
        "RATCHET_MAX_VUS": str(request.max_vus),
        "RATCHET_LABEL": request.label,
        "RATCHET_STAGES": json.dumps(stages),
        # Endpoint -> requests per second of a validation's endpoints under test (the rest of the rate by weight).
        "RATCHET_FOCUS": json.dumps(request.focus),
    }


def endpoint_names(target: Target) -> dict[str, str] | None:
    """Tag value -> endpoint for a user's own script (None: the generated script tags by endpoint name)."""
    script = target.load_script
    if script is None:
        return None
    return {e.name: e.name for e in target.endpoints} | dict(script.tag_values)


def traced_run(run_id: str, attempt: int) -> str:
    """What a run's trace ids are derived from: a retried attempt's own name, so that it does not read as its
    own the spans of the requests its stalled predecessor sent."""
    return run_id if attempt == 1 else f"{run_id}-attempt-{attempt}"


def render_script(request: LoadTestRequest, traced: str) -> str:
    """The k6 script of a request: its rate held, or its stress steps with their breaking conditions; its trace
    ids start with the prefix of ``traced`` (see ``traced_run``)."""
    if request.target.load_script is not None:
        return request.target.load_script.source
    traces = request.target.traces
    stress = request.stress
    return render_arrival_rate_script(
        request.target,
        label=request.label,
        rate=request.rate,
        duration_s=stress.step_s if stress else request.duration_s + request.warmup_s,
        max_vus=request.max_vus,
        request_timeout_s=request.request_timeout_s,
        trace_prefix=run_trace_prefix(traced) if traces is not None and traces.propagate else "",
        step_rates=stress.rates if stress else None,
        abort_when=AbortConditions(stress.abort_error_rate, stress.abort_p95_ms) if stress else None,
        focus=request.focus,
    )


def superseded() -> bool:
    """Whether this attempt was cancelled because the server gave up on it (its heartbeat lapsed, or it is
    gone), rather than by the campaign: then a retry may already be measuring the same run."""
    details = activity.cancellation_details()
    return details is not None and (details.timed_out or details.not_found)


class MeasurementActivities:
    """run_load_test and summarize_load_test (measuring roles); generate_load (the load-generator role)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ------------------------------------------------------------------ activities

    @activity.defn(name="run_load_test")
    async def run_load_test(self, request: LoadTestRequest) -> LoadTestResult:
        """Send the request's load to the target and store the raw samples, resources and spans."""
        run_id = run_id_of(request)
        if request.target.is_workflow:
            return await self._run_workflows(request, run_id)
        sampler = ResourceSampler(lambda: target_processes(request.target))
        statements = StatementRecorder(request.target)
        caches = CacheRecorder(request.target)
        traced = traced_run(run_id, activity.info().attempt)
        try:
            run = await self._generate(request, run_id, traced, sampler=sampler, statements=statements, caches=caches)
        except asyncio.CancelledError:
            if superseded():
                raise  # its retry measures the run: this attempt's samples are no part of it
            # Keep what was measured before the stop; the campaign's report can still show it.
            try:
                await asyncio.to_thread(self._store, request, run_id, True)
            except Exception:  # the cancellation matters more than the partial samples: report, go on
                activity.logger.exception("could not keep the partial samples of %s", run_id)
            raise
        notes = await self._store_statements(statements, run_id) + await self._store_caches(caches, run_id)
        resources = self._store_resources(sampler, run_id)
        return await self._conclude(request, run_id, run, resources, notes, traced=traced)

    @activity.defn(name="generate_load")
    async def generate_load(self, request: GeneratorRequest) -> GeneratorResult:
        """Run one execution segment of a split load test, resumed at the shared start instant.

        Generator 0 also samples the target's resources and counts its database statements (once per run).
        """
        load = request.request
        run_id = run_id_of(load)
        first = request.index == 0
        sampler = ResourceSampler(lambda: target_processes(load.target)) if first else None
        statements = StatementRecorder(load.target) if first else None
        caches = CacheRecorder(load.target) if first else None
        run = await self._generate(
            load,
            run_id,
            run_id,  # the generators share the run's trace ids: summarize_load_test collects them by it
            sampler=sampler,
            statements=statements,
            caches=caches,
            segment=Segment(request.index, request.count),
            start_at=request.start_at,
        )
        if sampler is not None:
            self._store_resources(sampler, run_id)  # summarize_load_test reads them back from the store
        notes = await self._store_statements(statements, run_id) if statements is not None else []
        notes += await self._store_caches(caches, run_id) if caches is not None else []
        return GeneratorResult(
            index=request.index, started_at=run.started_at, ended_by_itself=run.ended_by_itself, notes=notes
        )

    @activity.defn(name="summarize_load_test")
    async def summarize_load_test(self, split: SplitLoadTest) -> LoadTestResult:
        """Merge the samples of every generator of a split load test and judge it as one run."""
        request = split.request
        run_id = run_id_of(request)
        starts = [g.started_at for g in split.generators]
        run = K6Run(started_at=min(starts), ended_by_itself=all(g.ended_by_itself for g in split.generators))
        resources_file = self.settings.resources_file(run_id)
        resources = summarize_resources(read_resources(resources_file)) if resources_file.is_file() else None
        notes = [note for g in split.generators for note in g.notes]
        result = await self._conclude(request, run_id, run, resources, notes)
        return result.model_copy(
            update={"generators": len(starts), "start_skew_s": round((max(starts) - min(starts)).total_seconds(), 3)}
        )

    # ------------------------------------------------------------------ steps

    async def _generate(
        self,
        request: LoadTestRequest,
        run_id: str,
        traced: str,
        *,
        sampler: ResourceSampler | None,
        statements: StatementRecorder | None = None,
        caches: CacheRecorder | None = None,
        segment: Segment | None = None,
        start_at: datetime | None = None,
    ) -> K6Run:
        """Run k6 (all of the test, or one segment) with its samples streamed into the run's folder and its
        trace ids derived from ``traced`` (see ``traced_run``)."""
        index = segment.index if segment else 0
        run_dir = self.settings.samples_dir / run_id
        live = LiveCounts() if request.bounded_memory else None

        def beat(progress: Progress) -> None:
            activity.heartbeat(
                {
                    "run_id": run_id,
                    "label": request.label,
                    "progress": progress.describe(),
                    "requests": progress.requests,
                    "rate": progress.rate,
                    "p95_ms": progress.p95_ms,
                    "error_rate": progress.error_rate,
                    "elapsed_s": round(progress.elapsed_s, 1),
                    "generator": index,
                }
            )

        await self._receiver_ready(request, run_id)
        activity.heartbeat({"run_id": run_id, "label": request.label, "progress": "starting k6", "generator": index})
        script = request.target.load_script
        tag = script.endpoint_tag if script is not None else "endpoint"
        attempt = activity.info().attempt
        stream = SampleStream(run_dir, generator=index, attempt=attempt, live=live, endpoint_tag=tag)
        stream.start()
        if sampler is not None:
            sampler.start()
        if statements is not None:
            await asyncio.to_thread(statements.start)
        if caches is not None:
            await asyncio.to_thread(caches.start)
        try:
            return await run_k6(
                render_script(request, traced),
                workdir=run_dir / f"generator-{index}-a{attempt}",
                output=stream.source,
                on_progress=beat,
                segment=segment,
                start_at=start_at,
                bounded_memory=request.bounded_memory,
                stream_progress=live.progress if live is not None else None,
                script_env=script_env(request),
                endpoint_tag=tag,
            )
        except MeasurementError as exc:
            raise ApplicationError(str(exc), type="MeasurementError") from None
        finally:
            # Also on cancellation: k6 was stopped with SIGINT and flushed what it measured; keep it.
            if sampler is not None:
                await asyncio.to_thread(sampler.stop)
            await asyncio.to_thread(stream.finish)

    async def _run_workflows(self, request: LoadTestRequest, run_id: str) -> LoadTestResult:
        """A temporal-workflow target's load: its executions started at the rate and awaited (the workload
        driver), their samples and histories kept; then judged as any run."""
        target = request.target
        plan = request.stress
        steps = (
            Steps(list(plan.rates), plan.step_s, plan.abort_error_rate, plan.abort_p95_ms) if plan is not None else None
        )
        try:
            client = await connect_target(target, self.settings.temporal_address, self.settings.temporal_namespace)
        except MeasurementError as exc:
            raise ApplicationError(str(exc), type="MeasurementError") from None
        sampler = ResourceSampler(lambda: target_processes(target))
        progress = WorkflowProgress(due=0)
        run_dir = self.settings.samples_dir / run_id

        async def beat() -> None:
            while True:
                recent = progress.durations_ms[-200:]
                activity.heartbeat(
                    {
                        "run_id": run_id,
                        "label": request.label,
                        "progress": progress.describe(),
                        "requests": progress.closed,
                        "p95_ms": round(float(np.percentile(recent, 95)), 1) if recent else None,
                        "error_rate": round(progress.failed / progress.closed, 4) if progress.closed else 0.0,
                    }
                )
                await asyncio.sleep(2)  # a heartbeat's pace, not a synchronisation

        beating = asyncio.create_task(beat())
        sampler.start()
        try:
            run = await drive_workflows(
                client,
                target,
                rate=request.rate,
                duration_s=request.duration_s,
                warmup_s=request.warmup_s,
                focus=request.focus,
                # Each attempt's executions of their own: a retried attempt's ids are not taken.
                id_prefix=f"{run_id}-a{activity.info().attempt}",
                progress=progress,
                steps=steps,
            )
        finally:
            await asyncio.to_thread(sampler.stop)
            beating.cancel()
        shutil.rmtree(run_dir / "executions", ignore_errors=True)  # an earlier attempt's histories
        await keep_run(
            client,
            target,
            run,
            samples_file=self.settings.samples_file(run_id),
            run_dir=run_dir,
            warmup_s=request.warmup_s,
            progress=lambda done, of: activity.heartbeat({"run_id": run_id, "progress": f"{done}/{of} histories read"}),
        )
        return await self._conclude(
            request,
            run_id,
            K6Run(started_at=run.started_at, ended_by_itself=True),
            self._store_resources(sampler, run_id),
            [],
        )

    def _store(self, request: LoadTestRequest, run_id: str, interrupted: bool) -> tuple[LoadTestResult, int]:
        """The run's samples stored and summarised; with the requests the target answered, warm-up included
        (0 for a workflow target: its executions start no Ratchet traces)."""
        parquet = self.settings.samples_file(run_id)
        answered = 0
        if not request.target.is_workflow:  # the workload driver wrote its samples file itself
            answered = finalize_run_samples(
                self.settings.samples_dir / run_id,
                parquet,
                warmup_s=request.warmup_s,
                endpoint_names=endpoint_names(request.target),
            ).answered
        stats = endpoint_stats(parquet)
        with session_for(self.settings.resolved_store_url) as session:
            # A retried attempt replaces the rows of the attempt a crash cut short.
            session.exec(delete(Measurement).where(Measurement.run_id == run_id))  # type: ignore[call-overload,arg-type]
            # An endpoint without one successful answer (a target that is down) has no figure to keep: its
            # zeros would read as a baseline in the history, its drift detection and what later campaigns learn.
            for s in (s for s in stats if s.requests > s.errors):
                session.add(
                    Measurement(
                        run_id=run_id,
                        campaign_id=request.campaign_id,
                        label=request.label,
                        endpoint=s.endpoint,
                        requests=s.requests,
                        errors=s.errors,
                        p50=s.p50,
                        p95=s.p95,
                        p99=s.p99,
                        mean=s.mean,
                        samples_path=str(parquet),
                    )
                )
            session.commit()
        result = LoadTestResult(
            run_id=run_id,
            label=request.label,
            requests=sum(s.requests for s in stats),
            duration_s=request.duration_s,
            interrupted=interrupted,
            endpoints=stats,
        )
        return result, answered

    async def _store_statements(self, statements: StatementRecorder, run_id: str) -> list[str]:
        """Store what the target's database ran during the load; a note when it could not be counted."""
        note = await asyncio.to_thread(statements.finish, self.settings.statements_file(run_id))
        return [note] if note else []

    async def _store_caches(self, caches: CacheRecorder, run_id: str) -> list[str]:
        """Store the lookups each of the target's caches served during the load; notes of those not read."""
        _, notes = await asyncio.to_thread(caches.finish, self.settings.caches_file(run_id))
        return notes

    def _store_resources(self, sampler: ResourceSampler, run_id: str) -> ResourceSummary | None:
        """Store the run's resource samples; their summary, or None when no process of the target was found."""
        summary = sampler.summary()
        if not summary.samples:
            return None
        sampler.write(self.settings.resources_file(run_id))
        return summary

    async def _receiver_ready(self, request: LoadTestRequest, run_id: str) -> None:
        """A target that sends spans is measured only once the receiver answers: a run without it would keep no
        span, and the assessment would judge the target blind. Waits a while (the receiver may be starting)."""
        traces = request.target.traces
        if traces is None or not traces.propagate or request.target.load_script is not None:
            return
        failure = await wait_for_receiver(
            self.settings.otlp_url,
            max_wait_s=self.settings.trace_receiver_wait,
            on_wait=lambda text: activity.heartbeat({"run_id": run_id, "label": request.label, "progress": text}),
        )
        if failure:
            raise ApplicationError(failure, type="TraceReceiverDown", non_retryable=True)

    async def _collect_spans(
        self, request: LoadTestRequest, run_id: str, answered: int, traced: str
    ) -> tuple[int, list[str]]:
        traces = request.target.traces
        if traces is None or not traces.propagate:
            return 0, []
        if request.target.load_script is not None:
            # Spans are told apart by the trace ids Ratchet's own script starts; a user's script starts its own.
            return 0, ["spans not collected per run: the target's own k6 script starts no Ratchet trace ids"]
        run_spans = await collect_spans_of_run(
            receiver_url=self.settings.otlp_url,
            token=self.settings.otlp_token,
            spans_dir=self.settings.spans_dir,
            run_id=traced,
            endpoints=[e.name for e in request.target.endpoints],
            out_file=self.settings.spans_file(run_id),
            settle_s=traces.settle.total_seconds(),
            max_wait_s=max(self.settings.trace_settle_max, traces.settle.total_seconds() * 2),
            on_wait=lambda text: activity.heartbeat({"run_id": run_id, "label": request.label, "progress": text}),
            warmup_s=request.warmup_s,
            # A run read for its requests' roots only stops waiting once each answered request's root is in.
            roots_expected=answered if request.roots_only else None,
        )
        return run_spans.spans, [run_spans.note] if run_spans.note else []

    async def _conclude(
        self,
        request: LoadTestRequest,
        run_id: str,
        run: K6Run,
        resources: ResourceSummary | None,
        notes_so_far: list[str],
        *,
        traced: str | None = None,
    ) -> LoadTestResult:
        """Percentiles, the stress knee, spans and notes of a finished run; refuse a run nothing answered. Its
        spans are those whose trace ids derive from ``traced`` (the run's id by default; see ``traced_run``)."""
        result, answered = await asyncio.to_thread(self._store, request, run_id, False)
        stress = None
        if request.stress is not None:
            plan = request.stress
            samples = await asyncio.to_thread(
                step_samples,
                self.settings.samples_file(run_id),
                started_at=run.started_at,
                step_s=plan.step_s,
                steps=len(plan.rates),
            )
            stress = stress_report(samples, plan, ended_by_itself=run.ended_by_itself)
        unanswered = sum(s.unanswered for s in result.endpoints)
        if request.target.is_workflow and (result.requests == 0 or unanswered == result.requests):
            raise ApplicationError(
                f"no execution of the {request.label} run got an answer ({unanswered} of {result.requests} not "
                "started or still open when the run stopped awaiting them): is the target's Temporal server up, "
                "and a worker of the application polling its task queue?",
                type="MeasurementError",
                non_retryable=True,
            )
        if result.requests == 0 or unanswered == result.requests:
            # Status 0: k6 got no HTTP answer at all (refused, reset, timed out). Not a performance result, and
            # not a blip a retry would outlast (a whole run long): said at once, before waiting for spans that
            # cannot come, and not retried (each attempt would cost a whole run).
            raise ApplicationError(
                f"no request reached {request.target.base} during the {request.label} run "
                f"({unanswered} of {result.requests} got no answer): is the target running?",
                type="MeasurementError",
                non_retryable=True,
            )
        spans, notes = await self._collect_spans(request, run_id, answered, traced or run_id)
        notes = notes_so_far + notes
        if resources is None:
            notes.append("no process of the target found on this machine: no resource samples")
        caches = recorded_lookups(self.settings.caches_file(run_id)) if request.target.caches else []
        return result.model_copy(
            update={
                "spans": spans,
                "resources": resources,
                "caches": caches,
                "stress": stress,
                "notes": result.notes + notes,
            }
        )
