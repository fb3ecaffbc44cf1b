"""The shop's feature flags and the admin API that changes them (``GET``/``POST /admin/flags``).

Flags are kept in the ``shop_flags`` table, so a restart keeps them and a fresh copy of the database starts
from the defaults; requests read the in-memory copy, so checking a flag costs no query (and adds no span).
"""

from __future__ import annotations

import contextvars
import json
import random
import threading
from typing import Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from examples.shop.datasource import Query

_ALL_FLAGS = "SELECT name, value FROM shop_flags"
_SAVE_FLAG = (
    "INSERT INTO shop_flags (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


class ShopFlags(BaseModel):
    """Every flag with its default: the shop as it ships."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_order_products: bool = Field(False, description="Order history: load all products in one query.")
    parallel_availability_lookups: bool = Field(False, description="Availability: call the services concurrently.")
    recommendations_cache_ttl_s: float = Field(0.0, ge=0, description="Keep computed recommendations this long.")
    gzip_responses: bool = Field(False, description="gzip responses of 1 KiB or more when the client accepts it.")
    storefront_asset_pipeline: bool = Field(
        False, description="Storefront: deferred script, non-blocking styles, gzip and long-lived cache headers."
    )
    tax_client_connections: int = Field(1, ge=1, le=256, description="Connections to the tax service.")
    catalog_cache_ttl_s: float = Field(0.0, ge=0, description="Keep the rendered catalogue export this long.")
    order_history_cache_ttl_s: float = Field(0.0, ge=0, description="Keep each customer's order history this long.")
    injected_slowdown: dict[str, float] = Field(
        default_factory=dict,
        description="Benchmarks and tests only: route path -> share by which its answers are made slower.",
    )
    injected_slowdown_traces: list[str] = Field(
        default_factory=list,
        description="Tests only: the injected slowdown holds only for requests whose W3C trace id starts with one "
        "of these hex prefixes (one load run's requests); empty: for every request.",
    )
    rollout_percent: dict[str, float] = Field(
        default_factory=dict,
        description="Gradual rollout: flag -> share of requests (0-100) that see its set value; the others see "
        "its default. A flag not named here applies to every request. A change merges into it; a share of 100 "
        "removes the flag from it.",
    )


# The flags one request sees (set per request by FlagViewMiddleware; a partly rolled-out flag differs by request).
_REQUEST_FLAGS: contextvars.ContextVar[ShopFlags | None] = contextvars.ContextVar("shop_request_flags", default=None)


class FlagStore:
    """The current flags: read lock-free by requests, changed (and saved) one update at a time."""

    def __init__(self, query: Query, write: Query) -> None:
        self._write = write
        self._lock = threading.Lock()
        saved = {row["name"]: json.loads(row["value"]) for row in query(_ALL_FLAGS)}
        known = {name: value for name, value in saved.items() if name in ShopFlags.model_fields}
        # A flag an older shop saved but this one no longer has is ignored rather than refusing to start.
        self.saved = ShopFlags.model_validate(known)

    @property
    def current(self) -> ShopFlags:
        """The flags the current request sees; outside a request, the saved ones."""
        return _REQUEST_FLAGS.get() or self.saved

    def for_request(self) -> ShopFlags:
        """A request's view: each partly rolled-out flag is its set value for its share of requests, its default
        for the others (drawn per request, so the share holds over many requests)."""
        saved = self.saved
        if not saved.rollout_percent:
            return saved
        held_back = {
            name: ShopFlags.model_fields[name].get_default(call_default_factory=True)
            for name, percent in saved.rollout_percent.items()
            if name in ShopFlags.model_fields and random.random() * 100 >= percent
        }
        return saved.model_copy(update=held_back) if held_back else saved

    def update(self, changes: dict[str, Any]) -> ShopFlags:
        """Apply ``changes`` (flag name → value) and save them; ValidationError names what is wrong."""
        with self._lock:
            current = self.saved.model_dump()
            if isinstance(changes.get("rollout_percent"), dict):
                # Merged, so that two levers rolling out two flags do not undo each other's share.
                shares = current["rollout_percent"] | changes["rollout_percent"]
                changes = changes | {"rollout_percent": {k: v for k, v in shares.items() if v != 100}}
            updated = ShopFlags.model_validate(current | changes)
            for name in changes:
                self._write(_SAVE_FLAG, name, json.dumps(getattr(updated, name)))
            # One reference swap: a request sees either the old flags or the new ones, never a mix.
            self.saved = updated
            return updated


class FlagViewMiddleware:
    """Gives every HTTP request its view of the flags (the outermost middleware: the others read it too)."""

    def __init__(self, app: ASGIApp, store: FlagStore) -> None:
        self.app, self.store = app, store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _REQUEST_FLAGS.set(self.store.for_request() if scope["type"] == "http" else None)
        try:
            await self.app(scope, receive, send)
        finally:
            _REQUEST_FLAGS.reset(token)


def admin_router(store: FlagStore) -> APIRouter:
    """``GET /admin/flags`` (the current flags) and ``POST /admin/flags`` (change some; answers all of them)."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/flags")
    def read_flags() -> dict[str, Any]:
        """Every flag and its saved value (a partly rolled-out flag shows its set value and its share)."""
        return store.saved.model_dump()

    @router.post("/flags")
    def change_flags(changes: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Set the flags named in the body; setting a flag to its current value changes nothing."""
        try:
            return store.update(changes).model_dump()
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None

    return router
