"""The gradual rollout to production (a child workflow of the campaign, started here on its own): a lever
rolled out in steps to a second shop instance, its guard against the validated numbers, and the person's abort."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.measurement import MeasurementActivities
from ratchet.config.common import Role
from ratchet.config.playbook import Playbook
from ratchet.config.target import Lever, Target
from ratchet.contracts import (
    LoadTestRequest,
    LoadTestResult,
    RolloutChange,
    RolloutInput,
    RolloutResult,
)
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue
from tests.campaign_helpers import ratchet_cli
from tests.conftest import StartShop, copy_durably
from workflows.rollout import rollout_id

# Answers of the product endpoint made 20x slower, for the request share the rollout step gives it.
SLOW_PRODUCTS = {
    "name": "slow-products",
    "kind": "http",
    "role": "devops-engineer",
    "rollout": True,
    "addresses": [{"finding": "slow-endpoint", "endpoint": "product"}],
    "apply": [
        {
            "method": "POST",
            "url": "{{ target.base_url }}/admin/flags",
            "json": {
                "injected_slowdown": {"/products/{product_id}": 20.0},
                "rollout_percent": {"injected_slowdown": "{{ percent }}"},
            },
        }
    ],
    "rollback": [
        {
            "method": "POST",
            "url": "{{ target.base_url }}/admin/flags",
            "json": {"injected_slowdown": {}, "rollout_percent": {"injected_slowdown": 100}},
        }
    ],
    "check": {
        "method": "GET",
        "url": "{{ target.base_url }}/admin/flags",
        # At the asked share; rolling back (percent none), at any share.
        "applied_when": "response.json.injected_slowdown != {} and (percent is none or "
        "response.json.rollout_percent.get('injected_slowdown', 100) == percent)",
    },
}


def production_target(url: str) -> Target:
    return Target.model_validate(
        {
            "name": "shop-production",
            "base_url": url,
            "endpoints": [{"name": "product", "path": "/products/{id}", "examples": [{"id": i} for i in (1, 77, 512)]}],
            "levers": [SLOW_PRODUCTS],
        }
    )


def rollout_playbook(*, min_excess_ms: float = 5, **rollout: object) -> Playbook:
    return Playbook.model_validate(
        {
            "name": "rollout-test",
            "approvers": ["alice"],
            "load": {"rate": 60, "duration": "4s", "warmup": "1s"},
            "validation": {"min_effect_ms": 1},
            "deployment": {"guard": {"p95_min_excess_ms": min_excess_ms}, "rollout": {"bake": "4s", **rollout}},
        }
    )


async def validated_run(settings: Settings, target: Target, playbook: Playbook) -> LoadTestResult:
    """The guard's reference: the unchanged production measured once (a campaign passes its validation's run)."""
    request = LoadTestRequest(
        campaign_id="rollout-reference",
        label="validated",
        target=target,
        rate=playbook.load.rate,
        duration_s=4,
        warmup_s=1,
        max_vus=50,
        request_timeout_s=10,
    )
    return await ActivityEnvironment().run(MeasurementActivities(settings).run_load_test, request)


def rollout_input(
    settings: Settings,
    target: Target,
    playbook: Playbook,
    validated: LoadTestResult,
    lever: Lever | None = None,
    role: Role = Role.DEVOPS_ENGINEER,
) -> RolloutInput:
    """The rollout of ``lever`` (the target's first unless given) to ``target``, production."""
    return RolloutInput(
        campaign_id=f"rollout-test-{uuid.uuid4().hex[:6]}",
        changes=[RolloutChange(change_id="C1", lever=lever or target.levers[0], role=role)],
        production=target,
        playbook=playbook,
        validated=validated,
        task_queue_prefix=settings.task_queue_prefix,
    )


async def rolled_out(client: Client, settings: Settings, request: RolloutInput) -> RolloutResult:
    """The rollout run to its end, as the campaign starts it (a child with the campaign's id and "-rollout")."""
    return await client.execute_workflow(
        "RolloutWorkflow",
        request,
        id=rollout_id(request.campaign_id),
        task_queue=campaign_queue(settings),
        result_type=RolloutResult,
    )


def flags(url: str) -> dict[str, object]:
    return httpx.get(f"{url}/admin/flags").json()


@pytest.fixture
def production(start_shop: StartShop, shop_template: Path, tmp_path: Path) -> str:
    database = tmp_path / "production.db"
    copy_durably(shop_template, database)
    return start_shop(database)


async def test_a_rollout_breached_at_the_50_percent_step_ends_fully_undone(
    client: Client, settings: Settings, worker: None, production: str
) -> None:
    target = production_target(production)
    playbook = rollout_playbook(steps=[1, 50, 100])
    validated = await validated_run(settings, target, playbook)
    request = rollout_input(settings, target, playbook, validated)
    result = await rolled_out(client, settings, request)

    assert result.outcome == "rolled-back", result
    assert result.baseline_run_id is not None  # the guard's reference: production before the first step
    assert [step.percent for step in result.steps] == [1, 50]
    first, second = result.steps
    assert first.guard is not None and not first.guard.breached, first.guard
    assert second.guard is not None and second.guard.breached and "product" in second.guard.reasons[0]
    assert "of requests above the reference p95" in second.guard.reasons[0]
    assert result.reason.startswith("guard breached at 50%")
    # Fully undone in production: no slowdown and no partial rollout left.
    assert flags(production)["injected_slowdown"] == {} and flags(production)["rollout_percent"] == {}


async def test_a_person_aborts_a_rollout_between_steps_and_it_is_undone(
    client: Client, settings: Settings, worker: None, production: str
) -> None:
    target = production_target(production)
    # A guard that watches errors only: this test is about a person's abort. With the latency guard, a shared
    # host that slowed through the first step's bake ended the rollout before the person could (CI, 2026-12-06).
    playbook = rollout_playbook(steps=[1, 100], pause="10m", min_excess_ms=100000)
    validated = await validated_run(settings, target, playbook)
    request = rollout_input(settings, target, playbook, validated)
    handle = await client.start_workflow(
        "RolloutWorkflow",
        request,
        id=rollout_id(request.campaign_id),
        task_queue=campaign_queue(settings),
        result_type=RolloutResult,
    )
    # Poll (with a deadline) until the first step has held and the rollout waits in its pause.
    deadline = time.monotonic() + 120
    while True:
        steps = await handle.query("steps")
        if steps and steps[0].get("guard") is not None:
            break
        assert time.monotonic() < deadline, "the first step never finished"
        await handle.describe()  # one round trip per poll, not a fixed sleep
    assert flags(production)["rollout_percent"] == {"injected_slowdown": 1.0}
    # Only the playbook's approvers decide; then the CLI a person uses.
    refused = await ratchet_cli(settings, "rollout", "abort", request.campaign_id, "--as", "mallory")
    said = " ".join(refused.stderr.split())  # the terminal wraps long lines
    assert refused.returncode != 0 and "'mallory' is not an approver" in said, refused.stderr
    shown = await ratchet_cli(
        settings, "rollout", "abort", request.campaign_id, "--as", "alice", "--reason", "the dashboards look odd"
    )
    assert shown.returncode == 0 and "abort requested by alice" in shown.stdout, shown.stdout + shown.stderr
    result = await handle.result()
    assert result.outcome == "aborted" and result.reason == "aborted by alice: the dashboards look odd"
    assert [s.percent for s in result.steps] == [1]
    assert flags(production)["injected_slowdown"] == {} and flags(production)["rollout_percent"] == {}
