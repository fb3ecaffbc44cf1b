"""Workers: the campaign workflow on its queue, each role's activities on the role's queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from ratchet import secrets
from ratchet.config.common import Role
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue
from roles import role_activities
from workflows import WORKFLOW_RUNNER
from workflows.calibration import CalibrationWorkflow
from workflows.campaign import CampaignWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.target_lock import TargetLockWorkflow
from workflows.watch import WatchWorkflow
from workflows.weekly import WeeklyReportWorkflow


def build_workers(
    client: Client, settings: Settings, roles: Iterable[Role], *, with_workflows: bool = True
) -> list[Worker]:
    """One Worker per task queue: the campaigns queue (workflows) and one per role (activities)."""
    workers = []
    if with_workflows:
        workers.append(
            Worker(
                client,
                task_queue=campaign_queue(settings),
                workflows=[
                    CampaignWorkflow,
                    CalibrationWorkflow,
                    RolloutWorkflow,
                    TargetLockWorkflow,
                    WatchWorkflow,
                    WeeklyReportWorkflow,
                ],
                workflow_runner=WORKFLOW_RUNNER,
            )
        )
    for role in roles:
        workers.append(
            Worker(
                client,
                task_queue=settings.task_queue(role.value),
                activities=role_activities(role, settings),
                # Give a running k6 the chance to stop and flush its samples on shutdown.
                graceful_shutdown_timeout=timedelta(seconds=10),
                # Live progress (k6 rate, p95) reaches the server, the CLI and the UI every second.
                max_heartbeat_throttle_interval=timedelta(seconds=1),
            )
        )
    return workers


async def run_workers(workers: list[Worker], stop: asyncio.Event | None = None) -> None:
    """Run workers until ``stop`` is set (or forever), then shut them all down."""
    secrets.mask_logs()
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        await (stop or asyncio.Event()).wait()
