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
from examples.shop.downstream import STANDARD_RATE, TAX_RATES
from examples.shop.orders_api import ORDER_HISTORY
from examples.shop.seed import CUSTOMERS, PRODUCTS, SEED_VERSION, seed_database
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
    tables = ("customers", "products", "orders", "product_details", "shop_flags")
    counts = {t: fetch(small_db, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    assert counts == {
        "customers": CUSTOMERS,
        "products": PRODUCTS,
        "orders": SMALL_ORDERS,
        "product_details": PRODUCTS,
        "shop_flags": 0,  # every flag at its default
    }
    # Order histories are found by customer id through an index, as in any shop.
    assert "USING INDEX ix_orders_customer" in " ".join(
        str(row[-1]) for row in fetch(small_db, f"EXPLAIN QUERY PLAN {ORDER_HISTORY}", 123)
    )
    assert fetch(small_db, "SELECT email FROM customers WHERE id = 20000") == [("customer20000@example.com",)]
    # The denormalised e-mail on every order matches its customer.
    join = "orders JOIN customers c ON c.id = customer_id"
    assert fetch(small_db, f"SELECT count(*) FROM {join} WHERE email != customer_email") == [(0,)]
    assert fetch(small_db, "PRAGMA journal_mode") == [("wal",)]
    assert fetch(small_db, "SELECT orders, complete, version FROM seed_info") == [(SMALL_ORDERS, 1, SEED_VERSION)]


def test_seed_is_deterministic(small_db: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "shop.db"
    seed_database(other, orders=SMALL_ORDERS)
    for table, key in (("orders", "id"), ("customers", "id"), ("products", "id"), ("product_details", "product_id")):
        sql = f"SELECT * FROM {table} ORDER BY {key}"
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


def test_seed_of_an_older_schema_is_rebuilt(db_copy: Path, small_db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_copy)) as connection:  # what the first version of the seed wrote
        connection.executescript(
            "DROP TABLE product_details; DROP TABLE seed_info;"
            f"CREATE TABLE seed_info (orders INTEGER NOT NULL, complete INTEGER NOT NULL);"
            f"INSERT INTO seed_info VALUES ({SMALL_ORDERS}, 1);"
        )
    seed_database(db_copy, orders=SMALL_ORDERS)
    details = "SELECT * FROM product_details ORDER BY product_id"
    assert digest(db_copy, details) == digest(small_db, details)


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


def test_every_endpoint(shop_db: Path, start_shop: Callable[[Path], str]) -> None:
    url = start_shop(shop_db)
    with httpx.Client(base_url=url, timeout=30) as client:
        health = client.get("/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})

        product = client.get("/products/7")
        assert product.status_code == 200
        row = fetch(shop_db, "SELECT id, sku, name, price_cents, category FROM products WHERE id = 7")[0]
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
        expected = fetch(shop_db, ORDERS_BY_EMAIL, EMAIL)
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


def test_the_rest_of_the_shop_answers_from_its_data_and_refuses_bad_input(
    shop_db: Path, start_shop: Callable[[Path], str]
) -> None:
    url = start_shop(shop_db)
    with httpx.Client(base_url=url, timeout=30) as client:
        [(order, net, category)] = fetch(
            shop_db,
            "SELECT o.id, o.total_cents, p.category FROM orders o JOIN products p ON p.id = o.product_id "
            "WHERE o.customer_id = 123 ORDER BY o.created_at DESC LIMIT 1",
        )
        history = client.get("/customers/123/orders").json()
        assert history["customer"]["email"] == EMAIL and history["orders"][0]["id"] == order
        assert history["count"] == fetch(shop_db, "SELECT count(*) FROM orders WHERE customer_id = 123")[0][0]

        invoice_response = client.get(f"/orders/{order}/invoice")
        assert_timed(invoice_response)  # database time is counted in async routes too (their queries run in threads)
        assert float(invoice_response.headers["server-timing"].removeprefix("db;dur=")) > 0
        invoice = invoice_response.json()
        assert invoice["lines"][0]["net_cents"] == net and invoice["vat_rate"] == TAX_RATES.get(category, STANDARD_RATE)
        assert invoice["total_cents"] == net + invoice["vat_cents"] == net + round(net * invoice["vat_rate"])

        availability = client.get("/products/7/availability")
        assert availability.status_code == 200 and availability.json() == client.get("/products/7/availability").json()
        assert availability.json()["in_stock"] == (availability.json()["on_hand"] > 0)

        picks = client.get("/recommendations/123").json()["products"]
        bought = {p for (p,) in fetch(shop_db, "SELECT product_id FROM orders WHERE customer_id = 123")}
        assert len(picks) == 10 and not bought & {p["id"] for p in picks}
        assert client.get("/recommendations/123").json()["products"] == picks  # deterministic

        export = client.get("/catalog/export").json()
        assert export["count"] == PRODUCTS and export["products"][6]["id"] == 7
        assert set(export["products"][6]["specs"]) >= {"weight_g", "color", "material"}

        page = client.get("/")
        assert page.status_code == 200 and "Product 1" in page.text

        placed = client.post("/orders", json={"customer_id": 123, "product_id": 7, "quantity": 3})
        assert placed.status_code == 201
        stored = fetch(
            shop_db, "SELECT customer_email, quantity, total_cents FROM orders WHERE id = ?", placed.json()["id"]
        )
        price = fetch(shop_db, "SELECT price_cents FROM products WHERE id = 7")[0][0]
        assert stored == [(EMAIL, 3, 3 * price)]

        for missing in ("/customers/0/orders", "/orders/0/invoice", "/products/0/availability", "/recommendations/0"):
            assert client.get(missing).status_code == 404, missing
        assert client.post("/orders", json={"customer_id": 0, "product_id": 7}).status_code == 422
        assert client.post("/orders", json={"customer_id": 999_999, "product_id": 7}).status_code == 404
        assert client.post("/orders", json={"customer_id": 1, "product_id": 7, "quantity": 0}).status_code == 422

        flags = client.get("/admin/flags").json()
        assert client.post("/admin/flags", json={"no_such_flag": True}).status_code == 422
        assert client.post("/admin/flags", json={"tax_client_connections": 0}).status_code == 422
        assert client.get("/admin/flags").json() == flags  # a refused change changes nothing


def test_index_keeps_answers_and_is_picked_up_live(shop_db: Path, start_shop: Callable[[Path], str]) -> None:
    url = start_shop(shop_db)
    emails = [EMAIL, "customer1@example.com", "customer20000@example.com"]
    with httpx.Client(base_url=url, timeout=30) as client:
        before = {e: client.get("/orders", params={"customer_email": e}).json() for e in emails}
        # The optimiser's fix, applied to the live file while the shop keeps its connections open.
        with contextlib.closing(sqlite3.connect(shop_db)) as connection:
            connection.execute("CREATE INDEX ix ON orders(customer_email)")
            connection.commit()
        assert "USING INDEX ix" in orders_plan(shop_db)
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
