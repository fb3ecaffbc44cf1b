"""Campaign operations shared by the CLI, the demo and the tests: launch, answer, inspect, cancel."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import col, select
from temporalio.api.enums.v1 import IndexedValueType, TaskQueueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from ratchet.approvals import default_key_path, sign_answer, signing_key_path
from ratchet.config.compatibility import unsupported_by_target
from ratchet.config.loading import check_databases, load_playbook, load_target
from ratchet.config.playbook import Playbook
from ratchet.config.target import Target
from ratchet.contracts import (
    ApprovalInput,
    CalibrationInput,
    CalibrationResult,
    CampaignInput,
    CampaignStatus,
    EndpointStats,
    RejectionInput,
    RolloutDecision,
)
from ratchet.errors import NotFoundError, RatchetError
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import Campaign
from ratchet.target_lock import holder_of
from ratchet.temporal.client import campaign_queue
from workflows import search_attributes as sa
from workflows.rollout import rollout_id


class RefusedError(RatchetError):
    """The campaign refused an answer (wrong phase, not an approver, unknown recommendation)."""


class TargetBusyError(RefusedError):
    """Another campaign runs on the target (its lock is held): a launch without ``queue`` is refused."""


def new_campaign_id(target: str) -> str:
    """A readable, unique workflow id: camp-<target>-<UTC time>-<random>."""
    return f"camp-{target}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


async def ensure_search_attributes(client: Client) -> None:
    """Register Ratchet's search attributes if the server lacks them (a cluster not started by us)."""
    service = client.operator_service
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    missing = {k.name for k in sa.ALL} - set(existing.custom_attributes)
    if missing:
        await service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for name in missing},
            )
        )


def checked_files(playbook_file: Path, target_file: Path, auto_approve_as: str | None) -> tuple[Playbook, Target]:
    """Both files read and checked against each other (and the target's databases), or a RatchetError naming
    what is wrong: nothing is started or contacted before."""
    playbook = load_playbook(playbook_file)
    target = load_target(target_file)
    check_databases(target_file, target)
    unsupported = unsupported_by_target(playbook, target)
    if unsupported:
        raise RatchetError(f"{playbook_file} against {target_file} (kind {target.kind}): " + "; ".join(unsupported))
    if auto_approve_as is not None and auto_approve_as not in playbook.approvers:
        raise RatchetError(
            f"{playbook_file}: approvers: {auto_approve_as!r} is not an approver; valid: {', '.join(playbook.approvers)}"
        )
    return playbook, target


def campaign_input(
    settings: Settings,
    campaign_id: str,
    playbook: Playbook,
    target: Target,
    playbook_file: Path,
    target_file: Path,
    **choices: Any,
) -> CampaignInput:
    """A campaign's input from its checked files and this client's settings (its task queues); ``choices``:
    the launch's or the schedule's own (auto-approval, queueing, ...). An empty id: the workflow id."""
    return CampaignInput(
        campaign_id=campaign_id,
        playbook=playbook,
        target=target,
        playbook_file=str(playbook_file),
        target_file=str(target_file),
        task_queue_prefix=settings.task_queue_prefix,
        **choices,
    )


def start_details(playbook: Playbook, target: Target, playbook_file: Path, target_file: Path) -> dict[str, Any]:
    """What a campaign's execution shows in the Temporal UI and its searches, from its start."""
    return {
        "search_attributes": TypedSearchAttributes(
            [
                SearchAttributePair(sa.TARGET, target.name),
                SearchAttributePair(sa.PLAYBOOK, playbook.name),
                SearchAttributePair(sa.STATE, "running"),
                SearchAttributePair(sa.PHASE, "assessment"),
            ]
        ),
        "static_summary": f"Campaign on {target.name} ({playbook.name})",
        "static_details": f"Target: {target.base}\n\nPlaybook: {playbook_file}\n\nTarget file: {target_file}",
    }


