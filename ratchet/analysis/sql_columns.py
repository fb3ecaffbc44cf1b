"""Which columns of a table a statement filters on (the columns an index should cover)."""

from __future__ import annotations

import sqlglot
from sqlglot import exp

_FILTERING = (exp.EQ, exp.In, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.Like)


def table_aliases(sql: str, *, dialect: str = "sqlite") -> dict[str, str]:
    """Alias → table name for every aliased table in the statement (``FROM products p`` gives ``{"p": "products"}``).

    SQLite's plans name a table by its alias (``SCAN p``); this maps such a name back to the table. Empty when
    the statement cannot be parsed.
    """
    try:
        tree = sqlglot.parse_one(sql, read="postgres" if dialect == "postgresql" else dialect)
    except sqlglot.errors.ParseError:
        return {}
    return {node.alias: node.name for node in tree.find_all(exp.Table) if node.alias}


def filtered_columns(sql: str, table: str, *, dialect: str = "sqlite") -> list[str]:
    """Columns of ``table`` compared in the WHERE clause, equality first (the order an index wants).

    Returns an empty list when the statement cannot be parsed or does not filter that table.
    """
    try:
        tree = sqlglot.parse_one(sql, read="postgres" if dialect == "postgresql" else dialect)
    except sqlglot.errors.ParseError:
        return []
    aliases = {table}
    for table_node in tree.find_all(exp.Table):
        if table_node.name == table and table_node.alias:
            aliases.add(table_node.alias)
    where = tree.find(exp.Where)
    if where is None:
        return []
    equality: list[str] = []
    ranges: list[str] = []
    for condition in where.find_all(*_FILTERING):
        for column in condition.find_all(exp.Column):
            if column.table and column.table not in aliases:
                continue
            bucket = equality if isinstance(condition, exp.EQ | exp.In) else ranges
            if column.name not in equality and column.name not in ranges:
                bucket.append(column.name)
    return equality + ranges
