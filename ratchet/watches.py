"""The standing watch from the client's side: start one per target, read what it saw, stop it."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from ratchet.campaigns import RefusedError, checked_files, ensure_search_attributes
from ratchet.contracts import WatchInput, WatchStatus
from ratchet.errors import NotFoundError
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue
from workflows.watch import watch_id


async def start(client: Client, settings: Settings, *, playbook_file: Path, target_file: Path) -> str:
    """Check both files as a launch does, then start the target's watch; returns its id. One watch per target:
    a second is refused while the first runs."""
    playbook, target = checked_files(playbook_file, target_file, None)
    await ensure_search_attributes(client)  # the campaigns it may launch are searched by them
    identifier = watch_id(target.name)
    try:
        await client.start_workflow(
            "WatchWorkflow",
            WatchInput(
                watch_id=identifier, playbook=playbook, target=target, task_queue_prefix=settings.task_queue_prefix
            ),
            id=identifier,
            task_queue=campaign_queue(settings),
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            static_summary=f"Watch of {target.name} ({playbook.name})",
            static_details=(
                f"Every {playbook.watch.interval}: {playbook.watch.rate:g} req/s for {playbook.watch.duration}; "
                f"a rise of {playbook.watch.degradation:.0%} lasting within {playbook.watch.window} is alerted"
                + (" and answered with a campaign" if playbook.watch.on_drift == "campaign" else "")
            ),
        )
    except WorkflowAlreadyStartedError as taken:
        raise RefusedError(
            f"{target_file}: {target.name} is already watched ({identifier}): `ratchet watch stop {target.name}` first"
        ) from taken
    return identifier


async def status(client: Client, target_name: str) -> WatchStatus:
    """What the running watch of a target saw (its latest run)."""
    handle = client.get_workflow_handle(watch_id(target_name))
    try:
        described = await handle.describe()
        if described.status != WorkflowExecutionStatus.RUNNING:
            ended = described.status.name.lower() if described.status is not None else "unknown"
            raise NotFoundError(f"{target_name} has no running watch (its last one is {ended})")
        return await handle.query("status", result_type=WatchStatus)
    except RPCError as failure:
        if failure.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"{target_name} has no watch: `ratchet watch start TARGET --playbook P`") from failure
        raise


async def stop(client: Client, target_name: str) -> WatchStatus:
    """Stop a target's watch after its probe in flight; returns what it had seen."""
    await status(client, target_name)  # a clear error when there is none
    handle = client.get_workflow_handle(watch_id(target_name), result_type=WatchStatus)
    await handle.signal("stop")
    ended: WatchStatus = await handle.result()
    return ended
