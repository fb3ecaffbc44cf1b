"""The pipeline's activities. Their costs stand in for real work by waits (the OCR of a part, the embedding
distance of a sentence pair) so that they hold on a small host beside a load generator; the providers are real
HTTP services; results go to SQLite."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from examples.pipeline.config import SettingsFile
from examples.pipeline.corpus import document, label_of, part_sentences

FETCH_MS = (6.0, 10.0)
EXTRACT_MS = 25.0  # per part, plus EXTRACT_PER_SENTENCE_MS for each of its sentences
EXTRACT_PER_SENTENCE_MS = 0.6
PAIR_MS = 0.06  # the near-duplicate check compares every pair of sentences
CLASSIFY_MS = (25.0, 35.0)
NEAR_DUPLICATE = 0.8  # Jaccard similarity of two sentences' words


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class PipelineActivities:
    """The activities of one worker: its settings file, its providers, its results database."""

    def __init__(self, home: Path, providers: dict[str, str]) -> None:
        self.settings = SettingsFile(home)
        self.providers = providers
        self.database = home / "results.sqlite"
        self.extracted: dict[str, list[str]] = {}
        self.http = httpx.AsyncClient(timeout=10)
        self.jitter = random.Random()
        with sqlite3.connect(self.database) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS results (document TEXT PRIMARY KEY, label TEXT, summary TEXT, "
                "provider TEXT, cost REAL, stored_at REAL)"
            )

    @activity.defn(name="pipeline_settings")
    async def pipeline_settings(self) -> dict[str, Any]:
        """What shapes an execution's steps, read once at its start (its history keeps the answer, so a replay
        routes it the same way)."""
        current = self.settings.current()
        routed = current.provider if random.random() * 100 < current.provider_percent else "A"
        return {"provider": routed, "parallel_steps": current.parallel_steps}

    @activity.defn(name="fetch_document")
    async def fetch_document(self, document_id: str) -> dict[str, Any]:
        await asyncio.sleep(self.jitter.uniform(*FETCH_MS) / 1000)
        return document(int(document_id.removeprefix("doc-"))) | {"fetched_at": time.time()}

    @activity.defn(name="extract_part")
    async def extract_part(self, part: str) -> dict[str, Any]:
        if self.settings.current().extract_cache and part in self.extracted:
            return {"part": part, "sentences": self.extracted[part]}
        sentences = part_sentences(part)
        await asyncio.sleep((EXTRACT_MS + EXTRACT_PER_SENTENCE_MS * len(sentences)) / 1000)
        self.extracted[part] = sentences
        return {"part": part, "sentences": sentences}

    @activity.defn(name="remove_near_duplicates")
    async def remove_near_duplicates(self, sentences: list[str]) -> dict[str, Any]:
        """Every sentence against every other: quadratic in the text's length."""
        words = [set(s.lower().split()) for s in sentences]
        dropped = {
            j
            for i in range(len(words))
            for j in range(i + 1, len(words))
            if _jaccard(words[i], words[j]) >= NEAR_DUPLICATE
        }
        pairs = len(sentences) * (len(sentences) - 1) // 2
        await asyncio.sleep(pairs * PAIR_MS / 1000)
        return {"sentences": [s for i, s in enumerate(sentences) if i not in dropped]}

    @activity.defn(name="summarize")
    async def summarize(self, request: dict[str, Any]) -> dict[str, Any]:
        provider = request["provider"]
        answer = await self.http.post(
            f"{self.providers[provider]}/v1/summarize", json={"sentences": request["sentences"]}
        )
        if answer.status_code == 429:
            raise ApplicationError(f"provider {provider} answered 429 Too Many Requests", type="RateLimited")
        answer.raise_for_status()
        body = answer.json()
        return {"provider": provider, "summary": body["summary"], "completion_id": body["id"], "cost": body["cost"]}

    @activity.defn(name="classify")
    async def classify(self, sentences: list[str]) -> dict[str, Any]:
        await asyncio.sleep(self.jitter.uniform(*CLASSIFY_MS) / 1000)
        return {"label": label_of(sentences)}

    @activity.defn(name="store_result")
    async def store_result(self, record: dict[str, Any]) -> dict[str, Any]:
        with sqlite3.connect(self.database, timeout=10) as db:
            db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record["document"],
                    record["label"],
                    record["summary"],
                    record["provider"],
                    record["cost"],
                    time.time(),
                ),
            )
        return {"stored": record["document"]}

    def all(self) -> list[Any]:
        return [
            self.pipeline_settings,
            self.fetch_document,
            self.extract_part,
            self.remove_near_duplicates,
            self.summarize,
            self.classify,
            self.store_result,
        ]
