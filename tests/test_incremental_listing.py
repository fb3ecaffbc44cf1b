"""The history cache stands in for visibility's listing of what it already holds: the next analysis of a type
lists and fetches only what closed since, and falls back to the whole listing when the cache and the server
disagree (an execution deleted, or one visibility showed late)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from ratchet.workflow_analytics.fetch import _cache_complete_before, _query, fetch_executions
from ratchet.workflow_analytics.history_cache import HistoryCache

TYPE = "ListingProbe"
QUERY = _query(TYPE, None)


@workflow.defn(name=TYPE)
class ListingProbe:
    @workflow.run
    async def run(self, n: int) -> int:
        return n


async def _run(client: Client, queue: str, numbers: range) -> None:
    async with Worker(client, task_queue=queue, workflows=[ListingProbe]):
        for n in numbers:
            await client.execute_workflow(ListingProbe.run, n, id=f"{queue}-{n}", task_queue=queue)


async def _listed(client: Client, count: int) -> None:
    """Until visibility lists ``count`` closed executions of the type (it records a close a moment later)."""
    async with asyncio.timeout(30):
        while (await client.count_workflows(f'WorkflowType = "{TYPE}"')).count != count:
            await asyncio.sleep(0.05)


async def _fetch(client: Client, cache: HistoryCache, last: int | None = None) -> tuple[list[str], int]:
    """The executions' ids, newest first, and how many of them were fetched from the server."""
    calls: list[tuple[int, int]] = []
    executions = await fetch_executions(
        client, TYPE, last=last, cache=cache, progress=lambda done, total: calls.append((done, total))
    )
    done, total = calls[0]
    return [e.workflow_id for e in executions], total - done


@pytest.mark.asyncio
async def test_the_next_analysis_fetches_only_what_closed_since_and_the_whole_listing_when_they_disagree(
    fake_tier_temporal: str, tmp_path: Path
) -> None:
    client = await Client.connect(fake_tier_temporal)
    queue = f"listing-{uuid.uuid4().hex[:8]}"
    cache = HistoryCache(tmp_path, TYPE)
    await _run(client, queue, range(3))
    await _listed(client, 3)
    first, fetched = await _fetch(client, cache)
    assert sorted(first) == [f"{queue}-{n}" for n in range(3)] and fetched == 3
    assert await _cache_complete_before(client, QUERY, None, cache) is not None

    await _run(client, queue, range(3, 5))
    await _listed(client, 5)
    again, fetched = await _fetch(client, cache)
    assert (
        fetched == 2
        and again[:2] == [f"{queue}-4", f"{queue}-3"]
        and sorted(again) == sorted(f"{queue}-{n}" for n in range(5))
    )
    # The newest three: the two new ones listed, the third from the cache.
    newest, fetched = await _fetch(client, cache, last=3)
    assert newest == again[:3] and fetched == 0

    # The cache holds one the server no longer lists (deleted by retention, say): the counts differ, so the
    # whole listing is read, and only what the server lists comes back.
    [(_, newest_kept)] = cache.load_closed(None, datetime.now(UTC), 1)
    gone = dataclasses.replace(newest_kept, workflow_id="gone")
    cache.add({("gone", "r"): gone}, closed_at={("gone", "r"): datetime(2020, 1, 1, tzinfo=UTC)})
    after, fetched = await _fetch(client, cache)
    assert "gone" not in after and sorted(after) == sorted(again) and fetched == 0
    assert await _cache_complete_before(client, QUERY, None, cache) is None

    # A cache an older Ratchet wrote (no close times) is read through the whole listing once, which fills
    # them in; from then on it stands in for the listing.
    legacy = HistoryCache(tmp_path / "legacy", TYPE)
    legacy.add({k: e for k, e in cache.load_closed(None, datetime.now(UTC), None) if k != ("gone", "r")})
    assert await _cache_complete_before(client, QUERY, None, legacy) is None
    assert (await _fetch(client, legacy))[1] == 0
    assert await _cache_complete_before(client, QUERY, None, legacy) is not None
