"""Pure parts of the database inspection and of the shop's placeholders, on plain data."""

from __future__ import annotations

from examples.shop.app import ORDERS_BY_EMAIL
from examples.shop.db import to_psycopg
from ratchet.database.statements import (
    PgStatementRow,
    RawStatement,
    group_statements,
    normalize_statement,
    pg_statement_delta,
)

PG_ORDERS = (
    "SELECT id, product_id, quantity, total_cents, status, created_at FROM orders "
    "WHERE customer_email = $1 ORDER BY created_at DESC LIMIT $2"
)


def test_question_marks_become_psycopg_placeholders_outside_strings_and_comments() -> None:
    sql = "SELECT '?', \"a?\" FROM t WHERE a = ? AND b LIKE 'x%' -- why?\nAND c % 2 = ? /* ? */"
    assert to_psycopg(sql) == (
        "SELECT '?', \"a?\" FROM t WHERE a = %s AND b LIKE 'x%%' -- why?\nAND c %% 2 = %s /* ? */"
    )
    assert to_psycopg("EXPLAIN " + ORDERS_BY_EMAIL).count("%s") == 1


def test_the_same_statement_normalizes_alike_from_spans_and_from_pg_stat_statements() -> None:
    from_sqlite_spans = normalize_statement(ORDERS_BY_EMAIL, "sqlite")
    assert from_sqlite_spans.text.endswith("WHERE customer_email = ? ORDER BY created_at DESC LIMIT ?")
    from_pg_spans = normalize_statement(to_psycopg(ORDERS_BY_EMAIL), "postgresql")
    from_pg_stat_statements = normalize_statement(PG_ORDERS, "postgresql")
    assert from_pg_spans == from_pg_stat_statements
    assert from_pg_spans.text == PG_ORDERS and from_pg_spans.parameters == 2 and from_pg_spans.explainable
    assert not normalize_statement("SET work_mem = '64MB'", "postgresql").explainable
    assert normalize_statement("not sql at all (((", "sqlite").text == "not sql at all ((("


def test_statements_group_by_normalized_text_most_time_first_without_the_catalog() -> None:
    raw = [
        RawStatement("SELECT * FROM products WHERE id = 7", 3, 3.0),
        RawStatement("SELECT * FROM products WHERE id = 9", 1, 1.0),
        RawStatement(ORDERS_BY_EMAIL, 2, 200.0),
        # The ORM asking about the schema: the database's own business, never ranked for a plan or a finding.
        RawStatement("SELECT name FROM sqlite_master WHERE type = 'table'", 50, 500.0),
    ]
    stats = group_statements(raw, "sqlite", "spans")
    assert [(s.statement, s.calls, s.total_ms, s.mean_ms) for s in stats] == [
        (normalize_statement(ORDERS_BY_EMAIL, "sqlite").text, 2, 200.0, 100.0),
        ("SELECT * FROM products WHERE id = ?", 4, 4.0, 1.0),
    ]


def test_pg_stat_statements_delta_counts_new_grown_and_reset_entries() -> None:
    before = [PgStatementRow(10, 1, "a", 5, 50.0, 5), PgStatementRow(10, 2, "b", 9, 90.0, 9)]
    after = [
        PgStatementRow(10, 1, "a", 7, 80.0, 8),  # grew by 2 calls
        PgStatementRow(10, 2, "b", 1, 4.0, 1),  # reset in between: all of it counts
        PgStatementRow(10, 3, "c", 2, 2.0, 2),  # new
        PgStatementRow(11, 1, "a", 0, 0.0, 0),  # another user's entry that did not run
    ]
    assert pg_statement_delta(before, after) == [
        RawStatement("a", 2, 30.0, 3),
        RawStatement("b", 1, 4.0, 1),
        RawStatement("c", 2, 2.0, 2),
    ]
