"""A small workflow of a user's kind for the workflow analytics tests: fetch, then extract and classify (one
after another), a pause, and a summarize step whose provider refuses the first attempt (rate limited)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError


@activity.defn
async def fetch(document: str) -> str:
    await asyncio.sleep(0.02)
    return document * 3


@activity.defn
async def extract(text: str) -> int:
    await asyncio.sleep(0.01)
    return len(text)


@activity.defn
async def classify(text: str) -> str:
    await asyncio.sleep(0.01)
    return "long" if len(text) > 10 else "short"


@activity.defn
async def summarize(text: str) -> str:
    if activity.info().attempt == 1:
        raise ApplicationError("provider A answered 429 Too Many Requests", type="RateLimited")
    await asyncio.sleep(0.01)
    return text[:5]


_QUICK = {"start_to_close_timeout": timedelta(seconds=10)}


@workflow.defn
class SamplePipeline:
    @workflow.run
    async def run(self, document: str) -> str:
        text = await workflow.execute_activity(fetch, document, **_QUICK)
        size = await workflow.execute_activity(extract, text, **_QUICK)
        label = await workflow.execute_activity(classify, text, **_QUICK)
        await workflow.sleep(0.05)
        summary = await workflow.execute_activity(
            summarize, text, retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50)), **_QUICK
        )
        return f"{size} {label} {summary}"


ACTIVITIES = [fetch, extract, classify, summarize]
