"""The workload driver: starts executions of a workflow type at a constant arrival rate (an open model, like
k6's constant-arrival-rate: a slow application does not slow the arrivals), or keeps a number of them in flight
(a closed model, like k6's constant-vus), and awaits each one, recording when it was due, started and closed,
and how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
    call = _Call(client, workflow, task_queue, inputs, id_prefix, timeout_s, server_grace_s, origin)

    stopped = asyncio.Event()  # once set, the arrivals still due are dropped at once, not at their time

    async def one(n: int, due: float) -> ExecutionSample | None:
        # The arrival schedule (not a synchronisation), cut short by a stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopped.wait(), max(0.0, origin + due - loop.time()))
        if stopped.is_set() or (stop is not None and stop()):
            stopped.set()
            return None
        sample = await call.execute(n, due, last_due - due)
        if on_close is not None:
            on_close(sample)
        if stop is not None and stop():
            stopped.set()
        return sample

    done = await asyncio.gather(*(one(n, due) for n, due in enumerate(arrivals)))
    return [sample for sample in done if sample is not None]


async def drive_closed(
    client: Client,
    *,
    workflow: str,
    task_queue: str,
    inputs: Sequence[Any],
    id_prefix: str,
    concurrency: int,
    duration_s: float,
    timeout_s: float = 300.0,
    on_close: Callable[[ExecutionSample], None] | None = None,
    server_grace_s: float = 30.0,
) -> list[ExecutionSample]:
    """A closed model: ``concurrency`` executions in flight for ``duration_s`` seconds, each started as soon as
    one closes, cycling through ``inputs``; each awaited at most ``timeout_s``. An execution's due time is its
    start (the next one is not due before the previous has closed)."""
    if concurrency <= 0 or duration_s <= 0 or not inputs:
        raise ValueError("drive_closed needs a positive concurrency and duration, and at least one input")
    loop = asyncio.get_running_loop()
    origin = loop.time()
    call = _Call(client, workflow, task_queue, inputs, id_prefix, timeout_s, server_grace_s, origin)
    numbers = itertools.count()
    samples: list[ExecutionSample] = []

    async def lane() -> None:
        while loop.time() - origin < duration_s:
            sample = await call.execute(next(numbers), None, 0.0)
            samples.append(sample)
            if on_close is not None:
                on_close(sample)

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return sorted(samples, key=lambda sample: sample.due_s)


@dataclass(frozen=True)
class _Call:
    """Starting the n-th execution of the workflow (``id_prefix-n``, the inputs cycled) and awaiting its end,
    timed from ``origin`` (the loop's clock)."""

    client: Client
    workflow: str
    task_queue: str
    inputs: Sequence[Any]
    id_prefix: str
    timeout_s: float
    server_grace_s: float
    origin: float

    async def execute(self, n: int, due: float | None, extra_wait_s: float) -> ExecutionSample:
        """Start the n-th now, await it ``timeout_s + extra_wait_s`` at most, and say how it ended; ``due``
        None: it is due now."""
        workflow_id, index = f"{self.id_prefix}-{n}", n % len(self.inputs)
        argument = self.inputs[index]
        loop = asyncio.get_running_loop()
        started = loop.time() - self.origin
        due = started if due is None else due
        awaited_s = self.timeout_s + extra_wait_s
        try:
            handle = await self.client.start_workflow(
                self.workflow,
                argument,
                id=workflow_id,
                task_queue=self.task_queue,
                # Later than the driver's own wait, so that the driver sees it still open and says so.
                execution_timeout=timedelta(seconds=awaited_s + self.server_grace_s),
            )
        except RPCError as refused:
            return ExecutionSample(
                workflow_id, index, due, started, loop.time() - self.origin, "not-started", str(refused)
            )
        try:
            async with asyncio.timeout(awaited_s):
                await handle.result()
            status, error = "completed", ""
        except WorkflowFailureError as failure:
            status, error = "failed", str(failure.__cause__ or failure) or type(failure).__name__
        except TimeoutError:
            status, error = "timed-out", f"still open {self.timeout_s:g} s after the last start"
        return ExecutionSample(workflow_id, index, due, started, loop.time() - self.origin, status, error)
