"""The demo shop: deterministic seeding, the planted bottleneck, and the real HTTP service end to end."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from examples.shop.app import ORDERS_BY_EMAIL, create_app
from examples.shop.seed import CUSTOMERS, PRODUCTS, seed_database
from tests.conftest import SMALL_ORDERS

ROOT = Path(__file__).resolve().parents[1]

EMAIL = "customer123@example.com"


def digest(path: Path, sql: str) -> str:
    """SHA-256 of every row a query returns, in order."""
    sha = hashlib.sha256()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for row in connection.execute(sql):
            sha.update(repr(row).encode())
    return sha.hexdigest()


def fetch(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    """All rows of one query on the database file."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute(sql, params).fetchall()


def orders_plan(path: Path) -> str:
    """SQLite's query plan for the shop's e-mail search, as one string."""
    return " ".join(str(row[-1]) for row in fetch(path, f"EXPLAIN QUERY PLAN {ORDERS_BY_EMAIL}", EMAIL))


# --- seeding ---------------------------------------------------------------------------------------------


def test_seed_has_the_promised_shape(small_db: Path) -> None:
    tables = ("customers", "products", "orders")
    counts = {t: fetch(small_db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    assert counts == {"customers": CUSTOMERS, "products": PRODUCTS, "orders": SMALL_ORDERS}
    assert fetch(small_db, "SELECT email FROM customers WHERE id = 20000") == [("customer20000@example.com",)]
    # The denormalised e-mail on every order matches its customer.
    join = "orders JOIN customers c ON c.id = customer_id"
    assert fetch(small_db, f"SELECT count(*) FROM {join} WHERE email != customer_email") == [(0,)]
    assert fetch(small_db, "PRAGMA journal_mode") == [("wal",)]
    assert fetch(small_db, "SELECT orders, complete FROM seed_info") == [(SMALL_ORDERS, 1)]


def test_seed_is_deterministic(small_db: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "shop.db"
    seed_database(other, orders=SMALL_ORDERS)
    for table in ("orders", "customers", "products"):
        sql = f"SELECT * FROM {table} ORDER BY id"
        assert digest(other, sql) == digest(small_db, sql), table


def test_seed_is_idempotent(db_copy: Path) -> None:
    before = db_copy.stat()
    seed_database(db_copy, orders=SMALL_ORDERS)
    after = db_copy.stat()
    # Same inode, same mtime: a complete seed is left alone, not rebuilt.
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not db_copy.with_suffix(".tmp").exists()


def test_seed_rebuilds_a_different_or_incomplete_database(db_copy: Path, small_db: Path) -> None:
    seed_database(db_copy, orders=1_000)  # another size: rebuilt
    assert fetch(db_copy, "SELECT count(*) FROM orders") == [(1_000,)]
    with contextlib.closing(sqlite3.connect(db_copy)) as connection:  # looks like a crash before completion
        connection.execute("DELETE FROM seed_info")
        connection.commit()
    seed_database(db_copy, orders=SMALL_ORDERS)
    all_orders = "SELECT * FROM orders ORDER BY id"
    assert digest(db_copy, all_orders) == digest(small_db, all_orders)
    assert not db_copy.with_suffix(".tmp").exists()


def test_no_index_serves_the_email_search(small_db: Path) -> None:
    indexed = fetch(small_db, "SELECT name FROM pragma_index_list('orders')")
    for (name,) in indexed:
        columns = [c for (c,) in fetch(small_db, "SELECT name FROM pragma_index_info(?)", name)]
        assert "customer_email" not in columns, f"index {name} would defuse the planted bottleneck"
    assert "SCAN orders" in orders_plan(small_db)


# --- the HTTP service ------------------------------------------------------------------------------------


def assert_timed(response: httpx.Response) -> None:
    """Every response carries the database time as ``Server-Timing: db;dur=<ms>``."""
    timing = response.headers.get("server-timing", "")
    assert timing.startswith("db;dur="), timing
    assert float(timing.removeprefix("db;dur=")) >= 0


def test_every_endpoint(small_db: Path, start_shop: Callable[[Path], str]) -> None:
    url = start_shop(small_db)
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})

        product = client.get("/products/7")
        assert product.status_code == 200
        row = fetch(small_db, "SELECT id, sku, name, price_cents, category FROM products WHERE id = 7")[0]
        assert product.json() == dict(zip(("id", "sku", "name", "price_cents", "category"), row, strict=True))

        customer = client.get("/customers/123")
        assert customer.status_code == 200
        assert customer.json()["email"] == EMAIL
        assert set(customer.json()) == {"id", "email", "name", "created_at"}

        for missing in ("/products/999999", "/customers/0"):
            response = client.get(missing)
            assert response.status_code == 404
            assert "detail" in response.json()
            assert_timed(response)

        assert client.get("/orders").status_code == 422
        assert client.get("/products/not-a-number").status_code == 422

        orders = client.get("/orders", params={"customer_email": EMAIL})
        assert orders.status_code == 200
        body = orders.json()
        expected = fetch(small_db, ORDERS_BY_EMAIL, EMAIL)
        assert body["customer_email"] == EMAIL
        assert body["count"] == len(body["orders"]) == len(expected) > 0
        assert [tuple(o.values()) for o in body["orders"]] == expected
        assert [o["created_at"] for o in body["orders"]] == sorted(
            (o["created_at"] for o in body["orders"]), reverse=True
        )

        nobody = client.get("/orders", params={"customer_email": "nobody@example.com"})
        assert nobody.json() == {"customer_email": "nobody@example.com", "orders": [], "count": 0}

        for response in (health, product, customer, orders, nobody):
            assert_timed(response)


def test_index_keeps_answers_and_is_picked_up_live(db_copy: Path, start_shop: Callable[[Path], str]) -> None:
    url = start_shop(db_copy)
    emails = [EMAIL, "customer1@example.com", "customer20000@example.com"]
    with httpx.Client(base_url=url, timeout=30) as client:
        before = {e: client.get("/orders", params={"customer_email": e}).json() for e in emails}
        # The optimiser's fix, applied to the live file while the shop keeps its connections open.
        with contextlib.closing(sqlite3.connect(db_copy)) as connection:
            connection.execute("CREATE INDEX ix ON orders(customer_email)")
            connection.commit()
        assert "USING INDEX ix" in orders_plan(db_copy)
        after = {e: client.get("/orders", params={"customer_email": e}).json() for e in emails}
    assert after == before
    assert all(body["count"] > 0 for body in after.values())


def test_seeds_when_missing_and_refuses_to_serve_nothing(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "shop.db"
    command = [sys.executable, "-m", "examples.shop", "--db", str(database), "--orders", "500", "--seed-only"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # stdout is reserved for the one "listening" line
    assert fetch(database, "SELECT count(*) FROM orders") == [(500,)]

    with pytest.raises(FileNotFoundError):
        create_app(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()
