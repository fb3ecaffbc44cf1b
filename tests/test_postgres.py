"""The demo shop on a real PostgreSQL server: the same rows and answers as on SQLite, its planted missing index
found in the plan, and the index lever applied and rolled back on PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlmodel import select

from activities.assessment import inspect_statement
from activities.levers import LeverActivities
from examples.shop.app import ORDERS_BY_EMAIL
from examples.shop.db import to_psycopg
from examples.shop.seed import SEED_VERSION
from ratchet.analysis.planning import generated_index_lever
from ratchet.config.common import FindingType
from ratchet.config.loading import load_target
from ratchet.contracts import Finding, LeverCall
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import LeverAction
from tests.conftest import SHOP_ORDERS, SHOP_TARGET, Shop, copy_durably
from tests.postgres_server import PostgresServer

EMAILS = ["customer123@example.com", "customer1@example.com", "customer20000@example.com"]


def pg_rows(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as connection:
        return connection.execute(to_psycopg(sql), params).fetchall()


def pg_plan(url: str, email: str) -> str:
    """PostgreSQL's plan for the shop's e-mail search, as one string."""
    return "\n".join(str(row[0]) for row in pg_rows(url, f"EXPLAIN {ORDERS_BY_EMAIL}", email))


def table_digest(rows: list[tuple[object, ...]]) -> str:
    sha = hashlib.sha256()
    for row in rows:
        sha.update(repr(tuple(row)).encode())
    return sha.hexdigest()


def test_postgres_seed_has_the_same_rows_as_sqlite(pg_database: str, shop_template: Path) -> None:
    with contextlib.closing(sqlite3.connect(shop_template)) as connection:
        for table, key in (
            ("customers", "id"),
            ("products", "id"),
            ("orders", "id"),
            ("product_details", "product_id"),
        ):
            sql = f"SELECT * FROM {table} ORDER BY {key}"
            on_sqlite = connection.execute(sql).fetchall()
            assert table_digest(pg_rows(pg_database, sql)) == table_digest(on_sqlite), table
    assert pg_rows(pg_database, "SELECT orders, complete, version FROM seed_info") == [(SHOP_ORDERS, 1, SEED_VERSION)]
    # The planted bottleneck is there too: orders has its key and the customer-history index, the e-mail
    # search has none and scans.
    indexes = pg_rows(pg_database, "SELECT indexname FROM pg_indexes WHERE tablename = 'orders' ORDER BY 1")
    assert indexes == [("ix_orders_customer",), ("orders_pkey",)]
    assert "Seq Scan on orders" in pg_plan(pg_database, EMAILS[0])


def test_shop_on_postgres_answers_as_on_sqlite(shop: Shop, pg_shop: Shop) -> None:
    paths = [
        "/health",
        "/products/7",
        "/customers/123",
        "/products/999999",
        "/customers/0",
        "/orders",
        "/products/not-a-number",
        "/orders?customer_email=nobody@example.com",
    ]
    paths += [f"/orders?customer_email={email}" for email in EMAILS]
    # The endpoints behind the planted problems, joins and IN lists included.
    paths += [
        "/customers/42/orders",
        "/products/7/availability",
        "/recommendations/42",
        "/catalog/export",
        "/orders/1234/invoice",
        "/admin/flags",
    ]
    with httpx.Client(base_url=shop.url, timeout=30) as lite, httpx.Client(base_url=pg_shop.url, timeout=30) as pg:
        for path in paths:
            expected, answer = lite.get(path), pg.get(path)
            assert (answer.status_code, answer.json()) == (expected.status_code, expected.json()), path
            assert answer.headers["server-timing"].startswith("db;dur="), path
        assert pg.get("/").text == lite.get("/").text
        orders = pg.get("/orders", params={"customer_email": EMAILS[0]}).json()
        # Writes: a flag set and read back, and a new order numbered after the seeded ones.
        flipped = pg.post("/admin/flags", json={"batch_order_products": True})
        assert flipped.status_code == 200 and pg.get("/admin/flags").json()["batch_order_products"] is True
        assert pg.get("/customers/42/orders").json() == lite.get("/customers/42/orders").json()
        placed = pg.post("/orders", json={"customer_id": 42, "product_id": 7, "quantity": 2})
        assert placed.status_code == 201 and placed.json()["id"] == SHOP_ORDERS + 1, placed.text
    assert orders["count"] == len(orders["orders"]) > 0


def test_missing_index_found_fixed_and_rolled_back_on_postgres(pg_shop: Shop, tmp_path: Path) -> None:
    target = load_target(SHOP_TARGET)
    assert target.database is not None and target.database.dialect == "postgresql"
    endpoint = target.endpoint("orders-by-email")
    indexes_before = pg_shop.indexes()

    evidence = inspect_statement(target, endpoint, endpoint.queries[0].sql)
    assert [scan.table for scan in evidence.full_scans] == ["orders"]
    assert any("Seq Scan on orders" in line for line in evidence.plan), evidence.plan
    assert evidence.filtered_columns["orders"] == ["customer_email"]
    assert evidence.table_rows["orders"] == SHOP_ORDERS

    finding = Finding(
        id="F1",
        type=FindingType.MISSING_INDEX,
        endpoint=endpoint.name,
        severity="high",
        impact=1.0,
        estimated_gain_ms=1.0,
        summary="scan",
        evidence={"table": "orders", "columns": ["customer_email"]},
    )
    lever = generated_index_lever(finding, "postgresql")
    levers = LeverActivities(Settings(home=tmp_path / "home").resolved_store_url)
    call = LeverCall(campaign_id="c1", change_id="C1", lever=lever, target=target)
    with httpx.Client(base_url=pg_shop.url, timeout=30) as client:
        before = [client.get("/orders", params={"customer_email": e}).json() for e in EMAILS]

        applied = levers._act(call, "apply")
        assert applied.changed and applied.verified
        plan = pg_plan(pg_shop.database, EMAILS[0])  # type: ignore[arg-type]
        assert "Seq Scan" not in plan and "ratchet_ix_orders_customer_email" in plan, plan
        # The live shop (its connections open all along) answers the same, now through the index.
        assert [client.get("/orders", params={"customer_email": e}).json() for e in EMAILS] == before

        rolled_back = levers._act(call, "rollback")
        assert rolled_back.changed and rolled_back.verified
        assert pg_shop.indexes() == indexes_before
        assert "Seq Scan on orders" in pg_plan(pg_shop.database, EMAILS[0])  # type: ignore[arg-type]
        assert [client.get("/orders", params={"customer_email": e}).json() for e in EMAILS] == before


def test_target_levers_check_the_postgres_catalog(pg_shop: Shop, tmp_path: Path) -> None:
    """The shop's own lever reads pg_indexes on PostgreSQL (its check picks the dialect's catalog)."""
    target = load_target(SHOP_TARGET)
    [lever] = [lever for lever in target.levers if lever.name == "orders-status-index"]
    levers = LeverActivities(Settings(home=tmp_path / "home").resolved_store_url)
    call = LeverCall(campaign_id="c2", change_id="C1", lever=lever, target=target)
    indexes_before = pg_shop.indexes()

    assert levers._act(call, "apply").verified
    assert "ix_orders_status" in {name for name, _ in pg_shop.indexes()}
    again = levers._act(call, "apply")
    assert not again.changed  # the check read the catalog: already in effect
    assert levers._act(call, "rollback").changed
    assert pg_shop.indexes() == indexes_before


def test_ratchets_own_store_on_postgres(
    postgres: PostgresServer, shop_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RATCHET_STORE_URL=postgresql+psycopg://...: the store's tables are created there and the ledger lands there."""
    store_url = postgres.create_database("ratchet_store").replace("postgresql://", "postgresql+psycopg://", 1)
    database = tmp_path / "shop.db"
    copy_durably(shop_template, database)
    monkeypatch.setenv("SHOP_DB", str(database))
    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)
    target = load_target(SHOP_TARGET)
    [lever] = [lever for lever in target.levers if lever.name == "orders-status-index"]
    call = LeverCall(campaign_id="c3", change_id="C1", lever=lever, target=target)
    assert LeverActivities(store_url)._act(call, "apply").changed

    with session_for(store_url) as session:
        rows = session.exec(select(LeverAction).where(LeverAction.campaign_id == "c3")).all()
    assert [(row.action, row.changed, row.verified) for row in rows] == [("apply", True, True)]
