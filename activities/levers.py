"""Pulling and releasing levers: SQL, HTTP and shell actions, idempotent and checked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlmodel import select
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ratchet.config.target import HttpAction, HttpLever, Lever, ShellAction, ShellLever, SqlLever, Target
from ratchet.contracts import LeverCall, LeverOutcome
from ratchet.database.target import target_engine
from ratchet.errors import LeverError
from ratchet.shell import CommandTimeout, one_at_a_time, run_command
from ratchet.store.engine import session_for
from ratchet.store.tables import LeverAction
from ratchet.templating import evaluate, render, render_tree

# Appended to the ledger's detail of an action taken only to measure an arm of the validation.
MEASUREMENT_NOTE = " (for a validation arm)"


def _context(call: LeverCall, action: str) -> dict[str, Any]:
    target: Target = call.target
    return {
        "target": {
            "name": target.name,
            "base_url": target.base,
            "database_url": target.database.url if target.database else None,
            # sqlite or postgresql: lets one template hold a statement per dialect (catalog queries differ).
            "dialect": target.database.dialect if target.database else None,
            # Shell levers run here, as the target file's relative paths mean.
            "folder": target.folder or None,
        },
        "lever": {"name": call.lever.name},
        "parameter": call.parameter,
        # A rollout lever's share of requests; outside a rollout (trying and validating it) all of them. Rolling
        # back, None: its check then says whether it is in effect at any share.
        "percent": call.percent if call.percent is not None else (100.0 if action == "apply" else None),
        "campaign_id": call.campaign_id,
    }


def _run_sql(lever: SqlLever, statements: list[str], context: dict[str, Any], target: Target, where: str) -> None:
    assert target.database is not None
    rendered = [render(s, context, where=f"{where}[{i}]") for i, s in enumerate(statements)]
    with target_engine(target.database.url).connect() as connection:
        for statement in rendered:
            connection.execute(text(statement))


def _sql_applied(lever: SqlLever, context: dict[str, Any], target: Target) -> bool | None:
    if lever.check is None or target.database is None:
        return None
    query = render(lever.check, context, where=f"lever {lever.name}: check")
    with target_engine(target.database.url).connect() as connection:
        value = connection.execute(text(query)).scalar()
    return bool(value)


def _http(action: HttpAction, context: dict[str, Any], where: str) -> httpx.Response:
    url = render(action.url, context, where=f"{where}.url")
    body = render_tree(action.json_body, context, where=f"{where}.json") if action.json_body is not None else None
    headers = render_tree(action.headers, context, where=f"{where}.headers")
    response = httpx.request(action.method, url, json=body, headers=headers, timeout=30)
    if response.status_code not in action.expect_status:
        raise LeverError(
            f"{where}: {action.method} {url} answered {response.status_code}, expected {action.expect_status}"
        )
    return response


def _http_applied(lever: HttpLever, context: dict[str, Any]) -> bool | None:
    if lever.check is None:
        return None
    where = f"lever {lever.name}: check"
    response = _http(lever.check, context, where)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    answer = {"status": response.status_code, "json": payload, "text": response.text}
    return bool(evaluate(lever.check.applied_when, context | {"response": answer}, where=where))


def _shell(action: ShellAction, context: dict[str, Any], where: str, *, check: bool = True) -> int:
    argv = [render(part, context, where=f"{where}.argv") for part in action.argv]
    folder = context["target"]["folder"]
    cwd = str(Path(folder or ".") / render(action.cwd, context, where=f"{where}.cwd")) if action.cwd else folder
    env = {name: render(value, context, where=f"{where}.env.{name}") for name, value in action.env.items()}
    try:
        returncode, output = run_command(argv, cwd=cwd, env=env, timeout_s=action.timeout.total_seconds())
    except FileNotFoundError:
        raise LeverError(f"{where}: command not found: {argv[0]}") from None
    except CommandTimeout:
        raise LeverError(f"{where}: {argv[0]} did not finish in {action.timeout}") from None
    if check and returncode != 0:
        raise LeverError(f"{where}: {' '.join(argv)} exited {returncode}: {output.strip()[-500:]}")
    return returncode


def _serialized_on(lever: Lever) -> list[str]:
    """What a lever holds while it runs: the resources its target declares, else (a shell lever) the programs
    it runs as written. Two levers holding one run one after the other."""
    if lever.resources:
        return [f"resource {name}" for name in lever.resources]
    if not isinstance(lever, ShellLever):
        return []
    actions = [*lever.apply, *lever.rollback, *([lever.check] if lever.check is not None else [])]
    return [action.argv[0] for action in actions]


def is_applied(lever: Lever, context: dict[str, Any], target: Target) -> bool | None:
    """Ask the target whether the lever is in effect; None when the lever has no check."""
    if isinstance(lever, SqlLever):
        return _sql_applied(lever, context, target)
    if isinstance(lever, HttpLever):
        return _http_applied(lever, context)
    if isinstance(lever, ShellLever) and lever.check is not None:
        return _shell(lever.check, context, f"lever {lever.name}: check", check=False) == 0
    return None


def perform(lever: Lever, action: str, context: dict[str, Any], target: Target) -> None:
    """Run the lever's apply or rollback actions against the target."""
    where = f"lever {lever.name}: {action}"
    if isinstance(lever, SqlLever):
        _run_sql(lever, lever.apply if action == "apply" else lever.rollback, context, target, where)
    elif isinstance(lever, HttpLever):
        for i, step in enumerate(lever.apply if action == "apply" else lever.rollback):
            _http(step, context, f"{where}[{i}]")
    else:
        for i, command in enumerate(lever.apply if action == "apply" else lever.rollback):
            _shell(command, context, f"{where}[{i}]")


