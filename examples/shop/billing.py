"""An order's invoice, with the VAT quoted by the tax service: ``GET /orders/{order_id}/invoice``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from starlette.concurrency import run_in_threadpool

from examples.shop.datasource import Query
from examples.shop.flags import FlagStore
from examples.shop.outbound import Outbound

INVOICE_ORDER = (
    "SELECT o.id, o.customer_id, o.quantity, o.total_cents, o.status, o.created_at, p.sku, p.name, p.category "
    "FROM orders o JOIN products p ON p.id = o.product_id WHERE o.id = ?"
)


def billing_router(query: Query, flags: FlagStore, outbound: Outbound) -> APIRouter:
    """The invoice route; its tax client's pool size comes from the ``tax_client_connections`` flag."""
    router = APIRouter(tags=["orders"])

    @router.get("/orders/{order_id}/invoice")
    async def invoice(order_id: int) -> dict[str, Any]:
        """The order as an invoice line, its VAT and the total due."""
        rows = await run_in_threadpool(query, INVOICE_ORDER, order_id)
        if not rows:
            raise HTTPException(404, f"no order {order_id}")
        order = dict(rows[0])
        client = outbound.tax_client(flags.current.tax_client_connections)
        response = await client.post(
            "/quotes", json={"amount_cents": order["total_cents"], "category": order["category"]}
        )
        response.raise_for_status()
        tax = response.json()
        return {
            "order_id": order["id"],
            "customer_id": order["customer_id"],
            "status": order["status"],
            "issued_for": order["created_at"],
            "lines": [
                {
                    "sku": order["sku"],
                    "name": order["name"],
                    "quantity": order["quantity"],
                    "net_cents": order["total_cents"],
                }
            ],
            "vat_rate": tax["rate"],
            "vat_cents": tax["tax_cents"],
            "total_cents": order["total_cents"] + tax["tax_cents"],
        }

    return router
