"""Load tests with k6: generated script, raw samples into Parquet, exact percentiles, live heartbeats."""

from __future__ import annotations

import asyncio

from sqlmodel import delete
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.statement_stats import StatementRecorder
from ratchet.contracts import LoadTestRequest, LoadTestResult, ResourceSummary
from ratchet.errors import MeasurementError
from ratchet.k6.runner import Progress, run_k6
from ratchet.k6.script import render_constant_rate_script
from ratchet.resources.sampler import ResourceSampler
from ratchet.resources.target import target_processes
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.sample_stream import SampleStream
from ratchet.store.samples import endpoint_stats, finalize_run_samples
from ratchet.store.tables import Measurement
from ratchet.traces.collect import collect_spans_of_run
from ratchet.traces.store import run_trace_prefix


class MeasurementActivities:
    """run_load_test, served by the roles that measure (perf-optimizer, test-engineer, devops-engineer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _store(self, request: LoadTestRequest, run_id: str, interrupted: bool) -> LoadTestResult:
        parquet = self.settings.samples_file(run_id)
        finalize_run_samples(self.settings.samples_dir / run_id, parquet, warmup_s=request.warmup_s)
        stats = endpoint_stats(parquet)
        with session_for(self.settings.resolved_store_url) as session:
            # A retried attempt replaces the rows of the attempt a crash cut short.
            session.exec(delete(Measurement).where(Measurement.run_id == run_id))  # type: ignore[call-overload]
            for s in stats:
                session.add(
                    Measurement(
                        run_id=run_id, campaign_id=request.campaign_id, label=request.label,
                        endpoint=s.endpoint, requests=s.requests, errors=s.errors,
                        p50=s.p50, p95=s.p95, p99=s.p99, mean=s.mean, samples_path=str(parquet),
                    )
                )  # fmt: skip
            session.commit()
        return LoadTestResult(
            run_id=run_id,
            label=request.label,
            requests=sum(s.requests for s in stats),
            duration_s=request.duration_s,
            interrupted=interrupted,
            endpoints=stats,
        )

    def _store_resources(self, sampler: ResourceSampler, run_id: str) -> ResourceSummary | None:
        summary = sampler.summary()
        if not summary.samples:
            return None
        sampler.write(self.settings.resources_file(run_id))
        return summary

    async def _collect_spans(self, request: LoadTestRequest, run_id: str) -> tuple[int, list[str]]:
        traces = request.target.traces
        if traces is None or not traces.propagate:
            return 0, []
        run_spans = await collect_spans_of_run(
            receiver_url=self.settings.otlp_url,
            spans_dir=self.settings.spans_dir,
            run_id=run_id,
            endpoints=[e.name for e in request.target.endpoints],
            out_file=self.settings.spans_file(run_id),
            settle_s=traces.settle.total_seconds(),
            max_wait_s=max(self.settings.trace_settle_max, traces.settle.total_seconds() * 2),
            on_wait=lambda text: activity.heartbeat({"run_id": run_id, "label": request.label, "progress": text}),
        )
        return run_spans.spans, [run_spans.note] if run_spans.note else []

    @activity.defn(name="run_load_test")
    async def run_load_test(self, request: LoadTestRequest) -> LoadTestResult:
        """Send the profile's constant-arrival-rate load to the target and store the raw samples and spans."""
        run_id = f"{request.campaign_id}-{request.label}"
        traces = request.target.traces
        script = render_constant_rate_script(
            request.target,
            label=request.label,
            rate=request.rate,
            duration_s=request.duration_s + request.warmup_s,
            max_vus=request.max_vus,
            request_timeout_s=request.request_timeout_s,
            trace_prefix=run_trace_prefix(run_id) if traces is not None and traces.propagate else "",
        )
        run_dir = self.settings.samples_dir / run_id

        def beat(progress: Progress) -> None:
            activity.heartbeat({"run_id": run_id, "label": request.label, "progress": progress.describe(),
                                "requests": progress.requests, "rate": progress.rate, "p95_ms": progress.p95_ms,
                                "error_rate": progress.error_rate, "elapsed_s": round(progress.elapsed_s, 1)})  # fmt: skip

        activity.heartbeat({"run_id": run_id, "label": request.label, "progress": "starting k6"})
        stream = SampleStream(run_dir)
        stream.start()
        sampler = ResourceSampler(lambda: target_processes(request.target))
        sampler.start()
        statements = StatementRecorder(request.target)
        await asyncio.to_thread(statements.start)
        try:
            await run_k6(script, workdir=run_dir, output=stream.source, on_progress=beat)
        except asyncio.CancelledError:
            await asyncio.to_thread(sampler.stop)
            # Keep what was measured before the stop; the campaign's report can still show it.
            try:
                await asyncio.to_thread(stream.finish)
                await asyncio.to_thread(self._store, request, run_id, True)
            except Exception:  # the cancellation matters more than the partial samples: report, go on
                activity.logger.exception("could not keep the partial samples of %s", run_id)
            raise
        except MeasurementError as exc:
            await asyncio.to_thread(sampler.stop)
            await asyncio.to_thread(stream.finish)
            raise ApplicationError(str(exc), type="MeasurementError") from None
        await asyncio.to_thread(sampler.stop)
        statements_note = await asyncio.to_thread(statements.finish, self.settings.statements_file(run_id))
        await asyncio.to_thread(stream.finish)
        result = await asyncio.to_thread(self._store, request, run_id, False)
        resources = self._store_resources(sampler, run_id)
        spans, notes = await self._collect_spans(request, run_id)
        if statements_note:
            notes.append(statements_note)
        if resources is None:
            notes.append("no process of the target found on this machine: no resource samples")
        result = result.model_copy(update={"spans": spans, "resources": resources, "notes": result.notes + notes})
        unanswered = sum(s.unanswered for s in result.endpoints)
        if result.requests == 0 or unanswered == result.requests:
            # Status 0: k6 got no HTTP answer at all (refused, reset, timed out). Not a performance result.
            raise ApplicationError(
                f"no request reached {request.target.base} during the {request.label} run "
                f"({unanswered} of {result.requests} got no answer): is the target running?",
                type="MeasurementError",
            )
        return result
