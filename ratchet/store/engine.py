"""Opening the store: one engine per URL, tables created on first use."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import Engine, event
from sqlmodel import Session, SQLModel, create_engine

from ratchet.store import tables  # noqa: F401  (registers the tables on SQLModel.metadata)


@lru_cache(maxsize=8)
def get_engine(url: str) -> Engine:
    """An engine for the store at ``url`` with its tables created."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            # WAL lets the CLI read while a worker writes.
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

    else:
        engine = create_engine(url, pool_pre_ping=True)
    SQLModel.metadata.create_all(engine)
    return engine


def session_for(url: str) -> Session:
    """A session on the store at ``url`` (use as a context manager)."""
    return Session(get_engine(url))
