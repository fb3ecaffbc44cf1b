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
import hashlib
import random
import sys
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from examples.serving import serve_apps
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


async def serve(host: str) -> None:
    """Serve every service until a signal or the end of stdin, announcing their URLs once all listen."""
    apps: dict[str, FastAPI] = {}
    providers = []
    for name, build in SERVICES.items():
        apps[name] = build()
        provider = trace_service(apps[name], name)
        if provider is not None:
            providers.append(provider)
    try:
        await serve_apps(apps, host, READY_LINE)
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