async def launch(
    client: Client,
    settings: Settings,
    *,
    playbook_file: Path,
    target_file: Path,
    auto_approve_as: str | None = None,
    campaign_id: str | None = None,
    retry_disproved: bool = False,
    queue: bool = False,
    signing_key: Path | None = None,
) -> str:
    """Validate both files, then start the campaign workflow; returns its id. Nothing starts on bad input, nor
    (unless ``queue``: it then waits for its turn) while another campaign runs on the target."""
    playbook, target = checked_files(playbook_file, target_file, auto_approve_as)
    await ensure_search_attributes(client)
    holder = None if queue else await holder_of(client, target)
    if holder is not None:
        raise TargetBusyError(
            f"{target_file}: {target.name} ({target.base}) has a running campaign, {holder}: wait for it to end, "
            f"cancel it (`ratchet cancel {holder}`), or launch with --queue to start when it ends"
        )
    campaign_id = campaign_id or new_campaign_id(target.name)
    signed = auto_approval_signature(settings, playbook_file, playbook, campaign_id, auto_approve_as, signing_key)
    request = campaign_input(
        settings,
        campaign_id,
        playbook,
        target,
        playbook_file,
        target_file,
        auto_approve_as=auto_approve_as,
        retry_disproved=retry_disproved,
        queue=queue,
        **signed,
    )
    await client.start_workflow(
        "CampaignWorkflow",
        request,
        id=campaign_id,
        task_queue=campaign_queue(settings),
        **start_details(playbook, target, playbook_file, target_file),
    )
    return campaign_id


def auto_approval_signature(
    settings: Settings,
    playbook_file: Path,
    playbook: Playbook,
    campaign_id: str,
    auto_approve_as: str | None,
    signing_key: Path | None,
) -> dict[str, Any]:
    """With signed approvals, an auto-approver signs the campaign's auto-approval with their key."""
    if auto_approve_as is None or playbook.approvals.mode != "signed":
        return {}
    path = signing_key_path(settings.home, auto_approve_as, signing_key)
    if path is None:
        raise RatchetError(
            f"{playbook_file}: approvals: signed: --auto-approve as {auto_approve_as} needs their key (--key FILE, or "
            f"{default_key_path(settings.home, auto_approve_as)} made by `ratchet keys create {auto_approve_as}`)"
        )
    signed_at, signature = sign_answer(
        path, campaign_id=campaign_id, action="auto-approve", phase="", approver=auto_approve_as, only=None
    )
    return {"auto_approve_signed_at": signed_at, "auto_approve_signature": signature}


async def calibrate(
    client: Client,
    settings: Settings,
    *,
    playbook_file: Path,
    target_file: Path,
    runs: int,
    detect: float,
    power: float,
) -> CalibrationResult:
    """Run A/A load runs of the target (nothing changed) and measure their noise; waits for the result."""
    playbook = load_playbook(playbook_file)
    target = load_target(target_file)
    calibration_id = f"calibrate-{target.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    request = CalibrationInput(
        calibration_id=calibration_id,
        target=target,
        playbook=playbook,
        runs=runs,
        detect=detect,
        power=power,
        task_queue_prefix=settings.task_queue_prefix,
    )
    return await client.execute_workflow(
        "CalibrationWorkflow",
        request,
        id=calibration_id,
        task_queue=campaign_queue(settings),
        result_type=CalibrationResult,
        static_summary=f"Calibration of {target.name}: {runs} A/A runs",
    )


