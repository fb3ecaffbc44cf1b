"""Closed executions of one workflow type, found through Temporal's visibility and read from their event
histories, a bounded number at a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from temporalio.client import Client

from ratchet.errors import ConfigError
from ratchet.workflow_analytics.history_cache import HistoryCache, Key
from ratchet.workflow_analytics.steps import Execution, execution_of

# Workflow type names as Temporal SDKs write them: the query quotes the name, so nothing else gets in.
_TYPE_NAME = re.compile(r"^[A-Za-z0-9_.:\-/]+$")
FETCH_CONCURRENCY = 16


def visibility_query(workflow_type: str, since: timedelta | None, now: datetime | None = None) -> str:
    """The list filter: closed executions of ``workflow_type``, closed within ``since`` when given."""
    if not _TYPE_NAME.match(workflow_type):
        raise ConfigError(f"--type: {workflow_type!r} is not a workflow type name (letters, digits and _ . : - / only)")
    query = f'WorkflowType = "{workflow_type}" AND ExecutionStatus != "Running"'
    if since is not None:
        start = (now or datetime.now(UTC)) - since
        query += f' AND CloseTime > "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}"'
    return query


async def fetch_executions(
    client: Client,
    workflow_type: str,
    *,
    since: timedelta | None = None,
    last: int | None = None,
    concurrency: int = FETCH_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
    cache: HistoryCache | None = None,
) -> list[Execution]:
    """The newest ``last`` (or every) closed execution of the type, with their steps, newest first;
    ``progress(done, all)`` is called as histories arrive. With a ``cache``, only executions it does not hold
    are fetched, and those are added to it."""
    query = visibility_query(workflow_type, since)
    found = [(e.id, e.run_id or "") async for e in client.list_workflows(query, limit=last)]
    known = cache.load(set(found)) if cache is not None else {}
    missing = [key for key in found if key not in known]
    done = len(found) - len(missing)
    fetched = await fetch_histories(
        client,
        missing,
        concurrency=concurrency,
        progress=(lambda n, _: progress(done + n, len(found))) if progress is not None else None,
    )
    if cache is not None:
        cache.add(fetched)
    return [known.get(key) or fetched[key] for key in found]


async def fetch_histories(
    client: Client,
    keys: list[Key],
    *,
    concurrency: int = FETCH_CONCURRENCY,
    progress: Callable[[int, int], None] | None = None,
) -> dict[Key, Execution]:
    """The executions of ``keys`` (workflow id, run id or ""), read from their histories ``concurrency`` at a
    time; ``progress(done, all)`` as they arrive."""
    gate = asyncio.Semaphore(concurrency)
    done = 0
    if progress is not None:
        progress(0, len(keys))

    async def one(workflow_id: str, run_id: str) -> Execution:
        nonlocal done
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id or None).fetch_history()
        done += 1
        if progress is not None:
            progress(done, len(keys))
        return execution_of(history)

    return dict(zip(keys, await asyncio.gather(*(one(w, r) for w, r in keys)), strict=True))
