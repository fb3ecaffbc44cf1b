"""A customer's order history (``GET /customers/{id}/orders``) and placing an order (``POST /orders``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from examples.shop.datasource import Query, placeholders
from examples.shop.flags import FlagStore
from examples.shop.ttl_cache import TtlCache

CUSTOMER_SUMMARY = "SELECT id, email, name FROM customers WHERE id = ?"
ORDER_HISTORY = (
    "SELECT id, product_id, quantity, total_cents, status, created_at FROM orders "
    "WHERE customer_id = ? ORDER BY created_at DESC, id DESC LIMIT 50"
)
# How the history shipped: each order's product fetched on its own, the way a lazy-loading ORM does it.
ORDER_PRODUCT = "SELECT id, sku, name, price_cents, category FROM products WHERE id = ?"
PRODUCT_PRICE = "SELECT price_cents FROM products WHERE id = ?"
INSERT_ORDER = (
    "INSERT INTO orders (customer_id, customer_email, product_id, quantity, total_cents, status, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


def order_products_sql(count: int) -> str:
    """The batched form: every product of the history in one ``IN`` query."""
    return f"SELECT id, sku, name, price_cents, category FROM products WHERE id IN ({placeholders(count)})"


class NewOrder(BaseModel):
    """What ``POST /orders`` takes."""

    customer_id: int = Field(gt=0)
    product_id: int = Field(gt=0)
    quantity: int = Field(1, ge=1, le=100)


def orders_router(query: Query, write: Query, flags: FlagStore) -> APIRouter:
    """The order-history and order-placing routes, reading and writing through ``query`` and ``write``."""
    router = APIRouter(tags=["orders"])
    histories: TtlCache[dict[str, Any]] = TtlCache("order_history")

    def products_of(orders: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        ids = sorted({order["product_id"] for order in orders})
        if not ids:
            return {}
        if flags.current.batch_order_products:
            return {row["id"]: dict(row) for row in query(order_products_sql(len(ids)), *ids)}
        found = {}
        for order in orders:
            for row in query(ORDER_PRODUCT, order["product_id"]):
                found[row["id"]] = dict(row)
        return found

    def history(customer_id: int) -> dict[str, Any]:
        rows = query(CUSTOMER_SUMMARY, customer_id)
        if not rows:
            raise HTTPException(404, f"no customer {customer_id}")
        orders = [dict(row) for row in query(ORDER_HISTORY, customer_id)]
        products = products_of(orders)
        for order in orders:
            order["product"] = products.get(order.pop("product_id"))
        return {"customer": dict(rows[0]), "orders": orders, "count": len(orders)}

    @router.get("/customers/{customer_id}/orders")
    def customer_orders(customer_id: int) -> dict[str, Any]:
        """The customer's 50 newest orders, each with its product."""
        ttl = flags.current.order_history_cache_ttl_s
        return histories.get_or_compute(customer_id, ttl, lambda: history(customer_id))

    @router.post("/orders", status_code=201)
    def place_order(new: NewOrder) -> dict[str, Any]:
        """Record an order for an existing customer and product; answers it with its id."""
        customer = query(CUSTOMER_SUMMARY, new.customer_id)
        product = query(PRODUCT_PRICE, new.product_id)
        if not customer or not product:
            raise HTTPException(404, "no such customer or product")
        order = {
            "customer_id": new.customer_id,
            "customer_email": customer[0]["email"],
            "product_id": new.product_id,
            "quantity": new.quantity,
            "total_cents": new.quantity * product[0]["price_cents"],
            "status": "placed",
            # The seed's format (ISO 8601, whole seconds, UTC), so text order is time order.
            "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        }
        [row] = write(INSERT_ORDER, *order.values())
        return {"id": row["id"], **order}

    return router
