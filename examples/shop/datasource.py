"""The shape of database access the shop's modules are given: ``query(sql, *params)`` with ``?`` placeholders.

The modules never open connections themselves, so the same code runs on SQLite and PostgreSQL: they take
callables of this shape and write portable SQL (no dialect functions, ``?`` for every parameter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Query(Protocol):
    """Runs one statement and returns its rows (each row readable by column name: ``row["id"]``)."""

    def __call__(self, sql: str, *params: Any) -> Sequence[Any]: ...


def placeholders(count: int) -> str:
    """``?, ?, ?`` for an ``IN (...)`` list of ``count`` values (at least one)."""
    return ", ".join("?" * max(1, count))