class LeverActivities:
    """apply_lever / rollback_lever, served by every role that changes the target."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url

    def _ledger_says_applied(self, campaign_id: str, change_id: str) -> bool:
        """For levers without a check: the last effective action in our ledger tells the state."""
        with session_for(self.store_url) as session:
            rows = session.exec(
                select(LeverAction)
                .where(LeverAction.campaign_id == campaign_id, LeverAction.change_id == change_id)
                .where(LeverAction.changed == True)  # noqa: E712
                .order_by(LeverAction.id.desc())  # type: ignore[union-attr]
            ).first()
        return rows is not None and rows.action == "apply"

    def _record(self, call: LeverCall, action: str, changed: bool, verified: bool, detail: str) -> None:
        with session_for(self.store_url) as session:
            session.add(
                LeverAction(
                    campaign_id=call.campaign_id,
                    change_id=call.change_id,
                    lever=call.lever.name,
                    action=action,
                    changed=changed,
                    verified=verified,
                    detail=detail,
                )
            )
            session.commit()

    def _act(self, call: LeverCall, action: str) -> LeverOutcome:
        lever, target = call.lever, call.target
        context = _context(call, action)
        want_applied = action == "apply"
        tunable = lever.parameter is not None and lever.parameter.kind == "range"
        if tunable:
            # A tunable lever is "applied" when the target holds ``parameter``: the value asked for, or, when
            # rolling back, the baseline it had before.
            assert lever.parameter is not None and lever.parameter.baseline is not None
            raw = call.parameter if want_applied and call.parameter is not None else lever.parameter.default
            context["parameter"] = lever.parameter.value(raw if want_applied else lever.parameter.baseline)
            want_applied = True
        try:
            with one_at_a_time(_serialized_on(lever)):
                state = is_applied(lever, context, target)
                if state is None:
                    state = self._ledger_says_applied(call.campaign_id, call.change_id)
                changed = state != want_applied
                if changed:
                    perform(lever, action, context, target)
                after = is_applied(lever, context, target)
        except LeverError as exc:
            self._record(call, action, False, False, str(exc))
            template_problem = "template error" in str(exc) or "expression error" in str(exc)
            raise ApplicationError(str(exc), type="LeverError", non_retryable=template_problem) from None
        verified = after is None or after == want_applied
        if not verified:
            detail = f"{lever.name}: {action} ran but the check still says {'not ' if want_applied else ''}applied"
            self._record(call, action, changed, False, detail)
            raise ApplicationError(detail, type="LeverNotVerified")
        detail = f"{lever.name}: {action} {'done' if changed else 'already in effect: nothing to do'}"
        if tunable:
            detail += f" ({lever.parameter.kind} value {context['parameter']})"  # type: ignore[union-attr]
        if after is None:
            detail += " (no check declared: not verified on the target)"
        if call.for_measurement:
            detail += MEASUREMENT_NOTE
        self._record(call, action, changed, after is not None, detail)
        return LeverOutcome(
            change_id=call.change_id,
            lever=lever.name,
            action=action,  # type: ignore[arg-type]
            changed=changed,
            verified=after is not None,
            detail=detail,
        )

    async def _act_heartbeating(self, call: LeverCall, action: str) -> LeverOutcome:
        """Run the action in a thread, heartbeating so that a worker crash is noticed quickly.

        Nothing interrupts the action once started (a half-applied change is worse than a finished
        one): a cancellation or a worker shutdown waits for it, and its outcome is still reported.
        """
        work = asyncio.ensure_future(asyncio.to_thread(self._act, call, action))
        while not work.done():
            try:
                await asyncio.wait_for(asyncio.shield(work), timeout=2)
            except TimeoutError:
                activity.heartbeat({"lever": call.lever.name, "action": action, "progress": f"{action} running"})
            except asyncio.CancelledError:
                continue
        return work.result()

    @activity.defn(name="apply_lever")
    async def apply_lever(self, call: LeverCall) -> LeverOutcome:
        """Apply a lever unless it is already in effect; check it took."""
        return await self._act_heartbeating(call, "apply")

    @activity.defn(name="rollback_lever")
    async def rollback_lever(self, call: LeverCall) -> LeverOutcome:
        """Undo a lever unless it is already undone; check it is gone."""
        return await self._act_heartbeating(call, "rollback")
