"""A load test of a temporal-workflow target: each endpoint's executions started at its share of the load's
rate, or kept at its concurrency, and awaited (the workload driver), then written as the run's samples (k6's columns) with the histories of
the measured executions beside them, for the assessment's bottlenecks and the per-step figures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from temporalio.client import Client

from ratchet.config.target import Target
from ratchet.errors import MeasurementError
from ratchet.k6.script import endpoint_shares
from ratchet.workflow_analytics.fetch import fetch_histories
from ratchet.workflow_analytics.history_cache import HistoryCache
from ratchet.workflow_analytics.steps import Execution
from ratchet.workflow_load.driver import ExecutionSample, drive, drive_closed, even_arrivals, stepped_arrivals
from ratchet.workflow_load.samples import write_samples


async def connect_target(target: Target, address: str, namespace: str) -> Client:
    """A client of the cluster the target's executions run on (``address``/``namespace``: Ratchet's own, for
    what the target leaves unset)."""
    cluster = target.temporal
    address = (cluster.address if cluster else None) or address
    namespace = (cluster.namespace if cluster else None) or namespace
    try:
        return await Client.connect(address, namespace=namespace)
    except RuntimeError as exc:
        raise MeasurementError(
            f"cannot reach the target's Temporal at {address} (namespace {namespace}): {exc}"
        ) from None


_CALL_FILE = "call.json"
# A stepped run is judged for an abort once this many executions have closed (fewer tell nothing).
_MIN_CLOSED_TO_ABORT = 10


@dataclass
class WorkflowProgress:
    """What a run has done so far, for its heartbeats."""

    due: int  # the open model's arrivals (a closed model's count is not known ahead)
    open_ended: bool = False  # some endpoint runs a closed model
    closed: int = 0
    failed: int = 0
    durations_ms: list[float] = field(default_factory=list)

    def add(self, sample: ExecutionSample) -> None:
        self.closed += 1
        if sample.status == "completed":
            self.durations_ms.append(sample.duration_ms)
        else:
            self.failed += 1

    def describe(self) -> str:
        of = "" if self.open_ended else f"/{self.due}"
        return f"{self.closed}{of} executions closed, {self.failed} failed"


@dataclass
class WorkflowRun:
    started_at: datetime
    samples: dict[str, list[ExecutionSample]]


def run_histories(run_dir: Path, endpoint: str, workflow_type: str) -> HistoryCache:
    """Where a run's measured executions of one endpoint are kept (in the run's sample folder)."""
    return HistoryCache(run_dir / "executions" / endpoint, workflow_type)


def run_cost_fields(run_dir: Path) -> dict[str, str]:
    """Per endpoint of a run, the result field its target named as a call's cost (where it named one)."""
    found = {}
    for sidecar in sorted((run_dir / "executions").glob(f"*/{_CALL_FILE}")):
        cost_field = json.loads(sidecar.read_text()).get("cost_field")
        if cost_field:
            found[sidecar.parent.name] = str(cost_field)
    return found


def run_executions(run_dir: Path) -> dict[str, list[Execution]]:
    """Per endpoint, the executions a run measured (after its warm-up), as read from their histories (none for
    a run that was not a workflow target's)."""
    found: dict[str, list[Execution]] = {}
    kept = run_dir / "executions"
    for endpoint in sorted(kept.iterdir()) if kept.is_dir() else []:
        for workflow_type in sorted(p for p in endpoint.iterdir() if p.is_dir()):
            found.setdefault(endpoint.name, []).extend(HistoryCache(endpoint, workflow_type.name).load_all())
    return found


