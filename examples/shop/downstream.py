"""The shop's downstream services: inventory, pricing, shipping estimates and tax, each its own HTTP server.

    python -m examples.shop.downstream [--host HOST]

Each service listens on a free port of its own. Once all accept connections, one line goes to stdout:
``downstream listening inventory=URL pricing=URL shipping=URL tax=URL``. The process stops on SIGTERM or
SIGINT, and when its stdin closes: the shop holds that pipe, so the services never outlive the shop, even
when the shop is killed.

They stand in for other teams' services: each answers after a realistic, jittered latency (its own
database and network, as seen from the shop), with deterministic content.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import random
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel, Field

from examples.shop.telemetry import trace_service

READY_LINE = "downstream listening"
# Latency of each service in ms (low, high), uniformly drawn per request.
LATENCY_MS: dict[str, tuple[float, float]] = {
    "inventory": (20, 30),
    "pricing": (25, 35),
    "shipping": (35, 55),
    "tax": (25, 35),
}
_WAREHOUSES = ("AMS-1", "FRA-2", "LYS-1", "MAD-3")
_CARRIERS = ("DHL", "UPS", "GLS", "PostNL")
TAX_RATES = {"books": 0.06, "music": 0.09, "office": 0.21}  # the rest at the standard rate
STANDARD_RATE = 0.21


def _stable(*key: object) -> random.Random:
    """A generator seeded by ``key``: the same question always gets the same answer."""
    digest = hashlib.sha256(repr(key).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


_jitter = random.Random()


async def _work(service: str) -> None:
    low, high = LATENCY_MS[service]
    await asyncio.sleep(_jitter.uniform(low, high) / 1000)


def inventory_app() -> FastAPI:
    """``GET /stock/{product_id}``: units on hand and the warehouse that ships them."""
    app = FastAPI(title="inventory")

    @app.get("/stock/{product_id}")
    async def stock(product_id: int) -> dict[str, Any]:
        await _work("inventory")
        rng = _stable("stock", product_id)
        return {"product_id": product_id, "on_hand": rng.randrange(0, 250), "warehouse": rng.choice(_WAREHOUSES)}

    return app


def pricing_app() -> FastAPI:
    """``GET /prices/{product_id}``: today's price, promotions included."""
    app = FastAPI(title="pricing")

    @app.get("/prices/{product_id}")
    async def price(product_id: int) -> dict[str, Any]:
        await _work("pricing")
        rng = _stable("price", product_id)
        list_price = rng.randrange(199, 19_999)
        discount = rng.choice((0, 0, 0, 10, 15, 25))
        return {
            "product_id": product_id,
            "list_price_cents": list_price,
            "price_cents": list_price * (100 - discount) // 100,
            "promotion": f"-{discount}%" if discount else None,
        }

    return app


def shipping_app() -> FastAPI:
    """``GET /estimates/{product_id}``: the carrier and the days to deliver."""
    app = FastAPI(title="shipping")

    @app.get("/estimates/{product_id}")
    async def estimate(product_id: int) -> dict[str, Any]:
        await _work("shipping")
        rng = _stable("shipping", product_id)
        return {"product_id": product_id, "carrier": rng.choice(_CARRIERS), "days": rng.randrange(1, 6)}

    return app


class TaxQuestion(BaseModel):
    """An amount to tax and what it is for."""

    amount_cents: int = Field(ge=0)
    category: str


def tax_app() -> FastAPI:
    """``POST /quotes``: the VAT on an amount for a product category."""
    app = FastAPI(title="tax")

    @app.post("/quotes")
    async def quote(question: TaxQuestion) -> dict[str, Any]:
        await _work("tax")
        rate = TAX_RATES.get(question.category, STANDARD_RATE)
        return {"rate": rate, "tax_cents": round(question.amount_cents * rate)}

    return app


SERVICES = {"inventory": inventory_app, "pricing": pricing_app, "shipping": shipping_app, "tax": tax_app}


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: this process runs several and stops them together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(host: str) -> None:
    """Serve every service until a signal or the end of stdin, announcing their URLs once all listen."""
    servers: dict[str, uvicorn.Server] = {}
    sockets: dict[str, socket.socket] = {}
    providers = []
    for name, build in SERVICES.items():
        app = build()
        provider = trace_service(app, name)
        if provider is not None:
            providers.append(provider)
        # proto=IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
        # that say they are TCP, and with it on, a response written in two parts waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        # Listening before uvicorn starts: connections wait in the backlog, so the URLs are good from now on.
        sock.listen(128)
        sockets[name] = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        servers[name] = _QuietServer(config)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers.values():
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # A blocking read in a daemon thread: it returns at EOF, i.e. when the shop closes the pipe or dies.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(stop)), daemon=True).start()

    urls = " ".join(f"{n}=http://{host}:{sockets[n].getsockname()[1]}" for n in SERVICES)
    print(f"{READY_LINE} {urls}", flush=True)
    try:
        await asyncio.gather(*(servers[n].serve(sockets=[sockets[n]]) for n in SERVICES))
    finally:
        for provider in providers:
            provider.shutdown()  # exports what is still batched


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m examples.shop.downstream", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
