"""Connections to the target's own database (SQLite or PostgreSQL) for plans and SQL levers."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.pool import NullPool


def sqlalchemy_url(url: str) -> str:
    """The SQLAlchemy spelling of a target database URL (psycopg 3 for PostgreSQL)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


@lru_cache(maxsize=16)
def target_engine(url: str) -> Engine:
    """An autocommit engine: DDL takes effect at once and no transaction is left open on the target."""
    # NullPool: never hold a connection (and its locks) on the target between calls.
    return create_engine(sqlalchemy_url(url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
