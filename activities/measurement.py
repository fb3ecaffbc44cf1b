"""Load tests with k6: generated script, raw samples into Parquet, exact percentiles, live heartbeats."""

from __future__ import annotations

import asyncio

from sqlmodel import delete
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ratchet.contracts import LoadTestRequest, LoadTestResult
from ratchet.errors import MeasurementError
from ratchet.k6.runner import Progress, run_k6
from ratchet.k6.script import render_constant_rate_script
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.samples import endpoint_stats, ingest_k6_json
from ratchet.store.tables import Measurement


class MeasurementActivities:
    """run_load_test, served by the roles that measure (perf-optimizer, test-engineer, devops-engineer)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _store(self, request: LoadTestRequest, run_id: str, interrupted: bool) -> LoadTestResult:
        run_dir = self.settings.samples_dir / run_id
        parquet = self.settings.samples_file(run_id)
        ingest_k6_json(run_dir / "samples.json", parquet, warmup_s=request.warmup_s)
        (run_dir / "samples.json").unlink(missing_ok=True)  # the Parquet file holds the same samples, smaller
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

    @activity.defn(name="run_load_test")
    async def run_load_test(self, request: LoadTestRequest) -> LoadTestResult:
        """Send the profile's constant-arrival-rate load to the target and store the raw samples."""
        run_id = f"{request.campaign_id}-{request.label}"
        script = render_constant_rate_script(
            request.target,
            label=request.label,
            rate=request.rate,
            duration_s=request.duration_s + request.warmup_s,
            max_vus=request.max_vus,
            request_timeout_s=request.request_timeout_s,
        )
        run_dir = self.settings.samples_dir / run_id

        def beat(progress: Progress) -> None:
            activity.heartbeat({"run_id": run_id, "label": request.label, "progress": progress.describe(),
                                "requests": progress.requests, "rate": progress.rate, "p95_ms": progress.p95_ms,
                                "error_rate": progress.error_rate, "elapsed_s": round(progress.elapsed_s, 1)})  # fmt: skip

        activity.heartbeat({"run_id": run_id, "label": request.label, "progress": "starting k6"})
        try:
            await run_k6(script, workdir=run_dir, samples_file=run_dir / "samples.json", on_progress=beat)
        except asyncio.CancelledError:
            # Keep what was measured before the stop; the campaign's report can still show it.
            try:
                await asyncio.to_thread(self._store, request, run_id, True)
            except Exception:  # the cancellation matters more than the partial samples: report, go on
                activity.logger.exception("could not keep the partial samples of %s", run_id)
            raise
        except MeasurementError as exc:
            raise ApplicationError(str(exc), type="MeasurementError") from None
        result = await asyncio.to_thread(self._store, request, run_id, False)
        unanswered = sum(s.unanswered for s in result.endpoints)
        if result.requests == 0 or unanswered == result.requests:
            # Status 0: k6 got no HTTP answer at all (refused, reset, timed out). Not a performance result.
            raise ApplicationError(
                f"no request reached {request.target.base} during the {request.label} run "
                f"({unanswered} of {result.requests} got no answer): is the target running?",
                type="MeasurementError",
            )
        return result
