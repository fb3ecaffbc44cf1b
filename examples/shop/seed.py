"""Deterministic seeding of the shop database (same rows on every machine, every time)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

CUSTOMERS = 20_000
PRODUCTS = 2_000
SEED = 20261122
# Bumped whenever the schema changes, so an older seed is rebuilt rather than served with tables missing.
SEED_VERSION = 2
_BATCH = 20_000
_STATUSES = ("placed", "paid", "shipped", "delivered", "returned")
_CATEGORIES = ("books", "garden", "kitchen", "toys", "tools", "music", "sports", "office")
# Words, colours and materials of the generated product copy.
_WORDS = (
    "durable", "compact", "premium", "lightweight", "classic", "modern", "handmade", "recycled", "everyday",
    "versatile", "ergonomic", "weatherproof", "washable", "foldable", "stackable", "quiet", "bright", "soft",
    "design", "finish", "grip", "frame", "surface", "edge", "fabric", "handle", "cover", "base", "set", "kit",
    "for", "with", "and", "the", "a", "your", "every", "home", "office", "garden", "travel", "kitchen", "use",
)  # fmt: skip
_COLORS = ("black", "white", "red", "blue", "green", "grey", "oak", "walnut", "steel", "sand")
_MATERIALS = ("cotton", "steel", "aluminium", "oak", "bamboo", "glass", "ceramic", "polymer", "wool", "paper")
# Fixed, not "now": the same seed must give byte-identical rows whenever it runs.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT);
CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT, name TEXT, price_cents INTEGER, category TEXT);
-- customer_email is denormalised on purpose (support staff search orders by e-mail) and deliberately
-- NOT indexed: that is the planted bottleneck the optimiser is meant to find and fix.
CREATE TABLE orders (
  id INTEGER PRIMARY KEY, customer_id INTEGER, customer_email TEXT NOT NULL, product_id INTEGER,
  quantity INTEGER, total_cents INTEGER, status TEXT, created_at TEXT
);
-- The long-form product copy and specifications (JSON text) the catalogue export publishes.
CREATE TABLE product_details (product_id INTEGER PRIMARY KEY, description TEXT NOT NULL, specs TEXT NOT NULL);
-- Feature flags the admin API toggles (value as JSON text); a row exists only once a flag was changed.
CREATE TABLE shop_flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
-- Written last, in the same transaction as the data: its presence means the seed is complete.
CREATE TABLE seed_info (orders INTEGER NOT NULL, complete INTEGER NOT NULL, version INTEGER NOT NULL);
"""
# Created after the rows are in (faster than maintaining it row by row): a customer's order history is
# looked up by customer id, as any shop would index it. orders.customer_email stays unindexed.
INDEX_ORDERS_BY_CUSTOMER = "CREATE INDEX ix_orders_customer ON orders (customer_id, created_at)"


def customer_email(n: int) -> str:
    """The e-mail address of customer ``n`` (1-based), as stored in both customers and orders."""
    return f"customer{n}@example.com"


def is_seeded(path: Path, orders: int) -> bool:
    """True when ``path`` holds a completed seed with ``orders`` orders."""
    if not path.exists():
        return False
    try:
        # mode=rw: checking must never create a file (or tables) as a side effect.
        uri = f"{path.resolve().as_uri()}?mode=rw"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            row = connection.execute("SELECT orders, complete, version FROM seed_info").fetchone()
    except sqlite3.DatabaseError:  # not a database, no seed_info table, an older schema: not ours / not finished
        return False
    return row is not None and tuple(row) == (orders, 1, SEED_VERSION)


