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


_CATALOGS = ("sqlite_", "pg_")


def _parsed(sql: str, dialect: str) -> list[exp.Expr] | None:
    try:
        return [t for t in sqlglot.parse(sql, read="postgres" if dialect == "postgresql" else dialect) if t]
    except sqlglot.errors.ParseError:
        return None


def tables_created(sql: str, *, dialect: str = "sqlite") -> set[str]:
    """The tables and views the statements create."""
    created: set[str] = set()
    for tree in _parsed(sql, dialect) or []:
        for node in tree.find_all(exp.Create):
            if str(node.args.get("kind", "")).upper() in ("TABLE", "VIEW"):
                table = node.this if isinstance(node.this, exp.Table) else node.this.find(exp.Table)
                if table is not None:
                    created.add(table.name)
    return created


def tables_read(sql: str, *, dialect: str = "sqlite", created: set[str] | None = None) -> set[str] | None:
    """The tables a statement uses that must already be there: not its common table expressions, not tables it
    (or ``created``'s statements) creates, not the database's own catalogs. None when it cannot be parsed."""
    trees = _parsed(sql, dialect)
    if trees is None:
        return None
    made = tables_created(sql, dialect=dialect) | (created or set())
    used: set[str] = set()
    for tree in trees:
        if isinstance(tree, exp.Drop):
            continue  # what it drops may be gone already (IF EXISTS); nothing is read
        ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        for table in tree.find_all(exp.Table):
            name = table.name
            if not name or name in ctes or name in made or name.lower().startswith(_CATALOGS):
                continue
            if table.db.lower() not in ("information_schema", "pg_catalog"):
                used.add(name)
    return used


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
