"""Helpers for the end-to-end campaign tests: waiting on campaign state, reading the lever ledger."""

from __future__ import annotations

import asyncio
import gzip
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlmodel import select
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from activities.levers import MEASUREMENT_NOTE
from ratchet import campaigns
from ratchet.contracts import ApprovalInput, CampaignStatus, Recommendation
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import LeverAction
from ratchet.temporal.codecs import data_converter
from workflows import WORKFLOW_RUNNER
from workflows.campaign import CampaignWorkflow

ROOT = Path(__file__).resolve().parents[1]


def ratchet_env(settings: Settings) -> dict[str, str]:
    """The environment that points a ratchet CLI or worker process at this test's server and data."""
    return os.environ | {
        "RATCHET_HOME": str(settings.home),
        "RATCHET_TEMPORAL_ADDRESS": settings.temporal_address,
        "RATCHET_TASK_QUEUE_PREFIX": settings.task_queue_prefix,
        # The test's own trace receiver: a worker elsewhere would wait for one on the default port, and refuse.
        "RATCHET_OTLP_PORT": str(settings.otlp_port),
    }


async def run_command(argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command without blocking the event loop (in-process workers share it)."""
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env, timeout=120)


async def ratchet_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """`ratchet ARGS` as a user would type it, against this test's server and data."""
    return await run_command([sys.executable, "-m", "ratchet.cli", *args], ratchet_env(settings))


async def wait_for(
    client: Client,
    campaign_id: str,
    condition: Callable[[CampaignStatus], bool],
    *,
    timeout_s: float = 180,
    what: str = "condition",
) -> CampaignStatus:
    """Poll the status query until ``condition`` holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = await campaigns.get_status(client, campaign_id)
        except Exception:  # the workflow may not have run its first task yet
            status = None
        if status is not None and condition(status):
            return status
        if status is not None and status.finished:
            raise AssertionError(
                f"campaign ended ({status.state.value}: {status.outcome}) before {what}\n{why_it_ended(status)}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last status: {status}")
        await asyncio.sleep(0.2)


async def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


def why_it_ended(status: CampaignStatus) -> str:
    """What a test's failure message needs to tell a flaky run from a broken one: the outcome's detail, the
    verdicts with their explanations, the changes and the last events."""
    lines = [f"detail: {status.outcome_detail}"]
    lines += [f"verdict {v.endpoint}: {v.verdict.value} ({v.measured_at}): {v.explanation}" for v in status.verdicts]
    lines += [f"change {c.lever}: {c.state.value} {c.reason}" for c in status.changes]
    lines += [f"{e.at:%H:%M:%S} {e.message}" for e in status.events[-15:]]
    return "\n".join(lines)


async def wait_for_progress(
    client: Client, campaign_id: str, condition: Callable[[dict], bool], *, timeout_s: float = 120
) -> dict:
    """Poll the heartbeats of the campaign's running activities until one satisfies ``condition``."""
    deadline = time.monotonic() + timeout_s
    while True:
        for progress in await campaigns.live_progress(client, campaign_id):
            if condition(progress):
                return progress
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for activity progress")
        await asyncio.sleep(0.2)


async def approved_campaign(
    client: Client,
    settings: Settings,
    playbook: Path,
    target: Path,
    chosen: Callable[[Recommendation], bool],
    count: int,
) -> tuple[str, CampaignStatus]:
    """A campaign whose ``count`` levered recommendations picked by ``chosen`` are approved at planning, then
    its deployment; its id and final status."""
    campaign_id = await campaigns.launch(client, settings, playbook_file=playbook, target_file=target)
    status = await wait_for(client, campaign_id, waiting_at("planning"), what="the planning gate")
    picked = [r.id for r in status.recommendations if r.lever is not None and chosen(r)]
    assert len(picked) == count, [(r.id, r.lever and r.lever.name) for r in status.recommendations]
    await campaigns.approve(client, campaign_id, ApprovalInput(phase="planning", approver="alice", only=picked))
    await wait_for(client, campaign_id, waiting_at("deployment"), what="the deployment gate", timeout_s=600)
    await campaigns.approve(client, campaign_id, ApprovalInput(phase="deployment", approver="alice"))
    return campaign_id, await finish(client, campaign_id)


def waiting_at(phase: str) -> Callable[[CampaignStatus], bool]:
    return lambda s: s.waiting is not None and s.waiting.phase.value == phase


async def finish(client: Client, campaign_id: str, timeout_s: float = 120) -> CampaignStatus:
    """Wait for the workflow to close and return its final status (from the query)."""
    handle = campaigns.handle(client, campaign_id)
    try:
        await asyncio.wait_for(handle.result(), timeout=timeout_s)
    except TimeoutError:
        status = await campaigns.get_status(client, campaign_id)
        pending = await campaigns.live_progress(client, campaign_id)
        events = "\n".join(f"  {e.at:%H:%M:%S} {e.message}" for e in status.events)
        raise AssertionError(
            f"campaign still {status.state.value} after {timeout_s}s; pending {pending}\n{events}"
        ) from None
    except Exception:
        pass  # failed or cancelled workflows raise here; the status tells what happened
    return await campaigns.get_status(client, campaign_id)


def ledger(settings: Settings, campaign_id: str) -> list[LeverAction]:
    """Every lever action the campaign attempted, oldest first."""
    with session_for(settings.resolved_store_url) as session:
        return list(
            session.exec(select(LeverAction).where(LeverAction.campaign_id == campaign_id).order_by(LeverAction.id))  # type: ignore[arg-type]
        )


def effects(settings: Settings, campaign_id: str, action: str) -> list[LeverAction]:
    """The saga's lever actions that changed the target: not the no-op repeats, nor the validation's
    undoing and re-applying of the changes to measure both arms."""
    return [
        row
        for row in ledger(settings, campaign_id)
        if row.action == action and row.changed and not row.detail.endswith(MEASUREMENT_NOTE)
    ]


async def assert_replays(client: Client, campaign_id: str) -> None:
    """The recorded history replays against the current workflow code (determinism).

    With ``RATCHET_RECORD_HISTORIES=DIR`` the history is also kept there, gzipped and named by the test, for
    ``tests/histories/`` (what later versions must still replay)."""
    history: WorkflowHistory = await campaigns.handle(client, campaign_id).fetch_history()
    replayer = Replayer(workflows=[CampaignWorkflow], data_converter=data_converter(), workflow_runner=WORKFLOW_RUNNER)
    await replayer.replay_workflow(history)
    folder = os.environ.get("RATCHET_RECORD_HISTORIES")
    if folder:
        test = os.environ.get("PYTEST_CURRENT_TEST", campaign_id).split(" ")[0].split("::")[-1]
        name = re.sub(r"[^A-Za-z0-9]+", "-", test.removeprefix("test_")).strip("-")
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / f"{name}.json.gz").write_bytes(gzip.compress(history.to_json().encode()))
