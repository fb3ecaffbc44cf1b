"""What a target's database says about itself: tables with their sizes and indexes, and statement plans."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from ratchet.analysis.plans import FullScan, full_scans_postgresql, full_scans_sqlite
from ratchet.database.models import Dialect, IndexInfo, TableInfo
from ratchet.database.statements import Normalized

# Counting rows is exact but reads the whole table: above this many (estimated) rows PostgreSQL's own
# estimate is reported instead, so an inspection never scans a huge table.
_EXACT_COUNT_MAX_ROWS = 10_000_000

_PG_TABLES = """
SELECT c.relname, c.reltuples::bigint, pg_total_relation_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname = ANY (current_schemas(false))
ORDER BY c.relname
"""
_PG_INDEXES = """
SELECT t.relname, i.relname, x.indisunique, pg_get_indexdef(x.indexrelid),
       ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, position)
             JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.position)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = ANY (current_schemas(false))
ORDER BY t.relname, i.relname
"""


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_tables(connection: Connection) -> list[TableInfo]:
    names = [
        str(row[0])
        for row in connection.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    sizes: dict[str, int] = {}
    try:
        # dbstat (when SQLite is built with it) tells the bytes of every table and index.
        for name, size in connection.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
            sizes[str(name)] = int(size)
    except Exception:  # no dbstat in this SQLite build: sizes stay unknown per table
        sizes = {}
    tables = []
    for name in names:
        rows = int(connection.exec_driver_sql(f"SELECT count(*) FROM {_quote(name)}").scalar() or 0)
        indexes = []
        for _, index_name, unique, *_ in connection.exec_driver_sql(f"PRAGMA index_list({_quote(name)})"):
            columns = [
                str(info[2])
                for info in connection.exec_driver_sql(f"PRAGMA index_info({_quote(str(index_name))})")
                if info[2] is not None
            ]
            definition = connection.exec_driver_sql(
                "SELECT coalesce(sql, '') FROM sqlite_master WHERE type = 'index' AND name = ?", (str(index_name),)
            ).scalar()
            indexes.append(
                IndexInfo(name=str(index_name), columns=columns, unique=bool(unique), definition=definition or "")
            )
        size = None
        if sizes:
            size = sizes.get(name, 0) + sum(sizes.get(index.name, 0) for index in indexes)
        tables.append(TableInfo(name=name, rows=rows, bytes=size, indexes=indexes))
    return tables


def _postgres_tables(connection: Connection) -> list[TableInfo]:
    indexes: dict[str, list[IndexInfo]] = {}
    for table, name, unique, definition, columns in connection.execute(text(_PG_INDEXES)):
        indexes.setdefault(str(table), []).append(
            IndexInfo(
                name=str(name), columns=[str(c) for c in columns], unique=bool(unique), definition=str(definition)
            )
        )
    tables = []
    for name, estimate, size in connection.execute(text(_PG_TABLES)).fetchall():
        estimated = int(estimate) >= 0 and int(estimate) > _EXACT_COUNT_MAX_ROWS
        if estimated:
            rows = int(estimate)
        else:  # never analyzed (-1) or small enough to count
            rows = int(connection.execute(text(f"SELECT count(*) FROM {_quote(str(name))}")).scalar() or 0)
        tables.append(
            TableInfo(
                name=str(name), rows=rows, rows_estimated=estimated, bytes=int(size), indexes=indexes.get(str(name), [])
            )
        )
    return tables


def read_tables(connection: Connection, dialect: Dialect) -> list[TableInfo]:
    """Every user table with its row count, its size in bytes where the database tells, and its indexes."""
    return _sqlite_tables(connection) if dialect == "sqlite" else _postgres_tables(connection)


def explain(connection: Connection, dialect: Dialect, statement: Normalized) -> tuple[list[str], list[FullScan]]:
    """The plan of a normalized statement, for any value of its parameters, and the full scans in it.

    SQLite: EXPLAIN QUERY PLAN with NULL parameters (its plan does not depend on the values). PostgreSQL: the
    generic plan (``plan_cache_mode = force_generic_plan``) of the prepared statement, the plan meant for
    every value, which is what a statement run with many different values gets.
    """
    nulls: tuple[Any, ...] = (None,) * statement.parameters
    if dialect == "sqlite":
        rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement.text, nulls).fetchall()
        plan = [str(row[-1]) for row in rows]
        return plan, full_scans_sqlite(plan)
    connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    connection.exec_driver_sql("PREPARE ratchet_inspected AS " + statement.text.replace("%", "%%"))
    try:
        arguments = ", ".join(["NULL"] * statement.parameters)
        execute = "EXPLAIN EXECUTE ratchet_inspected" + (f"({arguments})" if arguments else "")
        plan = [str(row[0]) for row in connection.exec_driver_sql(execute)]
    finally:
        connection.exec_driver_sql("DEALLOCATE ratchet_inspected")
        connection.exec_driver_sql("RESET plan_cache_mode")
    return plan, full_scans_postgresql(plan)
