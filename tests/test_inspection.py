"""Database inspection after a real load run of the real shop, on SQLite (statements from the spans) and on
PostgreSQL (statements from pg_stat_statements): table sizes, indexes, the dominant statement and its plan."""

from __future__ import annotations

import json
import uuid

import duckdb
import pytest
from temporalio.testing import ActivityEnvironment

from activities.measurement import MeasurementActivities
from examples.shop.app import ORDERS_BY_EMAIL
from ratchet.config.loading import load_target
from ratchet.contracts import LoadTestRequest, LoadTestResult
from ratchet.database.inspection import inspect_run, inspect_run_summary
from ratchet.database.models import DatabaseInspection
from ratchet.database.statements import normalize_statement
from ratchet.settings import Settings
from tests.conftest import SHOP_ORDERS, SHOP_TARGET, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def baseline_run(settings: Settings) -> LoadTestResult:
    """A short real k6 run against the shop the target file points at (the activity, outside a workflow)."""
    request = LoadTestRequest(
        campaign_id=f"inspect-{uuid.uuid4().hex[:8]}",
        label="baseline",
        target=load_target(SHOP_TARGET),
        rate=20,
        duration_s=4,
        warmup_s=1,
        max_vus=20,
        request_timeout_s=10,
    )
    return await ActivityEnvironment().run(MeasurementActivities(settings).run_load_test, request)


def orders_requests(settings: Settings, run: LoadTestResult) -> int:
    """How many e-mail searches the shop served during the run (warm-up included), from its server spans."""
    [(count,)] = duckdb.sql(
        "SELECT count(*) FROM read_parquet(?) WHERE kind = 'server' AND endpoint = 'orders-by-email'",
        params=[str(settings.spans_file(run.run_id))],
    ).fetchall()
    return int(count)


def assert_orders_dominate(inspection: DatabaseInspection, dialect: str, scan_line: str, calls: int) -> None:
    """What a person reads first: the e-mail search took the most time, and its plan scans all of orders."""
    expected = normalize_statement(ORDERS_BY_EMAIL, dialect).text  # type: ignore[arg-type]
    top = inspection.plans[0]
    assert top.statement == expected, [p.statement for p in inspection.plans]
    assert top.full_scans == ["orders"]
    assert any(scan_line in line for line in top.plan), top.plan
    [stats] = [s for s in inspection.statements if s.statement == expected]
    assert stats.calls == calls
    assert stats.total_ms > 0 and stats.mean_ms == pytest.approx(stats.total_ms / stats.calls, rel=1e-3)
    assert stats.total_ms == max(s.total_ms for s in inspection.statements)


async def test_inspection_on_sqlite_reads_statements_from_the_spans(settings: Settings, shop: Shop) -> None:
    run = await baseline_run(settings)
    target = load_target(SHOP_TARGET)
    inspection = inspect_run(settings, target, run.run_id)

    assert inspection.dialect == "sqlite"
    tables = {t.name: t for t in inspection.tables}
    assert tables["orders"].rows == SHOP_ORDERS and not tables["orders"].rows_estimated
    assert tables["orders"].bytes is not None and tables["orders"].bytes > 10_000_000  # dbstat: ~40 MB of rows
    # The customer-history index is there; nothing indexes customer_email (the planted bottleneck).
    [history] = tables["orders"].indexes
    assert (history.name, history.columns, history.unique) == (
        "ix_orders_customer",
        ["customer_id", "created_at"],
        False,
    )
    assert {s.source for s in inspection.statements} == {"spans"}
    assert_orders_dominate(inspection, "sqlite", "SCAN orders", orders_requests(settings, run))
    # Stored beside the run, whole.
    stored = DatabaseInspection.model_validate(json.loads(settings.inspection_file(run.run_id).read_text()))
    assert stored == inspection


async def test_inspection_on_postgres_reads_pg_stat_statements(settings: Settings, pg_shop: Shop) -> None:
    run = await baseline_run(settings)
    assert settings.statements_file(run.run_id).exists(), run.notes
    target = load_target(SHOP_TARGET)
    summary = inspect_run_summary(settings, target, run.run_id)
    inspection = DatabaseInspection.model_validate(json.loads(settings.inspection_file(run.run_id).read_text()))

    assert inspection.dialect == "postgresql"
    tables = {t.name: t for t in inspection.tables}
    assert tables["orders"].rows == SHOP_ORDERS
    assert tables["orders"].bytes is not None and tables["orders"].bytes > 10_000_000
    indexes = {(i.name, tuple(i.columns), i.unique) for i in tables["orders"].indexes}
    assert indexes == {("orders_pkey", ("id",), True), ("ix_orders_customer", ("customer_id", "created_at"), False)}
    assert {s.source for s in inspection.statements} == {"pg_stat_statements"}
    assert_orders_dominate(inspection, "postgresql", "Seq Scan on orders", orders_requests(settings, run))
    [orders_stats] = [s for s in inspection.statements if s.statement == inspection.plans[0].statement]
    assert orders_stats.rows is not None and orders_stats.rows > 0  # pg_stat_statements counts rows too

    # The summary (what the assessment returns to the workflow) names the same.
    assert summary.file == str(settings.inspection_file(run.run_id))
    assert (summary.largest_table, summary.largest_table_rows) == ("orders", SHOP_ORDERS)
    assert summary.statement_source == "pg_stat_statements"
    assert summary.dominant[0].statement == inspection.plans[0].statement
    assert summary.dominant[0].full_scans == ["orders"]