def _order_rows(rng: random.Random, prices: list[int], first: int, last: int) -> Iterator[tuple[object, ...]]:
    """Orders ``first``..``last`` (inclusive), drawing from ``rng`` in a fixed order."""
    for order_id in range(first, last + 1):
        customer = rng.randrange(1, CUSTOMERS + 1)
        product = rng.randrange(1, PRODUCTS + 1)
        quantity = rng.randrange(1, 5)
        created = _EPOCH + timedelta(minutes=rng.randrange(1_000_000))
        status = rng.choice(_STATUSES)
        yield (
            order_id, customer, customer_email(customer), product, quantity,
            quantity * prices[product - 1], status, created.isoformat(),
        )  # fmt: skip


def _detail_rows() -> Iterator[tuple[object, ...]]:
    """Description and specs of every product, from their own generator so the other tables keep their rows."""
    rng = random.Random(SEED + 1)
    for product in range(1, PRODUCTS + 1):
        description = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(55, 75))).capitalize() + "."
        specs = {
            "weight_g": rng.randrange(50, 25_000),
            "dimensions_mm": [rng.randrange(20, 1_200) for _ in range(3)],
            "color": rng.choice(_COLORS),
            "material": rng.choice(_MATERIALS),
            "warranty_months": rng.choice((6, 12, 24, 36)),
        }
        yield product, description, json.dumps(specs, separators=(",", ":"))


def _build(tmp: Path, orders: int) -> None:
    """Write a complete seed of ``orders`` orders into the fresh file ``tmp``."""
    rng = random.Random(SEED)
    with contextlib.closing(sqlite3.connect(tmp)) as connection:
        # No journal and no syncs while building: a crash here only loses the temporary file, which the
        # next run rebuilds from scratch anyway. This keeps 300k orders well under the 10 s budget.
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.executescript(SCHEMA)
        signed_up = [(_EPOCH + timedelta(days=rng.randrange(700))).isoformat() for _ in range(CUSTOMERS)]
        connection.executemany(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            ((n, customer_email(n), f"Customer {n}", signed_up[n - 1]) for n in range(1, CUSTOMERS + 1)),
        )
        prices = [rng.randrange(199, 19_999) for _ in range(PRODUCTS)]
        connection.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            (
                (n, f"SKU-{n:05d}", f"Product {n}", prices[n - 1], _CATEGORIES[n % len(_CATEGORIES)])
                for n in range(1, PRODUCTS + 1)
            ),
        )
        # Batches bound memory (one list per batch) while keeping executemany's per-row cost low.
        for first in range(1, orders + 1, _BATCH):
            last = min(first + _BATCH - 1, orders)
            rows = list(_order_rows(rng, prices, first, last))
            connection.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        connection.executemany("INSERT INTO product_details VALUES (?, ?, ?)", _detail_rows())
        connection.execute(INDEX_ORDERS_BY_CUSTOMER)
        connection.execute("INSERT INTO seed_info VALUES (?, 1, ?)", (orders, SEED_VERSION))
        connection.commit()
        # The served database runs in WAL mode (readers never block the optimiser's CREATE INDEX and vice
        # versa). The mode is persistent in the file header; closing the last connection checkpoints and
        # removes the -wal file, so the single file is complete and safe to copy.
        connection.execute("PRAGMA journal_mode=WAL")
    # synchronous=OFF above: make the bytes durable before the rename publishes them.
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())


def seed_database(path: Path, *, orders: int = 500_000) -> None:
    """Create the shop database at ``path`` unless an identical, complete seed is already there.

    Deterministic (``random.Random(20261122)``) and idempotent. The database is built in
    ``path.with_suffix('.tmp')`` and renamed over ``path``, so a crash or a signal never leaves a
    half-seeded database behind. There is deliberately no index on ``orders.customer_email``.
    """
    if is_seeded(path, orders):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)  # a previous, interrupted build
    try:
        _build(tmp, orders)
        # A -wal/-shm left by an old database at `path` would be paired with the new file and could
        # corrupt it; they belong to the file being replaced, so they go with it.
        for stale in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            stale.unlink(missing_ok=True)
        tmp.replace(path)
    except BaseException:  # including KeyboardInterrupt/SystemExit from a signal: never leave the tmp file
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself (not possible on every platform)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
