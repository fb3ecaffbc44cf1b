"""The shop's feature flags and the admin API that changes them (``GET``/``POST /admin/flags``).

Flags are kept in the ``shop_flags`` table, so a restart keeps them and a fresh copy of the database starts
from the defaults; requests read the in-memory copy, so checking a flag costs no query (and adds no span).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi import APIRouter, Body, HTTPException
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class FlagStore:
    """The current flags: read lock-free by requests, changed (and saved) one update at a time."""

    def __init__(self, query: Query, write: Query) -> None:
        self._write = write
        self._lock = threading.Lock()
        saved = {row["name"]: json.loads(row["value"]) for row in query(_ALL_FLAGS)}
        known = {name: value for name, value in saved.items() if name in ShopFlags.model_fields}
        # A flag an older shop saved but this one no longer has is ignored rather than refusing to start.
        self.current = ShopFlags.model_validate(known)

    def update(self, changes: dict[str, Any]) -> ShopFlags:
        """Apply ``changes`` (flag name → value) and save them; ValidationError names what is wrong."""
        with self._lock:
            updated = ShopFlags.model_validate(self.current.model_dump() | changes)
            for name in changes:
                self._write(_SAVE_FLAG, name, json.dumps(getattr(updated, name)))
            # One reference swap: a request sees either the old flags or the new ones, never a mix.
            self.current = updated
            return updated


def admin_router(store: FlagStore) -> APIRouter:
    """``GET /admin/flags`` (the current flags) and ``POST /admin/flags`` (change some; answers all of them)."""
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.get("/flags")
    def read_flags() -> dict[str, Any]:
        """Every flag and its value."""
        return store.current.model_dump()

    @router.post("/flags")
    def change_flags(changes: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """Set the flags named in the body; setting a flag to its current value changes nothing."""
        try:
            return store.update(changes).model_dump()
        except ValidationError as exc:
            raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from None

    return router
