"""A small workflow of a user's kind for the workflow analytics tests, with the mistakes such workflows
make: every step after fetch needs only the fetched text yet they run one after another; the language of every
document is looked up again with the same input; scoring is quadratic in the text's length; the summarizing
provider A refuses each first attempt (rate limited) while B is faster and cheaper (even documents go to A,
odd ones to B). Fetching is clean."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair
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
    return "long" if len(text) > 600 else "short"


@activity.defn
async def language(code: str) -> str:
    await asyncio.sleep(0.01)
    return {"en": "english"}.get(code, "unknown")


@activity.defn
async def score(text: str) -> float:
    await asyncio.sleep((len(text) / 600) ** 2 * 0.2)  # quadratic in the text's length: 12 ms to 0.8 s
    return round(len(text) / 7, 3)


@activity.defn
async def summarize(request: dict[str, str]) -> dict[str, object]:
    """Through an AI provider: A refuses each first attempt (rate limited), then answers in 30 ms at 0.004 a
    call; B answers in 10 ms at 0.002."""
    if request["provider"] == "A":
        if activity.info().attempt == 1:
            raise ApplicationError("provider A answered 429 Too Many Requests", type="RateLimited")
        await asyncio.sleep(0.03)
        return {"summary": request["text"][:5], "cost": 0.004}
    await asyncio.sleep(0.01)
    return {"summary": request["text"][:5], "cost": 0.002}


_QUICK = {"start_to_close_timeout": timedelta(seconds=10)}
PROVIDER_ATTRIBUTE = SearchAttributeKey.for_keyword("PipelineProvider")


async def register_provider_attribute(client: Client) -> None:
    """Register the search attribute the workflow sets (once per server): an unknown one fails its tasks."""
    service = client.operator_service
    existing = await service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    if PROVIDER_ATTRIBUTE.name not in existing.custom_attributes:
        await service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={PROVIDER_ATTRIBUTE.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
            )
        )


@workflow.defn
class SamplePipeline:
    @workflow.run
    async def run(self, document: str) -> str:
        text = await workflow.execute_activity(fetch, document, **_QUICK)
        size = await workflow.execute_activity(extract, text, **_QUICK)
        label = await workflow.execute_activity(classify, text, **_QUICK)
        tongue = await workflow.execute_activity(language, "en", **_QUICK)
        points = await workflow.execute_activity(score, text, **_QUICK)
        await workflow.sleep(0.02)
        provider = "A" if int(document[1 : document.index("-")]) % 2 == 0 else "B"
        # The provider is also said where an operator would look: the execution's search attribute
        # (registered by `register_provider_attribute`) and the call's summary.
        workflow.upsert_search_attributes([SearchAttributePair(PROVIDER_ATTRIBUTE, provider)])
        summary = await workflow.execute_activity(
            summarize,
            {"provider": provider, "text": text},
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50)),
            summary=f"provider {provider}",
            **_QUICK,
        )
        return f"{size} {label} {tongue} {points} {summary['summary']}"


ACTIVITIES = [fetch, extract, classify, language, score, summarize]


def documents(count: int) -> list[str]:
    """Documents of 50 to 400 characters (fetched, 150 to 1,200), each different."""
    return [f"d{n}-" + "x" * (50 * 2 ** (n % 4)) for n in range(count)]
