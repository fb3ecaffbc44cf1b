"""Statements of a run: normalized so that the same statement groups whatever its constants, counted from
spans or from pg_stat_statements, and ranked by the time they took."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import sqlglot
from sqlglot import exp

from ratchet.database.models import Dialect, StatementStats

_SQLGLOT_DIALECT = {"sqlite": "sqlite", "postgresql": "postgres"}
# Statements EXPLAIN accepts; utility statements (SET, BEGIN, SHOW, ...) have no plan.
_EXPLAINABLE = (exp.Query, exp.Insert, exp.Update, exp.Delete)


@dataclass(frozen=True)
class Normalized:
    """A statement with every constant and parameter replaced by the dialect's positional placeholder."""

    text: str
    parameters: int
    explainable: bool


def _driver_placeholders(sql: str, dialect: Dialect) -> str:
    """psycopg's ``%s`` (what a PostgreSQL client's spans record) back into SQL's ``?`` before parsing."""
    if dialect == "postgresql" and "%s" in sql:
        return sql.replace("%s", "?").replace("%%", "%")
    return sql


# The database's own catalog: what drivers, ORMs and migrations ask about the schema (SQLAlchemy's reflection,
# Django's introspection). The service's work is elsewhere; these never make findings of their own.
_CATALOG = re.compile(
    r"^\s*pragma\b"
    r"|\b(?:pg_catalog|information_schema)\s*\."
    r"|\b(?:from|join)\s+(?:sqlite_(?:master|schema|temp_master|temp_schema|sequence|stat\d)|pg_[a-z_]+)\b",
    re.IGNORECASE,
)


def reads_the_catalog(sql: str) -> bool:
    """True for a statement about the database itself (sqlite_master, pg_catalog, information_schema, PRAGMA),
    not about the service's data."""
    return _CATALOG.search(sql) is not None


@lru_cache(maxsize=4096)
def normalize_statement(sql: str, dialect: Dialect) -> Normalized:
    """The statement's normalized form: ``?`` placeholders on SQLite, ``$1, $2, ...`` on PostgreSQL (as
    pg_stat_statements writes them), so spans and pg_stat_statements group the same way.

    A statement sqlglot cannot parse is kept as it is, with its whitespace collapsed.
    """
    read = _SQLGLOT_DIALECT[dialect]
    try:
        tree = sqlglot.parse_one(_driver_placeholders(sql, dialect), read=read)
    except sqlglot.errors.SqlglotError:
        return Normalized(" ".join(sql.split()), 0, False)
    if tree is None:
        return Normalized(" ".join(sql.split()), 0, False)

    def constant_to_placeholder(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Parameter | exp.Placeholder):
            return exp.Placeholder()
        if isinstance(node, exp.Literal) and not isinstance(node.parent, exp.Parameter):
            return exp.Placeholder()
        return node

    tree = tree.transform(constant_to_placeholder)
    text = tree.sql(dialect=read)
    count = sum(1 for node in tree.walk() if isinstance(node, exp.Placeholder))
    if dialect == "postgresql":
        # sqlglot writes PostgreSQL placeholders as %s; number them in the order they are written. No literal
        # is left in the text (they all became placeholders), so every %s is one.
        pieces = text.split("%s")
        text = pieces[0] + "".join(f"${number}{piece}" for number, piece in enumerate(pieces[1:], start=1))
    return Normalized(text, count, isinstance(tree, _EXPLAINABLE))


@dataclass(frozen=True)
class RawStatement:
    """One statement text as a source reports it: how often it ran and for how long in total."""

    text: str
    calls: int
    total_ms: float
    rows: int | None = None


def group_statements(
    raw: Iterable[RawStatement], dialect: Dialect, source: Literal["pg_stat_statements", "spans"]
) -> list[StatementStats]:
    """Merge texts that normalize alike; most total time first."""
    merged: dict[str, list[RawStatement]] = {}
    for item in raw:
        if item.calls <= 0 or reads_the_catalog(item.text):
            continue
        merged.setdefault(normalize_statement(item.text, dialect).text, []).append(item)
    stats = []
    for text, items in merged.items():
        calls = sum(i.calls for i in items)
        total = sum(i.total_ms for i in items)
        rows = [i.rows for i in items]
        stats.append(
            StatementStats(
                statement=text,
                example=max(items, key=lambda i: i.total_ms).text,
                calls=calls,
                total_ms=round(total, 3),
                mean_ms=round(total / calls, 3),
                rows=None if any(r is None for r in rows) else sum(r for r in rows if r is not None),
                source=source,
            )
        )
    return sorted(stats, key=lambda s: s.total_ms, reverse=True)


@dataclass(frozen=True)
class PgStatementRow:
    """One row of pg_stat_statements (its key and cumulative counters)."""

    userid: int
    queryid: int
    query: str
    calls: int
    total_ms: float
    rows: int


def pg_statement_delta(before: list[PgStatementRow], after: list[PgStatementRow]) -> list[RawStatement]:
    """What ran between two snapshots of pg_stat_statements (counters are cumulative).

    An entry missing from ``before`` is new; one whose counters went down was reset or evicted in between,
    so all of ``after`` counts.
    """
    earlier = {(row.userid, row.queryid): row for row in before}
    delta = []
    for row in after:
        old = earlier.get((row.userid, row.queryid))
        if old is not None and old.calls <= row.calls:
            calls, total, rows = row.calls - old.calls, row.total_ms - old.total_ms, row.rows - old.rows
        else:
            calls, total, rows = row.calls, row.total_ms, row.rows
        if calls > 0:
            delta.append(RawStatement(row.query, calls, total, rows))
    return delta


def dominant_statements(stats: list[StatementStats], dialect: Dialect, top: int) -> list[StatementStats]:
    """The ``top`` explainable statements that took the most time in total."""
    chosen = [s for s in stats if normalize_statement(s.statement, dialect).explainable]
    return sorted(chosen, key=lambda s: s.total_ms, reverse=True)[:top]
