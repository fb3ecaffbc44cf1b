"""The full catalogue as one JSON document (``GET /catalog/export``), for partners' nightly feeds."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from examples.shop.datasource import Query

CATALOG = (
    "SELECT p.id, p.sku, p.name, p.price_cents, p.category, d.description, d.specs "
    "FROM products p JOIN product_details d ON d.product_id = p.id ORDER BY p.id"
)


def catalog_router(query: Query) -> APIRouter:
    """The export route: every product with its description and specifications."""
    router = APIRouter(tags=["catalog"])

    @router.get("/catalog/export")
    def export() -> JSONResponse:
        """Every product, its long description and its specs, in one response."""
        products: list[dict[str, Any]] = []
        for row in query(CATALOG):
            product = dict(row)
            if isinstance(product["specs"], str):  # JSON text; a JSON column type hands over a dict already
                product["specs"] = json.loads(product["specs"])
            products.append(product)
        # A JSONResponse directly: the document is already plain JSON types, no model to validate it against.
        return JSONResponse({"count": len(products), "products": products})

    return router
