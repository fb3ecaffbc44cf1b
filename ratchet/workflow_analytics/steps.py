"""The steps of one execution, read from its event history (pure).

A step is an activity, a child workflow or a timer: scheduled (initiated, started) at one event, started by a
worker (the child's first task) at another, closed at a third. Its **wait** is schedule-to-start: the time in
the task queue (worker slots, pollers, rate limits) and, for a retried activity, its failed attempts and
their backoff (the history records only the last attempt's start). Its **work** is start-to-close.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.api.common.v1 import Payload, Payloads, SearchAttributes
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHistory
from temporalio.converter import decode_search_attributes

_OUTCOMES = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "canceled",
    "child_workflow_execution_completed_event_attributes": "completed",
    "child_workflow_execution_failed_event_attributes": "failed",
    "child_workflow_execution_timed_out_event_attributes": "timed_out",
    "child_workflow_execution_canceled_event_attributes": "canceled",
    "child_workflow_execution_terminated_event_attributes": "terminated",
    "timer_fired_event_attributes": "completed",
    "timer_canceled_event_attributes": "canceled",
}


@dataclass(frozen=True)
class PayloadFacts:
    """What the analyses need of a step's input or result: a digest (identical inputs, identical results), its
    size (time against size), and, when the converter wrote plain JSON, its text (capped) and its leaf values
    (did a later step's input use them?). Encrypted or binary payloads are not readable: only digest and size."""

    digest: str = ""
    size: int = 0
    readable: bool = False
    text: str = ""
    tokens: tuple[str, ...] = ()


NO_PAYLOAD = PayloadFacts()
_TEXT_CAP = 16_384
_TOKEN_CAP = 64
_READABLE = {b"json/plain", b"binary/null"}


def payload_facts(payloads: Payloads) -> PayloadFacts:
    items = list(payloads.payloads)
    if not items:
        return NO_PAYLOAD
    data = b"\x1e".join(p.data for p in items)
    readable = all(p.metadata.get("encoding", b"") in _READABLE for p in items)
    if not readable:
        return PayloadFacts(hashlib.sha256(data).hexdigest(), len(data))
    text = data.decode("utf-8", "replace")
    tokens: list[str] = []
    for payload in items:
        if payload.data:
            with contextlib.suppress(ValueError):
                _leaves(json.loads(payload.data), tokens)
    return PayloadFacts(
        hashlib.sha256(data).hexdigest(), len(data), True, text[:_TEXT_CAP], tuple(dict.fromkeys(tokens))[:_TOKEN_CAP]
    )


def plain_text(payload: Payload) -> str:
    """A plain-JSON payload holding a string (an activity's summary, say) as that string; else ""."""
    if payload.metadata.get("encoding", b"") != b"json/plain":
        return ""
    with contextlib.suppress(ValueError):
        value = json.loads(payload.data)
        return value if isinstance(value, str) else ""
    return ""


def _search_attributes(attributes: SearchAttributes, into: dict[str, str]) -> None:
    """Add the attributes' values as text (a list's items joined by commas; unreadable ones left out)."""
    with contextlib.suppress(Exception):  # an attribute the SDK cannot decode is no variant to compare by
        for name, values in decode_search_attributes(attributes).items():
            into[name] = ",".join(str(v) for v in values)


def _leaves(value: Any, into: list[str]) -> None:
    """The JSON text of every leaf worth finding again in another input (two characters or more)."""
    if isinstance(value, dict):
        for item in value.values():
            _leaves(item, into)
    elif isinstance(value, list):
        for item in value:
            _leaves(item, into)
    elif value is not None and not isinstance(value, bool):
        token = json.dumps(value)
        if len(token.strip('"')) >= 2:
            into.append(token.strip('"'))


@dataclass
class Step:
    """One activity, child workflow or timer of an execution; times in ms from the execution's start."""

    workflow_id: str
    run_id: str
    kind: str  # activity | child | timer
    name: str  # activity type, child workflow type, or "timer"
    event_id: int  # the scheduling (initiating, starting) event
    task_queue: str
    scheduled_ms: float
    started_ms: float | None = None
    closed_ms: float | None = None
    attempt: int = 1
    outcome: str = "open"
    failure: str = ""
    last_failure: str = ""  # an earlier attempt's failure, when it was retried
    input: PayloadFacts = field(default_factory=lambda: NO_PAYLOAD)
    result: PayloadFacts = field(default_factory=lambda: NO_PAYLOAD)
    summary: str = ""  # the activity's summary (user metadata), when the workflow gave one

    @property
    def wait_ms(self) -> float | None:
        return None if self.started_ms is None else self.started_ms - self.scheduled_ms

    @property
    def work_ms(self) -> float | None:
        if self.started_ms is None or self.closed_ms is None:
            return None
        return self.closed_ms - self.started_ms

    @property
    def total_ms(self) -> float | None:
        return None if self.closed_ms is None else self.closed_ms - self.scheduled_ms


@dataclass
class Execution:
    """One closed execution and its steps."""

    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    started_at: datetime
    total_ms: float
    status: str
    steps: list[Step]
    input: PayloadFacts = field(default_factory=lambda: NO_PAYLOAD)
    search_attributes: str = "{}"  # JSON: name -> value as text, the last each was set to

    @property
    def attributes(self) -> dict[str, str]:
        return dict(json.loads(self.search_attributes or "{}"))


def _time(event: HistoryEvent) -> datetime:
    return event.event_time.ToDatetime()


def _encoded_message(failure: Failure) -> str | None:
    """The message of a failure whose SDK moved it into an encoded-attributes payload (the message then reads
    "Encoded failure"), when that payload is plain JSON; an encrypted one stays unread."""
    attributes = failure.encoded_attributes if failure.HasField("encoded_attributes") else None
    if attributes is None or attributes.metadata.get("encoding") != b"json/plain":
        return None
    try:
        message = json.loads(attributes.data).get("message")
    except (ValueError, AttributeError):
        return None
    return message if isinstance(message, str) else None


def _failure_text(failure: Failure) -> str:
    """The failure's type (an application failure's) and its messages down the cause chain."""
    messages = []
    current = failure
    while True:
        message = _encoded_message(current) or current.message
        if message:
            messages.append(message)
        if not current.HasField("cause"):
            break
        current = current.cause
    kind = failure.application_failure_info.type if failure.HasField("application_failure_info") else ""
    text = ": ".join(messages)
    return f"{kind}: {text}" if kind and text else (kind or text)


def execution_of(history: WorkflowHistory) -> Execution:
    """The execution's steps, in the order they were scheduled."""
    events = list(history.events)
    first, last = events[0], events[-1]
    started = first.workflow_execution_started_event_attributes
    t0 = _time(first)

    def ms(event: HistoryEvent) -> float:
        return (_time(event) - t0).total_seconds() * 1000

    def scheduled(kind: str, name: str, queue: str, event: HistoryEvent, arguments: Payloads) -> Step:
        return Step(
            history.workflow_id,
            started.original_execution_run_id,
            kind,
            name,
            event.event_id,
            queue,
            ms(event),
            input=payload_facts(arguments),
            summary=plain_text(event.user_metadata.summary) if event.HasField("user_metadata") else "",
        )

    steps: dict[int, Step] = {}
    found_attributes: dict[str, str] = {}
    _search_attributes(started.search_attributes, found_attributes)
    for event in events:
        kind = event.WhichOneof("attributes")
        if kind == "upsert_workflow_search_attributes_event_attributes":
            _search_attributes(
                event.upsert_workflow_search_attributes_event_attributes.search_attributes, found_attributes
            )
        if kind == "activity_task_scheduled_event_attributes":
            a = event.activity_task_scheduled_event_attributes
            steps[event.event_id] = scheduled("activity", a.activity_type.name, a.task_queue.name, event, a.input)
        elif kind == "activity_task_started_event_attributes":
            started_task = event.activity_task_started_event_attributes
            step = steps.get(started_task.scheduled_event_id)
            if step is not None:
                step.started_ms, step.attempt = ms(event), max(1, started_task.attempt)
                if started_task.HasField("last_failure"):
                    step.last_failure = _failure_text(started_task.last_failure)
        elif kind == "start_child_workflow_execution_initiated_event_attributes":
            c = event.start_child_workflow_execution_initiated_event_attributes
            steps[event.event_id] = scheduled("child", c.workflow_type.name, c.task_queue.name, event, c.input)
        elif kind == "child_workflow_execution_started_event_attributes":
            step = steps.get(event.child_workflow_execution_started_event_attributes.initiated_event_id)
            if step is not None:
                step.started_ms = ms(event)
        elif kind == "timer_started_event_attributes":
            steps[event.event_id] = Step(
                history.workflow_id,
                started.original_execution_run_id,
                "timer",
                "timer",
                event.event_id,
                "",
                ms(event),
                started_ms=ms(event),
            )
        elif kind in _OUTCOMES:
            attributes = getattr(event, kind)
            key = getattr(attributes, "scheduled_event_id", 0) or getattr(attributes, "initiated_event_id", 0)
            key = key or getattr(attributes, "started_event_id", 0)  # timers: the TimerStarted event
            step = steps.get(key)
            if step is None:
                continue
            step.closed_ms, step.outcome = ms(event), _OUTCOMES[kind]
            fields = attributes.DESCRIPTOR.fields_by_name
            if "failure" in fields and attributes.HasField("failure"):
                step.failure = _failure_text(attributes.failure)
            if "result" in fields and attributes.HasField("result"):
                step.result = payload_facts(attributes.result)
    closed = last.WhichOneof("attributes") or ""
    status = closed.removeprefix("workflow_execution_").removesuffix("_event_attributes")
    return Execution(
        history.workflow_id,
        started.original_execution_run_id,
        started.workflow_type.name,
        started.task_queue.name,
        t0,
        ms(last),
        status,
        sorted(steps.values(), key=lambda s: s.event_id),
        payload_facts(started.input),
        json.dumps(found_attributes, sort_keys=True),
    )