def handle(client: Client, campaign_id: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(campaign_id)


async def get_status(client: Client, campaign_id: str, store_url: str | None = None) -> CampaignStatus:
    """The campaign's status: from the workflow while it runs, from the store once it has closed.

    A closed workflow can only answer a query while some worker replays it; the store holds the final
    status the campaign recorded, so `ratchet status` works after the demo's worker has gone.
    """
    try:
        description = await handle(client, campaign_id).describe()
    except RPCError as exc:
        if "not found" in str(exc).lower():
            raise NotFoundError(f"no campaign with id {campaign_id!r} (see `ratchet list`)") from None
        raise
    if description.status not in (None, WorkflowExecutionStatus.RUNNING) and store_url:
        recorded = stored_status(store_url, campaign_id)
        if recorded is not None and recorded.finished:
            return recorded
    return await handle(client, campaign_id).query("status", result_type=CampaignStatus)


def stored_status(store_url: str, campaign_id: str) -> CampaignStatus | None:
    """The last status the campaign recorded in the store, if any."""
    with session_for(store_url) as session:
        row = session.get(Campaign, campaign_id)
    return CampaignStatus.model_validate_json(row.status_json) if row is not None else None


async def _update(client: Client, campaign_id: str, name: str, answer: Any, *, workflow_id: str = "") -> str:
    try:
        return str(await handle(client, workflow_id or campaign_id).execute_update(name, answer, result_type=str))
    except WorkflowUpdateFailedError as exc:
        cause = getattr(exc.cause, "message", None) or str(exc.cause)
        raise RefusedError(f"refused: {cause}") from None
    except RPCError as exc:
        what = "rollout" if workflow_id else "campaign"
        if "already completed" in str(exc).lower():
            raise NotFoundError(
                f"the {what} of campaign {campaign_id!r} has already ended: `ratchet status {campaign_id}` says how"
            ) from None
        if "not found" in str(exc).lower():
            raise NotFoundError(f"no running {what} for campaign {campaign_id!r}") from None
        raise


async def decide_rollout(client: Client, campaign_id: str, action: str, decision: RolloutDecision) -> str:
    """Promote (go on at once) or abort (roll back) the campaign's running rollout to production."""
    return await _update(client, campaign_id, action, decision, workflow_id=rollout_id(campaign_id))


async def approve(client: Client, campaign_id: str, answer: ApprovalInput) -> str:
    """Approve the waiting gate; RefusedError says why when the campaign refuses."""
    return await _update(client, campaign_id, "approve", answer)


async def reject(client: Client, campaign_id: str, answer: RejectionInput) -> str:
    """Reject the waiting gate with a reason."""
    return await _update(client, campaign_id, "reject", answer)


async def cancel(client: Client, campaign_id: str) -> None:
    """Ask the campaign to stop; it undoes its changes before it ends."""
    try:
        await handle(client, campaign_id).cancel()
    except RPCError as exc:
        if "not found" in str(exc).lower():
            raise NotFoundError(f"no running campaign with id {campaign_id!r}") from None
        raise


async def campaign_workers(client: Client, settings: Settings) -> int:
    """How many workers poll the campaigns' queue now: none, and a cancelled campaign's changes wait for one."""
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=campaign_queue(settings)),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    described = await client.workflow_service.describe_task_queue(request)
    return len(described.pollers)


@dataclass
class CampaignListing:
    campaign_id: str
    workflow_status: str
    started: datetime | None
    closed: datetime | None
    target: str
    playbook: str
    state: str
    phase: str


async def list_campaigns(client: Client, *, limit: int = 50) -> list[CampaignListing]:
    """Campaigns known to Temporal, newest first."""
    found = []
    async for execution in client.list_workflows("WorkflowType = 'CampaignWorkflow'", limit=limit):
        attrs = execution.typed_search_attributes
        status = execution.status or WorkflowExecutionStatus.RUNNING
        found.append(
            CampaignListing(
                campaign_id=execution.id,
                workflow_status=status.name.lower().replace("_", "-"),
                started=execution.start_time,
                closed=execution.close_time,
                target=attrs.get(sa.TARGET) or "",
                playbook=attrs.get(sa.PLAYBOOK) or "",
                state=attrs.get(sa.STATE) or "",
                phase=attrs.get(sa.PHASE) or "",
            )
        )
    return sorted(found, key=lambda c: c.started or datetime.min.replace(tzinfo=UTC), reverse=True)


