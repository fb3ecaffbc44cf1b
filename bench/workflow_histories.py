"""`ratchet workflows analyze` over 10,000 executions' histories, beside a one-at-a-time fetch loop
(goal: at least 5x faster, under 60 s, on this machine).

    python -m bench.workflow_histories fixture DIR N   a Temporal dev server's database in DIR holding N
                                                       closed executions of a four-step workflow (once)
    python -m bench.workflow_histories cold DIR N      list, fetch (16 at a time) and analyze them all, as the
                                                       first analysis of the type does
    python -m bench.workflow_histories warm DIR N      the same again: the histories read by `cold` come from
                                                       Ratchet's history cache, none from the server, and
                                                       only what closed since is listed
    python -m bench.workflow_histories naive DIR N     list, then fetch and read each history in turn

Each timed path starts the dev server on the stored database first (not in the time) and stops it after.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

from bench.measure import print_json

WORKFLOW = "BenchPipeline"
_QUICK = {"start_to_close_timeout": timedelta(seconds=60)}


@activity.defn
async def fetch(document: str) -> str:
    return document * 4


@activity.defn
async def extract(text: str) -> dict[str, int]:
    return {"length": len(text)}


@activity.defn
async def classify(text: str) -> str:
    return "long" if len(text) > 40 else "short"


@activity.defn
async def store(record: dict[str, Any]) -> bool:
    return bool(record)


@workflow.defn(name=WORKFLOW)
class BenchPipeline:
    @workflow.run
    async def run(self, document: str) -> str:
        text = await workflow.execute_activity(fetch, document, **_QUICK)
        facts = await workflow.execute_activity(extract, text, **_QUICK)
        label = await workflow.execute_activity(classify, text, **_QUICK)
        await workflow.execute_activity(store, {"document": document, "label": label, **facts}, **_QUICK)
        return label


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(folder: Path) -> Iterator[str]:
    from ratchet.temporal.server import start_server, stop_server

    address = f"127.0.0.1:{_free_port()}"
    start_server(folder, address=address, ui_port=_free_port(), wait_s=120)
    try:
        yield address
    finally:
        stop_server(folder)


async def _closed(client: Client) -> int:
    return (await client.count_workflows(f'WorkflowType = "{WORKFLOW}" AND ExecutionStatus = "Completed"')).count


async def _fill(address: str, count: int) -> int:
    client = await Client.connect(address)
    have = await _closed(client)
    gate = asyncio.Semaphore(200)

    async def one(n: int) -> None:
        async with gate:
            await client.execute_workflow(
                BenchPipeline.run, f"d{n}-" + "x" * (n % 50), id=f"bench-{n}", task_queue="bench"
            )

    async with Worker(
        client,
        task_queue="bench",
        workflows=[BenchPipeline],
        activities=[fetch, extract, classify, store],
        max_concurrent_activities=200,
    ):
        await asyncio.gather(*(one(n) for n in range(have, count)))
    # Visibility records a close a moment after the result: wait until every execution is listed (a deadline).
    async with asyncio.timeout(120):
        while await _closed(client) < count:
            await asyncio.sleep(0.2)
    return await _closed(client)


def write_fixture(folder: Path, count: int) -> None:
    with _server(folder) as address:
        asyncio.run(_fill(address, count))


async def _ours(address: str, count: int, cache_dir: Path) -> dict[str, Any]:
    from ratchet.workflow_analytics.bottlenecks import find_bottlenecks
    from ratchet.workflow_analytics.fetch import fetch_executions
    from ratchet.workflow_analytics.history_cache import HistoryCache
    from ratchet.workflow_analytics.prediction import analyze_time
    from ratchet.workflow_analytics.summary import summarize

    client = await Client.connect(address)
    started = time.perf_counter()
    executions = await fetch_executions(client, WORKFLOW, last=count, cache=HistoryCache(cache_dir, WORKFLOW))
    summary = summarize(executions)
    bottlenecks = find_bottlenecks(executions)
    analyze_time(executions)
    return {
        "work_s": round(time.perf_counter() - started, 3),
        "check": {"executions": summary["executions"], "steps": sum(len(e.steps) for e in executions)},
        "bottlenecks": [f"{b.type} {b.step}" for b in bottlenecks],
    }


async def _naive(address: str, count: int, cache_dir: Path) -> dict[str, Any]:
    from ratchet.workflow_analytics.fetch import visibility_query
    from ratchet.workflow_analytics.steps import execution_of

    client = await Client.connect(address)
    started = time.perf_counter()
    found = [(e.id, e.run_id) async for e in client.list_workflows(visibility_query(WORKFLOW, None), limit=count)]
    executions = []
    for workflow_id, run_id in found:
        executions.append(execution_of(await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()))
    return {
        "work_s": round(time.perf_counter() - started, 3),
        "check": {"executions": len(executions), "steps": sum(len(e.steps) for e in executions)},
    }


def main(argv: list[str]) -> None:
    command, folder, count = argv[0], Path(argv[1]), int(argv[2])
    if command == "fixture":
        write_fixture(folder, count)
        print_json({"written": str(folder)})
        return
    paths = {"cold": _ours, "warm": _ours, "naive": _naive}
    if command not in paths:
        raise SystemExit(f"unknown command {command!r}: fixture, cold, warm or naive")
    cache_dir = folder / "ratchet-cache"
    if command == "cold":
        shutil.rmtree(cache_dir, ignore_errors=True)
    with _server(folder) as address:
        output = asyncio.run(paths[command](address, count, cache_dir))
    print_json(output)


if __name__ == "__main__":
    main(sys.argv[1:])
