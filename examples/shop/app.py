"""The shop's HTTP API (FastAPI on SQLite or PostgreSQL; database access in ``examples.shop.db``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examples.shop import db
from examples.shop.availability import availability_router
from examples.shop.billing import billing_router
from examples.shop.catalog import catalog_router
from examples.shop.compression import SwitchableGZipMiddleware
from examples.shop.db import db_seconds, query, write
from examples.shop.flags import FlagStore, FlagViewMiddleware, admin_router
from examples.shop.metrics import metrics_router
from examples.shop.orders_api import orders_router
from examples.shop.outbound import Outbound
from examples.shop.recommendations import recommendations_router
from examples.shop.slowdown import InjectedSlowdownMiddleware
from examples.shop.storefront import storefront_router
from examples.shop.telemetry import instrument

# The planted bottleneck: without an index on orders(customer_email) this scans the whole table.
# The target definition and the tests quote this statement verbatim, so keep it byte-for-byte stable.
ORDERS_BY_EMAIL = (
    "SELECT id, product_id, quantity, total_cents, status, created_at FROM orders "
    "WHERE customer_email = ? ORDER BY created_at DESC LIMIT 50"
)
# `SELECT *` on purpose: the same text as the queries listed in target.yaml.
PRODUCT_BY_ID = "SELECT * FROM products WHERE id = ?"
CUSTOMER_BY_ID = "SELECT * FROM customers WHERE id = ?"


class ServerTimingMiddleware:
    """Adds ``Server-Timing: db;dur=<ms>`` to every HTTP response, 404s and 422s included.

    A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds no extra task per request, so the
    latency the load test sees is the handler's, not the middleware's.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with a fresh DB-time accumulator and report it in the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        spent = [0.0]
        token = db_seconds.set(spent)

        async def send_with_timing(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("Server-Timing", f"db;dur={spent[0] * 1000:.3f}")
            await send(message)

        try:
            await self.app(scope, receive, send_with_timing)
        finally:
            db_seconds.reset(token)


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the downstream services with the shop; stop them, close the database, then flush the spans."""
    outbound: Outbound = app.state.outbound
    await outbound.start()  # the downstream services are up before the shop says it is listening
    try:
        yield
    finally:
        await outbound.stop()
        app.state.database.close()
    provider = getattr(app.state, "tracer_provider", None)
    if provider is not None:
        provider.shutdown()  # exports what is still batched, so a stop loses no spans


def create_app(database: Path | str) -> FastAPI:
    """The shop application on its (already seeded) database: a SQLite path, or a ``postgresql://`` URL."""
    app = FastAPI(title="Ratchet demo shop", version="1.0", lifespan=_lifespan)
    app.add_middleware(ServerTimingMiddleware)
    # Before the first connection: the instrumentations wrap the drivers' connect functions.
    app.state.tracer_provider = instrument(app, "demo-shop")
    app.state.database = db.open_database(database)
    db.use(app.state.database)

    flags = FlagStore(query, write)
    app.state.outbound = outbound = Outbound()
    app.add_middleware(SwitchableGZipMiddleware, enabled=lambda: flags.current.gzip_responses)
    app.add_middleware(
        InjectedSlowdownMiddleware,
        shares=lambda: flags.current.injected_slowdown,
        traces=lambda: flags.current.injected_slowdown_traces,
    )
    app.add_middleware(FlagViewMiddleware, store=flags)  # added last: outermost, so the others see the view
    app.include_router(admin_router(flags))
    app.include_router(orders_router(query, write, flags))
    app.include_router(availability_router(query, flags, outbound))
    app.include_router(billing_router(query, flags, outbound))
    app.include_router(recommendations_router(query, flags))
    app.include_router(catalog_router(query, flags))
    app.include_router(storefront_router(query, flags))
    app.include_router(metrics_router())

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness, including a trivial query so a broken database shows up here too."""
        query("SELECT 1")
        return {"status": "ok"}

    @app.get("/products/{product_id}")
    def product(product_id: int) -> dict[str, Any]:
        """One product by primary key (a clean, fast endpoint)."""
        rows = query(PRODUCT_BY_ID, product_id)
        if not rows:
            raise HTTPException(404, f"no product {product_id}")
        return dict(rows[0])

    @app.get("/customers/{customer_id}")
    def customer(customer_id: int) -> dict[str, Any]:
        """One customer by primary key (a clean, fast endpoint)."""
        rows = query(CUSTOMER_BY_ID, customer_id)
        if not rows:
            raise HTTPException(404, f"no customer {customer_id}")
        return dict(rows[0])

    @app.get("/orders")
    def orders(customer_email: Annotated[str, Query(min_length=3, max_length=320)]) -> dict[str, Any]:
        """The customer's 50 newest orders (the slow endpoint until orders.customer_email is indexed)."""
        rows = query(ORDERS_BY_EMAIL, customer_email)
        return {"customer_email": customer_email, "orders": [dict(r) for r in rows], "count": len(rows)}

    return app