def stored_campaigns(store_url: str, *, limit: int = 50) -> list[CampaignListing]:
    """Campaigns as this machine's store last recorded them, newest first (when Temporal cannot be asked)."""
    with session_for(store_url) as session:
        rows = session.exec(select(Campaign).order_by(col(Campaign.created_at).desc()).limit(limit)).all()
    found = []
    for row in rows:
        status = CampaignStatus.model_validate_json(row.status_json)
        found.append(
            CampaignListing(
                campaign_id=row.id,
                workflow_status="(store)",
                started=row.created_at,
                closed=row.updated_at if status.finished else None,
                target=row.target,
                playbook=row.playbook,
                state=row.state,
                phase=status.phase.value if status.phase else "",
            )
        )
    return found


async def live_progress(client: Client, campaign_id: str) -> list[dict[str, Any]]:
    """Heartbeat details of the campaign's running activities (k6 progress: requests, rate, p95)."""
    description = await handle(client, campaign_id).describe()
    converter = client.data_converter
    progress = []
    for pending in description.raw_description.pending_activities:
        details: dict[str, Any] = {"activity": pending.activity_type.name, "attempt": pending.attempt}
        if pending.heartbeat_details.payloads:
            values = await converter.decode(pending.heartbeat_details.payloads)
            if values and isinstance(values[0], dict):
                details |= values[0]
        progress.append(details)
    return progress


def status_summary(status: CampaignStatus) -> dict[str, Any]:
    """Machine-readable status: the whole status plus a per-endpoint before/after view.

    Per endpoint: ``baseline`` (the assessment's run), ``validation`` (the last validation run with the
    changes in place), and with a verdict ``before``/``after`` (each arm's requests pooled), the ratio of the
    verdict's metric with its interval, the p-values and the verdict."""
    endpoints: dict[str, dict[str, Any]] = {}

    def numbers(s: EndpointStats) -> dict[str, Any]:
        return {"p50": s.p50, "p95": s.p95, "p99": s.p99, "requests": s.requests, "error_rate": s.error_rate}

    for label, run in (("baseline", status.baseline), ("validation", status.validation)):
        for s in run.endpoints if run else []:
            endpoints.setdefault(s.endpoint, {})[label] = numbers(s)
    for v in status.verdicts:
        entry = endpoints.setdefault(v.endpoint, {})
        entry["before"], entry["after"] = numbers(v.before), numbers(v.after)
        entry["verdict"] = v.verdict.value
        entry["measured_at"] = v.measured_at  # whose clock before/after are: the client's, or the server's spans
        entry |= {"metric": v.metric, "ratio": v.ratio, "ratio_low": v.ratio_low, "ratio_high": v.ratio_high}
        entry["runs_per_arm"] = v.runs_after
        entry["requests"] = {"before": v.before.requests, "after": v.after.requests}
        entry["detectable_change"] = v.detectable_change
        if status.validation_load is not None and v.endpoint in status.validation_load.focus:
            entry["validation_rate"] = status.validation_load.focus[v.endpoint]
            entry["needed_per_run"] = status.validation_load.needed_per_run.get(v.endpoint)
        entry["p95_ratio"] = v.p95_ratio
        entry["p_value_faster"] = v.p_value_faster
        entry["p_value_slower"] = v.p_value_slower
        entry["explanation"] = v.explanation
    return {
        "campaign_id": status.campaign_id,
        "state": status.state.value,
        "outcome": status.outcome,
        "outcome_detail": status.outcome_detail,
        "phase": status.phase.value if status.phase else None,
        "endpoints": endpoints,
        "applied": [c.model_dump(mode="json") for c in status.changes if c.state.value in ("applied", "kept")],
        "rolled_back": [c.model_dump(mode="json") for c in status.changes if c.state.value == "rolled-back"],
        "report_html": status.report_html,
        "report_markdown": status.report_markdown,
        "status": status.model_dump(mode="json"),
    }
