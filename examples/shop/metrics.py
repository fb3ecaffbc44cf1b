"""The shop's Prometheus metrics page: its caches' hits and misses, as most services publish them."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

REGISTRY = CollectorRegistry()
CACHE_HITS = Counter("shop_cache_hits", "Lookups served from a cache.", ["cache"], registry=REGISTRY)
# A lookup with the cache switched off is a miss: it computes the answer, as a cold cache would.
CACHE_MISSES = Counter("shop_cache_misses", "Lookups a cache could not serve.", ["cache"], registry=REGISTRY)


def metrics_router() -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
