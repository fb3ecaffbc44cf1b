"""One campaign per target: a lock held by Temporal, not by a file on one machine.

The lock is a workflow whose id is derived from the target (``ratchet.target_lock.lock_workflow_id``): Temporal
runs at most one workflow per id, so at most one campaign holds it, whichever machine started it. A campaign
starts it as its child; the server terminates a child when its parent closes, however it closes (completed,
failed, cancelled, terminated, timed out), so a campaign that crashed never leaves its target locked.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from ratchet.config.target import Target
    from ratchet.target_lock import LOCK_WORKFLOW, lock_workflow_id

# A queued campaign tries again after these waits, then every minute: short for a lock released soon, a few
# events a minute for one held for hours (the history stays far from Temporal's limits).
RETRY_WAITS = (timedelta(seconds=2), timedelta(seconds=5), timedelta(seconds=15), timedelta(seconds=30))
RETRY_WAIT_MAX = timedelta(minutes=1)


@workflow.defn(name=LOCK_WORKFLOW)
class TargetLockWorkflow:
    """Held while it runs: it waits until its campaign closes (the server then terminates it)."""

    @workflow.run
    async def run(self, holder: str) -> None:
        await workflow.wait_condition(lambda: False)


async def try_lock(target: Target, holder: str) -> bool:
    """Start the target's lock as a child of the calling campaign; False when another campaign holds it."""
    try:
        await workflow.start_child_workflow(
            TargetLockWorkflow.run,
            holder,
            id=lock_workflow_id(target),
            parent_close_policy=ParentClosePolicy.TERMINATE,
            static_summary=f"{target.name} ({target.base}) is held by campaign {holder}",
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


def retry_wait(attempt: int) -> timedelta:
    """How long a queued campaign waits before its ``attempt``-th try (0-based) to take the lock."""
    return RETRY_WAITS[attempt] if attempt < len(RETRY_WAITS) else RETRY_WAIT_MAX
