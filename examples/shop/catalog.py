"""The full catalogue as one JSON document (``GET /catalog/export``), for partners' nightly feeds.

Rendering it reads every product with its details and serializes about 1.3 MB of JSON: tens of milliseconds
of CPU for an answer that is the same on every request. With the ``catalog_cache_ttl_s`` flag the rendered
document (and, once asked for, its gzip) is kept for that long and sent as it is.
"""

from __future__ import annotations

import functools
import gzip
import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from examples.shop.compression import COMPRESS_LEVEL
from examples.shop.datasource import Query
from examples.shop.flags import FlagStore
from examples.shop.ttl_cache import TtlCache

CATALOG = (
    "SELECT p.id, p.sku, p.name, p.price_cents, p.category, d.description, d.specs "
    "FROM products p JOIN product_details d ON d.product_id = p.id ORDER BY p.id"
)


@dataclass(frozen=True)
class RenderedCatalog:
    """The export's bytes, with their gzip made the first time a client accepts it."""

    body: bytes

    @functools.cached_property  # two first requests at once may both compress: the same bytes, no harm
    def gzipped(self) -> bytes:
        return gzip.compress(self.body, compresslevel=COMPRESS_LEVEL, mtime=0)


def _document(query: Query) -> dict[str, Any]:
    products: list[dict[str, Any]] = []
    for row in query(CATALOG):
        product = dict(row)
        if isinstance(product["specs"], str):  # JSON text; a JSON column type hands over a dict already
            product["specs"] = json.loads(product["specs"])
        products.append(product)
    return {"count": len(products), "products": products}


def catalog_router(query: Query, flags: FlagStore) -> APIRouter:
    """The export route: every product with its description and specifications."""
    router = APIRouter(tags=["catalog"])
    rendered: TtlCache[RenderedCatalog] = TtlCache("catalog_export", max_entries=1)

    @router.get("/catalog/export")
    def export(request: Request) -> Response:
        """Every product, its long description and its specs, in one response."""
        ttl = flags.current.catalog_cache_ttl_s
        if ttl <= 0:
            # A JSONResponse directly: the document is already plain JSON types, no model to validate it against.
            return JSONResponse(_document(query))
        catalog = rendered.get_or_compute("export", ttl, lambda: RenderedCatalog(JSONResponse(_document(query)).body))
        headers = {"Vary": "Accept-Encoding"}
        # Sent compressed only when the shop compresses at all (the gzip flag) and the client accepts it; the
        # gzip middleware leaves a response that already has a Content-Encoding alone.
        if flags.current.gzip_responses and "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(catalog.gzipped, media_type="application/json", headers=headers)
        return Response(catalog.body, media_type="application/json", headers=headers)

    return router
