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


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _window_start(since: timedelta | None, now: datetime | None = None) -> datetime | None:
    """The start of the ``since`` window, to the second (the listing and the cache compare the same instant)."""
    if since is None:
        return None
    return ((now or datetime.now(UTC)) - since).replace(microsecond=0)


def visibility_query(workflow_type: str, since: timedelta | None, now: datetime | None = None) -> str:
    """The list filter: closed executions of ``workflow_type``, closed within ``since`` when given."""
    return _query(workflow_type, _window_start(since, now))


def _query(workflow_type: str, after: datetime | None) -> str:
    if not _TYPE_NAME.match(workflow_type):
        raise ConfigError(f"--type: {workflow_type!r} is not a workflow type name (letters, digits and _ . : - / only)")
    query = f'WorkflowType = "{workflow_type}" AND ExecutionStatus != "Running"'
    if after is not None:
        query += f' AND CloseTime > "{_stamp(after)}"'
    return query


Listed = list[tuple[Key, datetime | None]]  # newest first, with the close time visibility gave


async def _list(client: Client, query: str, last: int | None) -> Listed:
    return [((e.id, e.run_id or ""), e.close_time) async for e in client.list_workflows(query, limit=last)]


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
    after = _window_start(since)
    query = _query(workflow_type, after)
    older: list[tuple[Key, Execution]] = []
    if cache is not None and (boundary := await _cache_complete_before(client, query, after, cache)) is not None:
        # The cache holds exactly what visibility lists before the boundary: list only what closed since.
        found = await _list(client, f'{query} AND CloseTime >= "{_stamp(boundary)}"', last)
        rest = None if last is None else last - len(found)
        older = cache.load_closed(after, boundary, rest) if rest is None or rest > 0 else []
    else:
        found = await _list(client, query, last)
        if cache is not None:
            cache.remember_close_times(dict(found))
    keys = [key for key, _ in found]
    known = cache.load(set(keys)) if cache is not None else {}
    missing = [key for key in keys if key not in known]
    total = len(found) + len(older)
    done = total - len(missing)
    fetched = await fetch_histories(
        client,
        missing,
        concurrency=concurrency,
        progress=(lambda n, _: progress(done + n, total)) if progress is not None else None,
    )
    if cache is not None:
        cache.add(fetched, closed_at=dict(found))
    return [known.get(key) or fetched[key] for key in keys] + [execution for _, execution in older]


async def _cache_complete_before(
    client: Client, query: str, after: datetime | None, cache: HistoryCache
) -> datetime | None:
    """A whole second up to which the cache holds every execution the query lists (counted on both sides;
    an execution deleted by retention, or one visibility showed late, makes the counts differ), or None."""
    newest = cache.newest_close()
    if newest is None:
        return None
    boundary = newest.replace(microsecond=0)
    listed = (await client.count_workflows(f'{query} AND CloseTime < "{_stamp(boundary)}"')).count
    return boundary if listed == cache.count_closed(after, boundary) else None


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
