"""The document pipeline: fetch a document, extract its parts, drop near-duplicate sentences, summarize
through an AI provider, classify, store. As shipped it has the mistakes such workflows make: summarize and
classify both need only the text yet run one after the other (unless ``parallel_steps``), and every
attachment is extracted again for each document that carries it (unless ``extract_cache``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from examples.pipeline.steps import PipelineActivities

_STEP_TIMEOUT = timedelta(seconds=30)
# A provider's 429 is retried with backoff: 250 ms, 500 ms, 1 s, 2 s, ...
_PROVIDER_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=250), maximum_interval=timedelta(seconds=2))


@workflow.defn(name="DocumentPipeline")
class DocumentPipeline:
    @workflow.run
    async def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request``: ``{"id": "doc-17", "pages": 4}``."""
        document_id = request["id"]
        settings = await workflow.execute_local_activity_method(
            PipelineActivities.pipeline_settings, start_to_close_timeout=timedelta(seconds=5)
        )
        fetched = await workflow.execute_activity_method(
            PipelineActivities.fetch_document, document_id, start_to_close_timeout=_STEP_TIMEOUT
        )
        parts = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    PipelineActivities.extract_part, p, start_to_close_timeout=_STEP_TIMEOUT
                )
                for p in fetched["parts"]
            )
        )
        sentences = [s for part in parts for s in part["sentences"]]
        unique = await workflow.execute_activity_method(
            PipelineActivities.remove_near_duplicates, sentences, start_to_close_timeout=_STEP_TIMEOUT
        )
        text = unique["sentences"]
        summarizing = workflow.execute_activity_method(
            PipelineActivities.summarize,
            {"provider": settings["provider"], "sentences": text},
            retry_policy=_PROVIDER_RETRY,
            start_to_close_timeout=_STEP_TIMEOUT,
        )
        if settings["parallel_steps"]:
            summary, classified = await asyncio.gather(
                summarizing,
                workflow.execute_activity_method(
                    PipelineActivities.classify, text, start_to_close_timeout=_STEP_TIMEOUT
                ),
            )
        else:
            summary = await summarizing
            classified = await workflow.execute_activity_method(
                PipelineActivities.classify, text, start_to_close_timeout=_STEP_TIMEOUT
            )
        record = {
            "document": document_id,
            "label": classified["label"],
            "summary": summary["summary"],
            "provider": summary["provider"],
            "cost": summary["cost"],
        }
        await workflow.execute_activity_method(
            PipelineActivities.store_result, record, start_to_close_timeout=_STEP_TIMEOUT
        )
        return record | {"sentences": len(text)}
