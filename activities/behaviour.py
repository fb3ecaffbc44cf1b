"""The test-engineer's functional safety: what the target answers before any change, and whether it still
does after each one (``record_behaviour``, ``check_behaviour``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from activities.probing import fill
from ratchet.analysis.behaviour import Answer, answer, differences
from ratchet.api_contract import contract_failures
from ratchet.config.target import Scenario, Target
from ratchet.contracts import BehaviourCheck, BehaviourRequest, BehaviourSummary
from ratchet.errors import LeverError, MeasurementError
from ratchet.settings import Settings
from ratchet.templating import evaluate, render, render_tree
from ratchet.workflow_load.run import connect_target


class Reference(BaseModel):
    """What was recorded before any change."""

    answers: list[Answer] = Field(default_factory=list)
    scenarios: list[str] = Field(default_factory=list, description="Scenarios that held before any change.")
    contract_failures: list[str] | None = Field(
        None, description="schemathesis's failures before any change (None: no OpenAPI contract checked)."
    )


def _get_answers(client: httpx.Client, target: Target) -> list[Answer]:
    volatile = set(target.behaviour.volatile)
    found = []
    for endpoint in target.http_endpoints:
        if endpoint.method != "GET":
            continue
        for example in (endpoint.examples or [{}])[: target.behaviour.examples_per_endpoint or 0]:
            path = fill(endpoint.http_path, example)
            response = client.get(path)
            found.append(
                answer(
                    f"GET {path}",
                    response.status_code,
                    response.headers.get("content-type", ""),
                    response.content,
                    volatile,
                )
            )
    return found


def _run_scenario(client: httpx.Client, scenario: Scenario) -> str:
    """ "" when every step's expectation held, else which step failed and what it answered."""
    saved: dict[str, Any] = {}
    for number, step in enumerate(scenario.steps, start=1):
        where = f"scenario {scenario.name!r} step {number}"
        context = {"saved": saved}
        path = render(step.path, context, where=where)
        body = render_tree(step.json_body, context, where=where) if step.json_body is not None else None
        response = client.request(step.method, path, json=body)
        try:
            payload = response.json()
        except ValueError:
            payload = None
        context["response"] = {"status": response.status_code, "json": payload, "text": response.text}
        if not evaluate(step.expect, context, where=where):
            return f"{where} ({step.method} {path}): expected {step.expect}, got {response.status_code} {response.text[:200]}"
        for name, expression in step.save.items():
            saved[name] = evaluate(expression, context, where=f"{where} save {name}")
    return ""


async def workflow_answers(target: Target, client: Client, id_prefix: str) -> list[Answer]:
    """A temporal-workflow target's answers: the results of each endpoint's first inputs, executed now (a
    failed execution answers 500 with its failure)."""
    volatile = set(target.behaviour.volatile)
    found = []
    for endpoint in target.endpoints:
        call = endpoint.workflow
        if call is None:
            continue
        for n, given in enumerate(call.inputs[: target.behaviour.examples_per_endpoint]):
            try:
                result = await client.execute_workflow(
                    call.type,
                    given,
                    id=f"{id_prefix}-{endpoint.name}-{n}-{uuid.uuid4().hex[:8]}",
                    task_queue=call.task_queue,
                    execution_timeout=call.timeout,
                )
                status, body = 200, json.dumps(result)
            except WorkflowFailureError as failure:
                status, body = 500, json.dumps({"failure": str(failure.cause or failure)})
            found.append(
                answer(f"{call.type} {json.dumps(given)}", status, "application/json", body.encode(), volatile)
            )
    return found


class BehaviourActivities:
    """record_behaviour and check_behaviour, on the test-engineer's queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _client(self, target: Target) -> httpx.Client:
        return httpx.Client(base_url=target.base, timeout=60, headers={"accept-encoding": "gzip, deflate"})

    async def _workflow_answers(self, request: BehaviourRequest, purpose: str) -> list[Answer]:
        if not request.target.is_workflow:
            return []
        try:
            client = await connect_target(
                request.target, self.settings.temporal_address, self.settings.temporal_namespace
            )
        except MeasurementError as exc:
            raise ApplicationError(str(exc), type="MeasurementError") from None
        return await workflow_answers(request.target, client, f"{request.campaign_id}-{purpose}")

    def _record(self, request: BehaviourRequest, executed: list[Answer]) -> BehaviourSummary:
        target = request.target
        reference, notes = Reference(), []
        with self._client(target) as client:
            reference.answers = executed + _get_answers(client, target)
            for scenario in target.behaviour.scenarios:
                failed = _run_scenario(client, scenario)
                if failed:
                    notes.append(f"{failed} - already before any change: not checked")
                else:
                    reference.scenarios.append(scenario.name)
        if target.behaviour.api is not None:
            reference.contract_failures, summary = contract_failures(target, target.behaviour.api)
            already = f"; already before any change (the baseline): {'; '.join(reference.contract_failures)}"
            notes.append(summary + (already if reference.contract_failures else ""))
        out = self.settings.behaviour_file(request.campaign_id)
        out.write_text(reference.model_dump_json(indent=1))
        return BehaviourSummary(
            file=str(out), answers=len(reference.answers), scenarios=len(reference.scenarios), notes=notes
        )

    def _check(self, request: BehaviourRequest, executed: list[Answer]) -> BehaviourCheck:
        target = request.target
        reference = Reference.model_validate(json.loads(self.settings.behaviour_file(request.campaign_id).read_text()))
        with self._client(target) as client:
            found = differences(reference.answers, executed + _get_answers(client, target))
            for scenario in target.behaviour.scenarios:
                if scenario.name in reference.scenarios and (failed := _run_scenario(client, scenario)):
                    found.append(failed)
        if target.behaviour.api is not None and reference.contract_failures is not None:
            now, _ = contract_failures(target, target.behaviour.api)
            found += [
                f"API contract (schemathesis), new: {line}" for line in now if line not in reference.contract_failures
            ]
        return BehaviourCheck(same=not found, differences=found)

    @activity.defn(name="record_behaviour")
    async def record_behaviour(self, request: BehaviourRequest) -> BehaviourSummary:
        """Record every GET endpoint's answers (a workflow target's: its first inputs' results), run the
        scenarios and the OpenAPI contract, before any change."""
        executed = await self._workflow_answers(request, "behaviour-record")
        try:
            return await asyncio.to_thread(self._record, request, executed)
        except LeverError as exc:  # a scenario's template or expression is wrong: the target file's fault
            raise ApplicationError(f"target behaviour: {exc}", type="TargetError", non_retryable=True) from None

    @activity.defn(name="check_behaviour")
    async def check_behaviour(self, request: BehaviourRequest) -> BehaviourCheck:
        """Replay the recorded requests and the scenarios: the same answers, the same expectations held?"""
        executed = await self._workflow_answers(request, "behaviour-check")
        return await asyncio.to_thread(self._check, request, executed)
