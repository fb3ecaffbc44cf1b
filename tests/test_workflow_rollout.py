"""The gradual rollout on a workflow application: production is another instance of the example pipeline, in
a namespace of its own; the provider lever routes a share of its executions at each step, each step baked by
executions driven in production and guarded against production as found."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from ratchet.config.common import Role
from ratchet.config.loading import load_target
from ratchet.config.playbook import Playbook
from ratchet.config.target import Production, TemporalCluster
from ratchet.settings import Settings
from ratchet.workflow_load.run import run_executions
from tests.conftest import ROOT, Pipeline, running_pipeline
from tests.test_rollout import rolled_out, rollout_input, validated_run

PIPELINE_TARGET = ROOT / "examples" / "pipeline" / "target.yaml"


async def _register(client: Client, namespace: str) -> None:
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86_400))
    )
    # A new namespace is served once the frontend's namespace cache has it (a deadline, not a sleep).
    async with asyncio.timeout(60):
        while True:
            try:
                await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
                await Client.connect(client.service_client.config.target_host, namespace=namespace)
                return
            except RPCError:
                await asyncio.sleep(0.2)


@pytest.fixture
async def production_pipeline(
    client: Client, temporal_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Pipeline]:
    """The pipeline as production: its own namespace, admin API and home. The target's own (staging) admin
    API is never called by a rollout."""
    namespace = f"production-{uuid.uuid4().hex[:8]}"
    await _register(client, namespace)
    queue = f"pipeline-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PIPELINE_ADMIN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PIPELINE_TASK_QUEUE", queue)
    with running_pipeline(
        (temporal_home / "address").read_text(), tmp_path / "production", queue, namespace
    ) as started:
        yield started


def _providers(settings: Settings, run_id: str | None) -> Counter[str]:
    """Which provider summarized each execution a run measured (from its histories)."""
    assert run_id is not None
    executions = run_executions(settings.samples_dir / run_id)["document"]
    return Counter(
        json.loads(step.result.text)["provider"]
        for execution in executions
        for step in execution.steps
        if step.name == "summarize" and step.result.text
    )


async def test_a_rollout_routes_a_share_of_production_executions_then_all_and_is_guarded_against_production(
    client: Client, settings: Settings, worker: None, production_pipeline: Pipeline
) -> None:
    production = production_pipeline
    # Eight slots in production: the bakes show the provider's effect, not a queue.
    httpx.post(f"{production.admin_url}/admin/settings", json={"activity_slots": 8}, timeout=60).raise_for_status()
    target = load_target(PIPELINE_TARGET).model_copy(
        update={
            "production": Production(
                base_url=production.admin_url,  # type: ignore[arg-type]
                temporal=TemporalCluster(namespace=production.namespace),
            )
        }
    )
    in_production = target.in_production()
    playbook = Playbook.model_validate(
        {
            "name": "workflow-rollout",
            "approvers": ["alice"],
            "load": {"rate": 4, "duration": "5s", "warmup": "1s"},
            "deployment": {"rollout": {"steps": [50, 100], "bake": "5s"}},
        }
    )
    validated = await validated_run(settings, in_production, playbook)
    lever = next(lever for lever in target.levers if lever.name == "provider-b")
    request = rollout_input(settings, in_production, playbook, validated, lever, Role.BACKEND_DEVELOPER)
    result = await rolled_out(client, settings, request)
    assert result.outcome == "completed", result
    assert [step.percent for step in result.steps] == [50, 100]
    assert all(step.guard is not None and not step.guard.breached for step in result.steps), result.steps

    # Production as found: all through A. At 50%, both (each execution drawn: with 20 or more measured, all
    # alike has a chance of 2 in a million). At 100%, all through B.
    assert set(_providers(settings, result.baseline_run_id)) == {"A"}
    half, whole = (_providers(settings, step.run_id) for step in result.steps)
    assert sum(half.values()) >= 16 and half["A"] > 0 and half["B"] > 0, half
    assert set(whole) == {"B"}, whole
    shown = httpx.get(f"{production.admin_url}/admin/settings", timeout=30).json()
    assert shown["provider"] == "B" and shown["provider_percent"] == 100, shown
