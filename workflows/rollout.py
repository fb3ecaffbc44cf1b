"""The gradual rollout of a campaign's kept changes to production: a child workflow of the campaign.

Changes that cannot be split go to production at the first step; percentage-capable levers (``rollout:
true``) follow the playbook's steps (10%, 50%, 100% ...). Each step bakes under load and the guard compares
it with the validated numbers; more breaches than the failure limit roll the whole rollout back. Between
steps a person can promote (go on at once) or abort (roll back) through an update.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from ratchet.approvals import answer_refusal
    from ratchet.config.common import Role
    from ratchet.contracts import (
        GuardRequest,
        GuardResult,
        LeverCall,
        LoadTestRequest,
        LoadTestResult,
        RolloutChange,
        RolloutDecision,
        RolloutInput,
        RolloutResult,
        RolloutStep,
    )


from workflows.catalogue import APPLY_LEVER, CHECK_GUARD, ROLLBACK_LEVER, RUN_LOAD_TEST, call


def rollout_id(campaign_id: str) -> str:
    """The rollout's workflow id: found from the campaign's id (``ratchet rollout promote CAMPAIGN``)."""
    return f"{campaign_id}-rollout"


@workflow.defn(name="RolloutWorkflow")
class RolloutWorkflow:
    @workflow.init
    def __init__(self, request: RolloutInput) -> None:
        self._input = request
        self._steps: list[RolloutStep] = []
        self._promoted: RolloutDecision | None = None
        self._aborted: RolloutDecision | None = None
        self._applied: list[RolloutChange] = []
        self._baseline_run_id: str | None = None
        self._signatures_taken: set[str] = set()

    def _take_signature(self, decision: RolloutDecision) -> None:
        if decision.signature:
            self._signatures_taken.add(decision.signature)

    @workflow.run
    async def run(self, request: RolloutInput) -> RolloutResult:
        try:
            return await self._roll_out(request)
        except ActivityError as failure:
            # A step could not be taken (a lever, a load test): production goes back to how it was found.
            await self._undo_all()
            return self._result("rolled-back", f"{failure.activity_type}: {failure.cause}")
        except asyncio.CancelledError:
            # The campaign was cancelled: production goes back to how it was found, then the cancellation goes on.
            await asyncio.shield(asyncio.ensure_future(self._undo_all()))
            raise

    async def _roll_out(self, request: RolloutInput) -> RolloutResult:
        rollout = request.playbook.deployment.rollout
        whole = [c for c in request.changes if not c.lever.rollout]
        gradual = [c for c in request.changes if c.lever.rollout]
        breaches = 0
        reference = request.validated
        if workflow.patched("production-baseline"):
            # Production as found, measured just before the first step: the guard compares each step with
            # production itself, not with the test environment (other machine, data, load), whose numbers
            # would read every difference between the two as the rollout's doing.
            reference = await self._bake(None)
            self._baseline_run_id = reference.run_id
        for number, percent in enumerate(rollout.steps):
            step = RolloutStep(percent=percent)
            self._steps.append(step)
            if self._aborted is not None:
                return await self._abort(step)
            if number == 0:
                for change in whole:
                    await self._lever("apply_lever", change, None)
            for change in gradual:
                await self._lever("apply_lever", change, percent)
            run = await self._bake(percent)
            step.run_id = run.run_id
            guard: GuardResult = await call(
                CHECK_GUARD,
                GuardRequest(
                    campaign_id=request.campaign_id, validated=reference, watch=run, playbook=request.playbook
                ),
                prefix=request.task_queue_prefix,
                role=Role.DEVOPS_ENGINEER,
                summary=f"Guard at {percent:g}%: error rate and p95 against production before the rollout",
                shielded=False,
            )
            step.guard = guard
            if guard.breached:
                breaches += 1
                if breaches > rollout.failure_limit:
                    await self._undo_all()
                    return self._result("rolled-back", f"guard breached at {percent:g}%: " + "; ".join(guard.reasons))
            if percent < 100 and rollout.pause.total_seconds() > 0:
                await self._wait_for_a_person(rollout.pause)
                if self._promoted is not None:
                    step.decided_by = f"promoted by {self._promoted.by}"
                    self._promoted = None
            if self._aborted is not None:
                return await self._abort(step)
        return self._result("completed")

    @workflow.update
    async def promote(self, decision: RolloutDecision) -> str:
        """Go on to the next step now, without waiting out the pause."""
        self._take_signature(decision)
        self._promoted = decision
        return f"promoted by {decision.by}"

    @promote.validator
    def _validate_promote(self, decision: RolloutDecision) -> None:
        self._refuse(decision, "rollout-promote")

    @workflow.update
    async def abort(self, decision: RolloutDecision) -> str:
        """Stop and roll the rollout back (after the step in progress)."""
        self._take_signature(decision)
        self._aborted = decision
        return f"abort requested by {decision.by}"

    @abort.validator
    def _validate_abort(self, decision: RolloutDecision) -> None:
        self._refuse(decision, "rollout-abort")

    def _refuse(self, decision: RolloutDecision, action: str) -> None:
        unsigned = answer_refusal(
            self._input.playbook.approvals,
            self._signatures_taken,
            workflow.now(),
            campaign_id=self._input.campaign_id,
            action=action,
            phase="",
            approver=decision.by,
            only=None,
            signed_at=decision.signed_at,
            signature=decision.signature,
        )
        if unsigned:
            workflow.logger.warning("%s by %s refused: %s", action, decision.by, unsigned)
            raise ValueError(unsigned)
        approvers = self._input.playbook.approvers
        if decision.by not in approvers:
            raise ValueError(f"{decision.by!r} is not an approver of this campaign; approvers: {', '.join(approvers)}")
        if self._aborted is not None:
            raise ValueError(f"the rollout is already being aborted (by {self._aborted.by})")

    @workflow.query
    def steps(self) -> list[RolloutStep]:
        return self._steps

    async def _abort(self, step: RolloutStep) -> RolloutResult:
        assert self._aborted is not None
        step.decided_by = f"aborted by {self._aborted.by}"
        await self._undo_all()
        reason = f"aborted by {self._aborted.by}" + (f": {self._aborted.reason}" if self._aborted.reason else "")
        return self._result("aborted", reason)

    async def _wait_for_a_person(self, pause: timedelta) -> None:
        # No answer within the pause: the step held, so the rollout goes on.
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._promoted is not None or self._aborted is not None, timeout=pause
            )

    async def _bake(self, percent: float | None) -> LoadTestResult:
        """A bake at a step's share; ``None``: production before the rollout, the guard's reference."""
        request = self._input
        load, bake = request.playbook.load, request.playbook.deployment.rollout.bake.total_seconds()
        label = "rollout-baseline" if percent is None else f"rollout-{percent:g}"
        summary = (
            f"Baseline: production before the rollout for {bake:g}s"
            if percent is None
            else f"Bake at {percent:g}% in production for {bake:g}s"
        )
        return await call(
            RUN_LOAD_TEST,
            LoadTestRequest(
                campaign_id=request.campaign_id,
                label=label,
                target=request.production,
                rate=load.rps,
                duration_s=bake,
                warmup_s=load.warmup.total_seconds(),
                max_vus=load.max_vus,
                request_timeout_s=load.request_timeout.total_seconds(),
            ),
            prefix=request.task_queue_prefix,
            role=Role.DEVOPS_ENGINEER,
            summary=summary,
            timeout=timedelta(seconds=bake + load.warmup.total_seconds() + 120),
            shielded=False,
        )

    async def _lever(self, action: str, change: RolloutChange, percent: float | None) -> None:
        lever_call = LeverCall(
            campaign_id=self._input.campaign_id,
            change_id=f"{change.change_id}-production",
            lever=change.lever,
            target=self._input.production,
            parameter=change.parameter,
            percent=percent,
        )
        if action == "apply_lever" and change not in self._applied:
            self._applied.append(change)  # before it runs: a failure halfway is undone too
        where = f" at {percent:g}%" if percent is not None else ""
        # A lever is never cut off halfway: cancelled meanwhile, the rollout waits for the apply to end, then
        # undoes it. Cancelling it at once would let the undo run first and find nothing, and the apply then
        # leave production changed. Rollouts started before replay with the apply cancelled at once.
        finish_first = action == "apply_lever" and workflow.patched("rollout-apply-finishes")
        await call(
            APPLY_LEVER if action == "apply_lever" else ROLLBACK_LEVER,
            lever_call,
            prefix=self._input.task_queue_prefix,
            role=change.role,
            summary=f"{'Roll out' if action == 'apply_lever' else 'Roll back'} {change.lever.name} in production{where}",
            shielded=finish_first,
        )

    async def _undo_all(self) -> None:
        """Undo in production every change this rollout touched, newest first; one that cannot be undone is
        reported and the others are still tried."""
        failures = []
        for change in reversed(self._applied):
            try:
                await self._lever("rollback_lever", change, None)
            except ActivityError as failure:
                failures.append(f"{change.lever.name}: {failure.cause}")
        if failures:
            raise ApplicationError("could not undo in production: " + "; ".join(failures), non_retryable=True)

    def _result(self, outcome: Literal["completed", "rolled-back", "aborted"], reason: str = "") -> RolloutResult:
        return RolloutResult(outcome=outcome, steps=self._steps, reason=reason, baseline_run_id=self._baseline_run_id)
