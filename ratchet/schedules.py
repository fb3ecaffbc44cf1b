"""Campaigns on a timetable: Temporal Schedules that start the campaign workflow (visible in the Temporal UI
and `temporal schedule list`). A run that comes due while the previous one still runs is skipped."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from ratchet.campaigns import RefusedError, campaign_input, checked_files, ensure_search_attributes, start_details
from ratchet.config.loading import load_playbook
from ratchet.contracts import WeeklyInput
from ratchet.errors import NotFoundError, RatchetError
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.history import known_targets
from ratchet.temporal.client import campaign_queue

_PREFIX = "ratchet-schedule-"


def schedule_id(name: str) -> str:
    return _PREFIX + name


@dataclass(frozen=True)
class ScheduleView:
    name: str
    cron: str
    paused: bool
    note: str
    next_runs: list[datetime]
    recent_runs: list[str]


async def create(
    client: Client,
    settings: Settings,
    *,
    name: str,
    playbook_file: Path,
    target_file: Path,
    cron: str,
    auto_approve_as: str | None = None,
) -> str:
    """Check both files as a launch does, then create the schedule; returns its id. A run's campaign id is its
    workflow id: the schedule's id and the time it came due."""
    playbook, target = checked_files(playbook_file, target_file, auto_approve_as)
    if auto_approve_as is not None and playbook.approvals.mode == "signed":
        raise RatchetError(
            f"{playbook_file}: approvals: signed: a schedule cannot sign its runs' auto-approval in advance (a "
            "signature names its campaign); schedule without --auto-approve-as and approve each run, or use a "
            "playbook with plain approvals"
        )
    await ensure_search_attributes(client)
    request = campaign_input(
        settings, "", playbook, target, playbook_file, target_file, auto_approve_as=auto_approve_as
    )
    details = start_details(playbook, target, playbook_file, target_file)
    action = ScheduleActionStartWorkflow(
        "CampaignWorkflow",
        request,
        id=f"camp-{target.name}-{name}",
        task_queue=campaign_queue(settings),
        typed_search_attributes=details["search_attributes"],
        static_summary=details["static_summary"],
        static_details=details["static_details"],
    )
    note = f"{playbook.name} on {target.name} ({playbook_file}, {target_file})"
    return await _create(client, name, action, cron, note)


async def create_weekly(
    client: Client, settings: Settings, *, target_name: str, playbook_file: Path, cron: str
) -> tuple[str, str]:
    """A schedule that writes ``target_name``'s weekly report from the store and posts its summary to the
    playbook's webhook; returns (schedule name, id). The target must have campaigns in the store."""
    playbook = load_playbook(playbook_file)
    with session_for(settings.resolved_store_url) as session:
        targets = known_targets(session=session)
    if target_name not in targets:
        raise NotFoundError(f"no campaign for target {target_name!r} in the store; known targets: {', '.join(targets)}")
    name = f"weekly-{target_name}"
    action = ScheduleActionStartWorkflow(
        "WeeklyReportWorkflow",
        WeeklyInput(target=target_name, alerts=playbook.alerts, task_queue_prefix=settings.task_queue_prefix),
        id=f"weekly-{target_name}",
        task_queue=campaign_queue(settings),
        static_summary=f"Weekly report of {target_name}",
    )
    posted = "posted to the webhook" if playbook.alerts.webhook_url else "not posted: the playbook sets no webhook"
    return name, await _create(client, name, action, cron, f"weekly report of {target_name} ({posted})")


async def _create(client: Client, name: str, action: ScheduleActionStartWorkflow, cron: str, note: str) -> str:
    schedule = Schedule(
        action=action,
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=note),
    )
    try:
        # The server keeps the cron as calendars: the expression as given is kept in the memo, for the list.
        await client.create_schedule(schedule_id(name), schedule, memo={"cron": cron})
    except ScheduleAlreadyRunningError:
        raise RefusedError(
            f"a schedule named {name!r} exists: delete it first (`ratchet schedule delete {name}`)"
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.INVALID_ARGUMENT:
            raise RatchetError(
                f"--cron {cron!r}: {exc.message} (five fields: minute hour day-of-month month day-of-week, "
                "e.g. '0 9 * * 1')"
            ) from None
        raise
    return schedule_id(name)


async def listed(client: Client) -> list[ScheduleView]:
    """Ratchet's schedules, by name."""
    views = []
    async for entry in await client.list_schedules():
        if not entry.id.startswith(_PREFIX):
            continue
        described = await client.get_schedule_handle(entry.id).describe()
        spec, state = described.schedule.spec, described.schedule.state
        views.append(
            ScheduleView(
                name=entry.id.removeprefix(_PREFIX),
                cron=str(await described.memo_value("cron", "")) or ", ".join(spec.cron_expressions),
                paused=state.paused,
                note=state.note or "",
                next_runs=list(described.info.next_action_times[:3]),
                recent_runs=[a.action.workflow_id for a in described.info.recent_actions[-3:]],  # type: ignore[attr-defined]
            )
        )
    return sorted(views, key=lambda v: v.name)


async def pause(client: Client, name: str) -> None:
    await _known(name, client.get_schedule_handle(schedule_id(name)).pause(note="paused with ratchet"))


async def resume(client: Client, name: str) -> None:
    await _known(name, client.get_schedule_handle(schedule_id(name)).unpause(note="resumed with ratchet"))


async def delete(client: Client, name: str) -> None:
    await _known(name, client.get_schedule_handle(schedule_id(name)).delete())


async def trigger(client: Client, name: str) -> None:
    """Start a run now (as when it comes due: skipped while one runs)."""
    await _known(name, client.get_schedule_handle(schedule_id(name)).trigger())


async def _known(name: str, call: Awaitable[None]) -> None:
    try:
        await call
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise NotFoundError(f"no schedule named {name!r} (`ratchet schedule list` shows them)") from None
        raise
