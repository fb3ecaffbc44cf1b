"""Which campaign holds a target: the lock workflow's id, and asking Temporal who runs it."""

from __future__ import annotations

import hashlib

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from ratchet.config.target import Target

LOCK_WORKFLOW = "TargetLock"


def lock_workflow_id(target: Target) -> str:
    """One id per target, named by its name and base URL: the same service described in two files (or from two
    machines) is one lock; two services of one name are two."""
    digest = hashlib.sha256(f"{target.name}\n{target.base}".encode()).hexdigest()[:16]
    return f"ratchet-lock-{target.name}-{digest}"


async def holder_of(client: Client, target: Target) -> str | None:
    """The id of the campaign that holds ``target`` now, or None when none does."""
    try:
        description = await client.get_workflow_handle(lock_workflow_id(target)).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status is None or description.status.name != "RUNNING":
        return None
    return description.parent_id or "an unknown campaign"
