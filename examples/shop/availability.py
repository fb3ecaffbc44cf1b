"""Can I have it, at what price, and when? ``GET /products/{product_id}/availability``.

The answer combines three downstream services: inventory (stock), pricing (today's price) and shipping (the
delivery estimate). None of them needs another's answer.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from examples.shop.datasource import Query
from examples.shop.flags import FlagStore
from examples.shop.outbound import Outbound

PRODUCT_EXISTS = "SELECT id FROM products WHERE id = ?"


async def _get_json(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def availability_router(query: Query, flags: FlagStore, outbound: Outbound) -> APIRouter:
    """The availability route, calling the services through ``outbound``."""
    router = APIRouter(tags=["products"])

    @router.get("/products/{product_id}/availability")
    async def availability(product_id: int) -> dict[str, Any]:
        """Stock, price and delivery estimate of one product."""
        # The database driver blocks: off the event loop, like FastAPI does for plain `def` routes.
        if not await run_in_threadpool(query, PRODUCT_EXISTS, product_id):
            raise HTTPException(404, f"no product {product_id}")
        client, urls = outbound.client, outbound.urls
        lookups = (
            f"{urls['inventory']}/stock/{product_id}",
            f"{urls['pricing']}/prices/{product_id}",
            f"{urls['shipping']}/estimates/{product_id}",
        )
        if flags.current.parallel_availability_lookups:
            stock, price, shipping = await asyncio.gather(*(_get_json(client, url) for url in lookups))
        else:
            stock = await _get_json(client, lookups[0])
            price = await _get_json(client, lookups[1])
            shipping = await _get_json(client, lookups[2])
        return {
            "product_id": product_id,
            "in_stock": stock["on_hand"] > 0,
            "on_hand": stock["on_hand"],
            "ships_from": stock["warehouse"],
            "price_cents": price["price_cents"],
            "promotion": price["promotion"],
            "carrier": shipping["carrier"],
            "delivery_days": shipping["days"],
        }

    return router
