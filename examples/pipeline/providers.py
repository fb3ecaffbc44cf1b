"""Two AI providers the pipeline summarizes with, each its own HTTP server on 127.0.0.1.

    python -m examples.pipeline.providers [--host HOST]

``POST /v1/summarize`` with ``{"sentences": [...]}`` answers ``{"id", "summary", "usage", "cost"}``. Both write
the same summary of the same text. Provider A is slower, dearer and oversubscribed: it refuses about 3
requests in 10 with 429 Too Many Requests and Retry-After (its shared capacity is exhausted, whatever the
caller's own rate); provider B is faster, half the price, and refuses none.
Every answer has a completion id of its own, as real providers' answers do.

Once both listen, one line goes to stdout: ``providers listening A=URL B=URL``. The process stops on SIGTERM,
SIGINT, or when its stdin closes (the pipeline holds that pipe, so the providers never outlive it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import signal
import socket
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

READY_LINE = "providers listening"


@dataclass(frozen=True)
class Provider:
    name: str
    latency_ms: tuple[float, float]  # uniform per request
    price_per_1k_words: float
    refused_share: float  # of requests answered 429: the provider's shared capacity is exhausted


PROVIDERS = {
    "A": Provider("A", (110, 150), 0.030, 0.3),
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


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: this process runs two and stops them together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(host: str) -> None:
    servers, sockets = {}, {}
    for name, provider in PROVIDERS.items():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP: Nagle off
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(128)  # listening before uvicorn starts: the URLs are good from the ready line on
        sockets[name] = sock
        config = uvicorn.Config(provider_app(provider), log_level="warning", access_log=False, lifespan="off")
        servers[name] = _QuietServer(config)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers.values():
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(stop)), daemon=True).start()
    urls = " ".join(f"{n}=http://{host}:{sockets[n].getsockname()[1]}" for n in PROVIDERS)
    print(f"{READY_LINE} {urls}", flush=True)
    await asyncio.gather(*(servers[n].serve(sockets=[sockets[n]]) for n in PROVIDERS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.pipeline.providers", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    asyncio.run(serve(parser.parse_args(argv).host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
