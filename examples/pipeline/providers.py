"""Two AI providers the pipeline summarizes with, each its own HTTP server on 127.0.0.1.

    python -m examples.pipeline.providers [--host HOST]

``POST /v1/summarize`` with ``{"sentences": [...]}`` answers ``{"id", "summary", "usage", "cost"}``. Both write
the same summary of the same text. Provider A is slower, dearer and oversubscribed: it refuses half
the requests, at random, with 429 Too Many Requests and Retry-After (its shared capacity is exhausted, whatever
the caller's own rate); provider B is faster, half the price, and refuses none.
Every answer has a completion id of its own, as real providers' answers do.

Once both listen, one line goes to stdout: ``providers listening A=URL B=URL``. The process stops on SIGTERM,
SIGINT, or when its stdin closes (the pipeline holds that pipe, so the providers never outlive it).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from examples.serving import serve_apps

READY_LINE = "providers listening"


@dataclass(frozen=True)
class Provider:
    name: str
    latency_ms: tuple[float, float]  # uniform per request
    price_per_1k_words: float
    refused_share: float  # of requests answered 429: the provider's shared capacity is exhausted


PROVIDERS = {
    "A": Provider("A", (110, 150), 0.030, 0.5),
    "B": Provider("B", (45, 65), 0.015, 0.0),
}


class SummarizeRequest(BaseModel):
    sentences: list[str]


def summary_of(sentences: list[str]) -> str:
    """The summary both providers write: how long the text is and what it is most about."""
    words = Counter(w.strip(".").lower() for s in sentences for w in s.split())
    top = [w for w, _ in sorted(words.items(), key=lambda item: (-item[1], item[0]))[:3]]
    return f"{len(sentences)} sentences, mostly about {', '.join(top)}"


def provider_app(provider: Provider) -> FastAPI:
    app = FastAPI(title=f"provider {provider.name}")
    jitter = random.Random()

    @app.post("/v1/summarize", response_model=None)
    async def summarize(request: SummarizeRequest) -> dict[str, Any] | JSONResponse:
        if jitter.random() < provider.refused_share:
            return JSONResponse(
                {"error": {"type": "rate_limit_exceeded", "message": "Too Many Requests"}},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        await asyncio.sleep(jitter.uniform(*provider.latency_ms) / 1000)
        words = sum(len(s.split()) for s in request.sentences)
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:16]}",
            "summary": summary_of(request.sentences),
            "usage": {"input_words": words},
            "cost": round(words / 1000 * provider.price_per_1k_words, 6),
        }

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def serve(host: str) -> None:
    await serve_apps({name: provider_app(provider) for name, provider in PROVIDERS.items()}, host, READY_LINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.pipeline.providers", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    asyncio.run(serve(parser.parse_args(argv).host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
