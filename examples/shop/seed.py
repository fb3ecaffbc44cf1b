"""Deterministic seeding of the shop database (same rows on every machine, every time, SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from examples.shop.db import is_postgres_url, sqlite_path

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
    "durable",
    "compact",
    "premium",
    "lightweight",
    "classic",
    "modern",
    "handmade",
    "recycled",
    "everyday",
    "versatile",
    "ergonomic",
    "weatherproof",
    "washable",
    "foldable",
    "stackable",
    "quiet",
    "bright",
    "soft",
    "design",
    "finish",
    "grip",
    "frame",
    "surface",
    "edge",
    "fabric",
    "handle",
    "cover",
    "base",
    "set",
    "kit",
    "for",
    "with",
    "and",
    "the",
    "a",
    "your",
    "every",
    "home",
    "office",
    "garden",
    "travel",
    "kitchen",
    "use",
)
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
            order_id,
            customer,
            customer_email(customer),
            product,
            quantity,
            quantity * prices[product - 1],
            status,
            created.isoformat(),
        )


@dataclass
class SeedRows:
    """The rows of one seed, drawn from one generator in a fixed order (so both databases get the same)."""

    customers: list[tuple[object, ...]]
    products: list[tuple[object, ...]]
    orders: Iterator[tuple[object, ...]]  # lazily drawn: 500,000 rows need not sit in memory at once
    details: Iterator[tuple[object, ...]]  # product copy, from its own generator


def seed_rows(orders: int) -> SeedRows:
    """Customers, products and ``orders`` orders; draw them in this order (customers, products, orders)."""
    rng = random.Random(SEED)
    signed_up = [(_EPOCH + timedelta(days=rng.randrange(700))).isoformat() for _ in range(CUSTOMERS)]
    customers = [(n, customer_email(n), f"Customer {n}", signed_up[n - 1]) for n in range(1, CUSTOMERS + 1)]
    prices = [rng.randrange(199, 19_999) for _ in range(PRODUCTS)]
    products = [
        (n, f"SKU-{n:05d}", f"Product {n}", prices[n - 1], _CATEGORIES[n % len(_CATEGORIES)])
        for n in range(1, PRODUCTS + 1)
    ]
    return SeedRows(customers, products, _order_rows(rng, prices, 1, orders), _detail_rows())


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
    rows = seed_rows(orders)
    with contextlib.closing(sqlite3.connect(tmp)) as connection:
        # No journal and no syncs while building: a crash here only loses the temporary file, which the
        # next run rebuilds from scratch anyway. This keeps 300k orders well under the 10 s budget.
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.executescript(SCHEMA)
        connection.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", rows.customers)
        connection.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", rows.products)
        # Batches bound memory (one list per batch) while keeping executemany's per-row cost low.
        while batch := list(itertools.islice(rows.orders, _BATCH)):
            connection.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", batch)
        connection.executemany("INSERT INTO product_details VALUES (?, ?, ?)", rows.details)
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


def seed_database(location: Path | str, *, orders: int = 500_000) -> None:
    """Create the shop database at ``location`` (a SQLite path, or a ``postgresql://`` URL) unless an
    identical, complete seed is already there.

    Deterministic (``random.Random(20261122)``), idempotent, and never half done: a SQLite database is built
    in ``path.with_suffix('.tmp')`` and renamed over ``path``; a PostgreSQL one in a single transaction. There
    is deliberately no index on ``orders.customer_email``.
    """
    if is_postgres_url(location):
        seed_postgres(str(location), orders=orders)
        return
    path = sqlite_path(location)
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


# The same tables as SCHEMA, in PostgreSQL's types. Dates stay text (ISO 8601, one offset): the API answers
# exactly what it answers on SQLite, and text order is time order. Primary keys are added after the COPY,
# which builds each index once instead of row by row.
PG_SCHEMA = """
DROP TABLE IF EXISTS seed_info, shop_flags, product_details, orders, products, customers;
CREATE TABLE customers (id integer NOT NULL, email text NOT NULL, name text NOT NULL, created_at text);
CREATE TABLE products (id integer NOT NULL, sku text, name text, price_cents integer, category text);
CREATE TABLE orders (
  id integer NOT NULL, customer_id integer, customer_email text NOT NULL, product_id integer,
  quantity integer, total_cents integer, status text, created_at text
);
CREATE TABLE product_details (product_id integer NOT NULL, description text NOT NULL, specs text NOT NULL);
CREATE TABLE shop_flags (name text PRIMARY KEY, value text NOT NULL);
CREATE TABLE seed_info (orders integer NOT NULL, complete integer NOT NULL, version integer NOT NULL);
"""
PG_KEYS = """
ALTER TABLE customers ADD PRIMARY KEY (id);
ALTER TABLE products ADD PRIMARY KEY (id);
ALTER TABLE orders ADD PRIMARY KEY (id);
-- New orders (POST /orders) are numbered after the seeded ones, as SQLite's INTEGER PRIMARY KEY does.
ALTER TABLE orders ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT setval(pg_get_serial_sequence('orders', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM orders), false);
ALTER TABLE product_details ADD PRIMARY KEY (product_id);
"""


def is_seeded_postgres(connection: psycopg.Connection[object], orders: int) -> bool:
    """True when the database holds a completed seed with ``orders`` orders."""
    if connection.execute("SELECT to_regclass('seed_info')").fetchone() in (None, (None,)):
        return False
    has_version = connection.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'seed_info' AND column_name = 'version'"
    ).fetchone()
    if has_version is None:
        return False  # a seed from before the version column: rebuilt
    row = connection.execute("SELECT orders, complete, version FROM seed_info").fetchone()
    return row is not None and tuple(row) == (orders, 1, SEED_VERSION)


def seed_postgres(url: str, *, orders: int = 500_000) -> None:
    """Seed the (existing) PostgreSQL database at ``url`` with the same rows as the SQLite seed.

    One transaction (PostgreSQL's DDL is transactional): an interrupted seed leaves the database as it was.
    COPY streams the rows; ANALYZE afterwards gives the planner the statistics a live database would have.
    """
    try:
        # Autocommit: the seed below runs in its own explicit transaction, the checks and ANALYZE in none.
        connection = psycopg.connect(url, autocommit=True)
    except psycopg.OperationalError as exc:
        raise ConnectionError(f"cannot connect to the shop database {url}: {exc}") from None
    with connection:
        if is_seeded_postgres(connection, orders):
            return
        rows = seed_rows(orders)
        with connection.transaction(), connection.cursor() as cursor:
            cursor.execute(PG_SCHEMA)
            tables = (
                ("customers", rows.customers),
                ("products", rows.products),
                ("orders", rows.orders),
                ("product_details", rows.details),
            )
            for table, data in tables:
                with cursor.copy(f"COPY {table} FROM STDIN") as copy:
                    for row in data:
                        copy.write_row(row)
            cursor.execute(PG_KEYS)
            cursor.execute(INDEX_ORDERS_BY_CUSTOMER)
            cursor.execute("INSERT INTO seed_info VALUES (%s, 1, %s)", (orders, SEED_VERSION))
        connection.execute("ANALYZE customers, products, orders, product_details")
