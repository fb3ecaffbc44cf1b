"""Following a campaign live in the terminal, asking the person at each gate when there is one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.prompt import Prompt
from temporalio.client import Client

from ratchet import campaigns
from ratchet.cli.views import campaign_view, plan_table
from ratchet.contracts import ApprovalInput, CampaignStatus, RejectionInput

Asker = Callable[[CampaignStatus], ApprovalInput | RejectionInput | None]


def ask_at_gate(console: Console, approver: str) -> Asker:
    """A prompt for interactive terminals: approve all, some (ids), or reject with a reason."""

    def ask(status: CampaignStatus) -> ApprovalInput | RejectionInput | None:
        waiting = status.waiting
        assert waiting is not None
        console.print()
        if waiting.question:
            console.print(f"[yellow]{waiting.question}[/]")
        if waiting.phase.value == "planning" and (table := plan_table(status)) is not None:
            console.print(table)
        choices = "[bold]y[/]es / [bold]n[/]o" + (
            " / recommendation ids (R1,R3)" if waiting.phase.value == "planning" else ""
        )
        answer = Prompt.ask(
            f"[yellow]Approve {waiting.phase.value}?[/] {choices}", console=console, default="y"
        ).strip()
        if answer.lower() in ("y", "yes"):
            return ApprovalInput(phase=waiting.phase, approver=approver)
        if answer.lower() in ("n", "no"):
            reason = Prompt.ask("Reason", console=console, default="rejected at the terminal")
            return RejectionInput(phase=waiting.phase, approver=approver, reason=reason)
        ids = [part.strip().upper() for part in answer.split(",") if part.strip()]
        return ApprovalInput(phase=waiting.phase, approver=approver, only=ids)

    return ask


async def follow(
    client: Client,
    campaign_id: str,
    console: Console,
    *,
    asker: Asker | None = None,
    interval_s: float = 1.0,
) -> CampaignStatus:
    """Show the campaign live until it ends; at a gate, ask (if an asker is given) and send the answer."""
    handle = campaigns.handle(client, campaign_id)
    result_task = asyncio.ensure_future(handle.result())
    if not console.is_terminal:
        return await _follow_in_lines(client, campaign_id, console, result_task, interval_s)
    asked_for: set[str] = set()
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while True:
                status = await campaigns.get_status(client, campaign_id)
                progress = [] if status.finished else await campaigns.live_progress(client, campaign_id)
                if status.finished:
                    status = await _closed(client, campaign_id, result_task)
                    live.update(campaign_view(status))
                    return status
                live.update(campaign_view(status, progress))
                gate_key = f"{status.waiting.phase.value}@{status.waiting.since}" if status.waiting else ""
                if status.waiting and asker is not None and gate_key not in asked_for:
                    asked_for.add(gate_key)
                    live.stop()
                    answer = asker(status)
                    live.start()
                    if answer is not None and not await _send(client, campaign_id, answer, console):
                        asked_for.discard(gate_key)  # refused: ask again
                    continue
                # Wake early when the workflow closes; otherwise refresh every interval.
                await asyncio.wait({result_task}, timeout=interval_s)
    finally:
        result_task.cancel()


async def _send(client: Client, campaign_id: str, answer: ApprovalInput | RejectionInput, console: Console) -> bool:
    """Send an answer; False (with the reason printed) when the campaign refuses it."""
    try:
        if isinstance(answer, ApprovalInput):
            message = await campaigns.approve(client, campaign_id, answer)
        else:
            message = await campaigns.reject(client, campaign_id, answer)
        console.print(f"[green]{message}[/]")
    except campaigns.RefusedError as exc:
        console.print(f"[red]{exc}[/]")
        return False
    return True


async def _follow_in_lines(
    client: Client, campaign_id: str, console: Console, result_task: asyncio.Future[Any], interval_s: float
) -> CampaignStatus:
    """Without a terminal (a pipe, a CI log) a live view cannot redraw: each event is one line as it happens,
    then the whole campaign once, at the end."""
    shown = 0
    try:
        while True:
            status = await campaigns.get_status(client, campaign_id)
            for event in status.events[shown:]:
                console.print(f"{event.at:%H:%M:%S} {event.message}", highlight=False, markup=False)
            shown = len(status.events)
            if status.finished:
                status = await _closed(client, campaign_id, result_task)
                console.print(campaign_view(status))
                return status
            await asyncio.wait({result_task}, timeout=interval_s)
    finally:
        result_task.cancel()


async def _closed(client: Client, campaign_id: str, result_task: asyncio.Future[Any]) -> CampaignStatus:
    """The final status once the workflow has closed: its final state shows before the report is written."""
    with contextlib.suppress(Exception):
        await result_task
    return await campaigns.get_status(client, campaign_id)
