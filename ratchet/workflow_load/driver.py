"""The workload driver: starts executions of a workflow type at a constant arrival rate (an open model, like
k6's constant-arrival-rate: a slow application does not slow the arrivals) and awaits each one, recording when
it was due, started and closed, and how it ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.service import RPCError


@dataclass(frozen=True)
class ExecutionSample:
    workflow_id: str
    input_index: int
    due_s: float  # seconds from the run's start
    started_s: float
    closed_s: float
    status: str  # completed | failed | timed-out (still open when the driver stopped awaiting it) | not-started
    error: str = ""

    @property
    def duration_ms(self) -> float:
        """From the start request to the result: what the workflow's caller waits."""
        return (self.closed_s - self.started_s) * 1000


def even_arrivals(rate_per_s: float, count: int) -> list[float]:
    """``count`` arrivals ``1 / rate_per_s`` seconds apart, from 0."""
    return [n / rate_per_s for n in range(count)]


def stepped_arrivals(rates: Sequence[float], step_s: float) -> list[float]:
    """Each step's rate held for ``step_s`` seconds, one step after the other (a stress or capacity ramp)."""
    return [
        index * step_s + n / rate for index, rate in enumerate(rates) if rate > 0 for n in range(round(rate * step_s))
    ]


async def drive(
    client: Client,
    *,
    workflow: str,
    task_queue: str,
    inputs: Sequence[Any],
    id_prefix: str,
    rate_per_s: float | None = None,
    count: int | None = None,
    arrivals: Sequence[float] | None = None,
    timeout_s: float = 300.0,
    on_close: Callable[[ExecutionSample], None] | None = None,
    server_grace_s: float = 30.0,
    stop: Callable[[], bool] | None = None,
) -> list[ExecutionSample]:
    """Start ``count`` executions, one every ``1 / rate_per_s`` seconds (or one at each of ``arrivals``,
    seconds from the start), cycling through ``inputs``; return when all have closed (or ``timeout_s`` after
    the last start: those still open are timed-out). ``on_close`` is told of each execution as it ends. Once
    ``stop()`` says so, the arrivals still due are not started (and not returned). The server closes an
    execution ``server_grace_s`` after the driver gave up on it: a load test leaves nothing running on the
    target's cluster."""
    if arrivals is None:
        if rate_per_s is None or count is None or rate_per_s <= 0 or count <= 0:
            raise ValueError("drive needs a positive rate and count, or arrivals")
        arrivals = even_arrivals(rate_per_s, count)
    if not arrivals or not inputs:
        raise ValueError("drive needs at least one arrival and at least one input")
    last_due = max(arrivals)
    loop = asyncio.get_running_loop()
    origin = loop.time()

    def closed(sample: ExecutionSample) -> ExecutionSample:
        if on_close is not None:
            on_close(sample)
        return sample

    async def one(n: int, due: float) -> ExecutionSample | None:
        index = n % len(inputs)
        await asyncio.sleep(max(0.0, origin + due - loop.time()))  # the arrival schedule, not a synchronisation
        if stop is not None and stop():
            return None
        started = loop.time() - origin
        workflow_id = f"{id_prefix}-{n}"
        awaited_s = timeout_s + (last_due - due)
        try:
            handle = await client.start_workflow(
                workflow,
                inputs[index],
                id=workflow_id,
                task_queue=task_queue,
                # Later than the driver's own wait, so that the driver sees it still open and says so.
                execution_timeout=timedelta(seconds=awaited_s + server_grace_s),
            )
        except RPCError as refused:
            return closed(
                ExecutionSample(workflow_id, index, due, started, loop.time() - origin, "not-started", str(refused))
            )
        try:
            async with asyncio.timeout(awaited_s):
                await handle.result()
            status, error = "completed", ""
        except WorkflowFailureError as failure:
            status, error = "failed", str(failure.__cause__ or failure) or type(failure).__name__
        except TimeoutError:
            status, error = "timed-out", f"still open {timeout_s:g} s after the last start"
        return closed(ExecutionSample(workflow_id, index, due, started, loop.time() - origin, status, error))

    done = await asyncio.gather(*(one(n, due) for n, due in enumerate(arrivals)))
    return [sample for sample in done if sample is not None]
