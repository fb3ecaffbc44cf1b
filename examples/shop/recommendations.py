"""Product recommendations for a customer (``GET /recommendations/{customer_id}``).

A taste profile is the mean of the customer's purchased products' embeddings; every other product is scored
against it, and the top of that list is re-ranked for variety (maximal marginal relevance), the way a small
in-house recommender does it. Pure Python, so it costs real CPU time on every request, and deterministic: the
same customer with the same orders always gets the same answer.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

from fastapi import APIRouter, HTTPException

from examples.shop.datasource import Query, placeholders
from examples.shop.flags import FlagStore
from examples.shop.seed import PRODUCTS
from examples.shop.ttl_cache import TtlCache

CUSTOMER_EXISTS = "SELECT id FROM customers WHERE id = ?"
PURCHASED_PRODUCTS = "SELECT DISTINCT product_id FROM orders WHERE customer_id = ? ORDER BY product_id"
_DIMENSIONS = 64
_CANDIDATES = 120  # ~30 ms of pure-Python CPU per uncached answer: clearly costly, not borderline
_PICKS = 10
_VARIETY = 0.3  # weight of "unlike what was already picked" against "like the profile"


@functools.cache
def embeddings() -> tuple[tuple[float, ...], ...]:
    """A unit vector per product (index = product id - 1), the same on every start (seeded)."""
    rng = random.Random(7_919)
    vectors = []
    for _ in range(PRODUCTS):
        raw = [rng.gauss(0.0, 1.0) for _ in range(_DIMENSIONS)]
        norm = math.sqrt(sum(x * x for x in raw))
        vectors.append(tuple(x / norm for x in raw))
    return tuple(vectors)


def _dot(a: tuple[float, ...] | list[float], b: tuple[float, ...]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def recommend(purchased: list[int]) -> list[tuple[int, float]]:
    """(product id, relevance) of the products to show, best first; none without a purchase."""
    vectors = embeddings()
    if not purchased:
        return []
    profile = [sum(vectors[p - 1][d] for p in purchased) / len(purchased) for d in range(_DIMENSIONS)]
    owned = set(purchased)
    relevance = {p: _dot(profile, vectors[p - 1]) for p in range(1, PRODUCTS + 1) if p not in owned}
    candidates = sorted(relevance, key=lambda p: (-relevance[p], p))[:_CANDIDATES]
    picked: list[int] = []
    while candidates and len(picked) < _PICKS:

        def marginal(p: int) -> float:
            closest = max((_dot(vectors[p - 1], vectors[q - 1]) for q in picked), default=0.0)
            return (1 - _VARIETY) * relevance[p] - _VARIETY * closest

        best = max(candidates, key=lambda p: (marginal(p), -p))
        picked.append(best)
        candidates.remove(best)
    return [(p, round(relevance[p], 6)) for p in picked]


def recommendations_router(query: Query, flags: FlagStore) -> APIRouter:
    """The recommendations route; its answers are cached per customer while the flag gives a TTL."""
    router = APIRouter(tags=["recommendations"])
    embeddings()  # built once at start-up, not inside the first customer's request
    answers: TtlCache[dict[str, Any]] = TtlCache("recommendations")

    def compute(customer_id: int) -> dict[str, Any]:
        if not query(CUSTOMER_EXISTS, customer_id):
            raise HTTPException(404, f"no customer {customer_id}")
        purchased = [row["product_id"] for row in query(PURCHASED_PRODUCTS, customer_id)]
        ranked = recommend(purchased)
        names = {}
        if ranked:
            ids = [p for p, _ in ranked]
            sql = f"SELECT id, name, price_cents FROM products WHERE id IN ({placeholders(len(ids))})"
            names = {row["id"]: dict(row) for row in query(sql, *ids)}
        products = [names[p] | {"relevance": score} for p, score in ranked if p in names]
        return {"customer_id": customer_id, "based_on": len(purchased), "products": products}

    @router.get("/recommendations/{customer_id}")
    def recommendations(customer_id: int) -> dict[str, Any]:
        """Ten products the customer has not bought, like what they did buy yet unlike each other."""
        ttl = flags.current.recommendations_cache_ttl_s
        return answers.get_or_compute(customer_id, ttl, lambda: compute(customer_id))

    return router