@dataclass(frozen=True)
class Steps:
    """A stepped run: each rate for ``step_s`` seconds, stopped early once the executions closed so far fail
    more than ``abort_error_rate`` or their p95 passes ``abort_p95_ms`` (as k6 aborts a stress run)."""

    rates: list[float]
    step_s: float
    abort_error_rate: float
    abort_p95_ms: float

    def broken(self, progress: WorkflowProgress) -> bool:
        if progress.closed < _MIN_CLOSED_TO_ABORT:
            return False
        if progress.failed / progress.closed > self.abort_error_rate:
            return True
        return bool(progress.durations_ms) and float(np.percentile(progress.durations_ms, 95)) > self.abort_p95_ms


async def drive_workflows(
    client: Client,
    target: Target,
    *,
    rate: float,
    duration_s: float,
    warmup_s: float,
    focus: dict[str, float],
    id_prefix: str,
    progress: WorkflowProgress | None = None,
    steps: Steps | None = None,
) -> WorkflowRun:
    """Every endpoint's executions for ``warmup_s + duration_s`` seconds at its share of ``rate`` (or its share
    of each of ``steps``' rates in turn), or with its ``concurrency`` in flight."""
    progress = progress or WorkflowProgress(due=0)
    # The rate is shared by the open-model endpoints only: a closed one's pace is its concurrency's.
    arriving = [e for e in target.endpoints if e.workflow is not None and e.workflow.concurrency is None]
    shares = endpoint_shares(target.model_copy(update={"endpoints": arriving}), rate, focus) if arriving else {}
    runs: list[tuple[str, Coroutine[Any, Any, list[ExecutionSample]]]] = []
    for endpoint in target.endpoints:
        call = endpoint.workflow
        assert call is not None, f"{endpoint.name} is not a workflow endpoint"
        common: dict[str, Any] = {
            "workflow": call.type,
            "task_queue": call.task_queue,
            "inputs": call.inputs,
            "id_prefix": f"{id_prefix}-{endpoint.name}",
            "timeout_s": call.timeout.total_seconds(),
            "on_close": progress.add,
        }
        if call.concurrency is not None:
            if steps is not None:
                raise ValueError(f"{endpoint.name}: a closed model (workflow.concurrency) has no rate to ramp")
            progress.open_ended = True
            runs.append(
                (
                    endpoint.name,
                    drive_closed(client, concurrency=call.concurrency, duration_s=duration_s + warmup_s, **common),
                )
            )
            continue
        share = shares[endpoint.name]
        arrivals = (
            stepped_arrivals([r * share for r in steps.rates], steps.step_s)
            if steps is not None
            else even_arrivals(rate * share, round(rate * share * (duration_s + warmup_s)))
        )
        if arrivals:
            progress.due += len(arrivals)
            stop = (lambda: steps.broken(progress)) if steps is not None else None
            runs.append((endpoint.name, drive(client, arrivals=arrivals, stop=stop, **common)))
    started_at = datetime.now(UTC)
    results = await asyncio.gather(*(run for _, run in runs))
    return WorkflowRun(started_at, {name: found for (name, _), found in zip(runs, results, strict=True)})


async def keep_run(
    client: Client,
    target: Target,
    run: WorkflowRun,
    *,
    samples_file: Path,
    run_dir: Path,
    warmup_s: float,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Write the run's samples and keep the histories of its measured executions; return how many samples."""
    kept = write_samples(run.samples, samples_file, run_started_at=run.started_at, warmup_s=warmup_s)
    for endpoint in target.endpoints:
        call = endpoint.workflow
        assert call is not None
        measured = [
            (s.workflow_id, "")
            for s in run.samples.get(endpoint.name, [])
            if s.due_s >= warmup_s and s.status in ("completed", "failed")
        ]
        if measured:
            histories = run_histories(run_dir, endpoint.name, call.type)
            histories.add(await fetch_histories(client, measured, progress=progress))
            # What the report needs to read them that the histories do not say (the report has no target).
            sidecar = run_dir / "executions" / endpoint.name / _CALL_FILE
            sidecar.write_text(json.dumps({"workflow_type": call.type, "cost_field": call.cost_field}))
    return kept
