"""The shop's database access: one ``query(sql, *params)`` with ``?`` placeholders, on SQLite or PostgreSQL.

Every endpoint module calls :func:`query`; :func:`use` (called by ``create_app``) says which database it
reaches. The time each call spends is added to the current request's total, which the Server-Timing
middleware reports.

SQLite: the stdlib driver, one connection per worker thread (a sqlite3 connection belongs to the thread that
opened it). PostgreSQL: psycopg 3, also one connection per worker thread (FastAPI's threadpool bounds how
many), in autocommit so that no idle transaction holds a lock an optimiser's ``CREATE INDEX`` would wait on.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import psycopg

POSTGRES_SCHEMES = ("postgresql://", "postgres://")

# Seconds of database time spent by the current request. The middleware puts a fresh one-item list here;
# handlers run in the threadpool with a *copy* of the context, so they mutate the shared list rather than
# setting the variable (a set() in the worker thread would not be visible to the middleware).
db_seconds: ContextVar[list[float] | None] = ContextVar("shop_db_seconds", default=None)


def is_postgres_url(location: str | Path) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL; anything else names a SQLite file."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def sqlite_path(location: str | Path) -> Path:
    """The SQLite file of a path or a ``sqlite:///path`` URL."""
    text = str(location)
    return Path(text.removeprefix("sqlite:///")) if text.startswith("sqlite:///") else Path(text)


class Row(tuple[Any, ...]):
    """A PostgreSQL row that reads like ``sqlite3.Row``: by position, by column name, ``keys()``, ``dict(row)``."""

    _columns: tuple[str, ...]
    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], columns: tuple[str, ...], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._columns, row._index = columns, index
        return row

    def keys(self) -> list[str]:
        """Column names, in order (what ``dict(row)`` reads)."""
        return list(self._columns)

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return super().__getitem__(self._index[key])
        return super().__getitem__(key)


def _row_factory(cursor: psycopg.Cursor[Any]) -> Any:
    columns = tuple(column.name for column in cursor.description or ())
    index = {name: position for position, name in enumerate(columns)}
    return lambda values: Row(values, columns, index)


# What a ``?`` may hide in: quoted strings and identifiers, and comments. Everything else that is a ``?`` is a
# placeholder. (sqlglot's tokenizer would do, but it reads the rest of EXPLAIN, SET, ... as one opaque string.)
_SQL_PARTS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/|\?|%", re.DOTALL)


@lru_cache(maxsize=512)
def to_psycopg(sql: str) -> str:
    """``sql`` with ``?`` placeholders in psycopg's spelling: ``%s``, and every literal ``%`` doubled (psycopg
    reads ``%`` as the start of a placeholder anywhere in the text, inside strings too)."""

    def swap(match: re.Match[str]) -> str:
        part = match.group()
        return "%s" if part == "?" else part.replace("%", "%%")

    return _SQL_PARTS.sub(swap, sql)


class Database(Protocol):
    """What the shop needs from a database."""

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Rows of one statement (``?`` placeholders), each readable by position and by column name."""
        ...

    def write(self, sql: str, *params: Any) -> list[Any]:
        """Like ``query``, for a statement that changes data: committed when it returns, undone when it fails."""
        ...

    def close(self) -> None:
        """Close the connections this object opened."""
        ...


class SqliteDatabase:
    """The shop on a SQLite file (which must exist: nothing here creates one)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            # Fail at startup, not on the first request: sqlite3 would otherwise create an empty database.
            raise FileNotFoundError(f"no shop database at {path}; run `python -m examples.shop --seed-only`")
        # mode=rw: read-write but never create; the URI form percent-encodes odd characters in the path.
        self.uri = f"{path.resolve().as_uri()}?mode=rw"
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if conn is None:
            # check_same_thread=False only so close() can close them all from the shutting-down thread.
            conn = sqlite3.connect(self.uri, uri=True, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            # Wait out the optimiser's CREATE INDEX (a write lock) instead of failing "database is locked".
            conn.execute("PRAGMA busy_timeout=5000")
            self._local.connection = conn
            self._opened.append(conn)
        return conn

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Rows of ``sql`` as ``sqlite3.Row``."""
        return self._connection().cursor().execute(sql, params).fetchall()  # a cursor: what tracing wraps

    def write(self, sql: str, *params: Any) -> list[Any]:
        """Rows of a changing statement, committed (sqlite3 opened a transaction for it) or rolled back."""
        conn = self._connection()
        try:
            rows = conn.cursor().execute(sql, params).fetchall()
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return rows

    def close(self) -> None:
        """Close every thread's connection."""
        for conn in self._opened:
            conn.close()
        self._opened.clear()


class PostgresDatabase:
    """The shop on a PostgreSQL database given by a libpq URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._opened: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self.query("SELECT 1")  # fail at startup, with the URL in the message, when it cannot be reached

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "connection", None)
        if conn is None or conn.closed:
            try:
                conn = psycopg.connect(self.url, autocommit=True, row_factory=_row_factory)
            except psycopg.OperationalError as exc:
                raise ConnectionError(f"cannot connect to the shop database {self.url}: {exc}") from None
            self._local.connection = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def query(self, sql: str, *params: Any) -> list[Any]:
        """Rows of ``sql`` as :class:`Row`."""
        conn = self._connection()
        try:
            with conn.cursor() as cursor:
                cursor.execute(to_psycopg(sql), params)
                return cursor.fetchall() if cursor.description is not None else []
        except psycopg.OperationalError:
            conn.close()  # a broken connection (server restarted): the next call opens a new one
            raise

    def write(self, sql: str, *params: Any) -> list[Any]:
        """Rows of a changing statement: committed by itself (the connection is in autocommit)."""
        return self.query(sql, *params)

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


def open_database(location: str | Path) -> Database:
    """The database at a SQLite path / ``sqlite:///`` URL, or a ``postgresql://`` URL."""
    if is_postgres_url(location):
        return PostgresDatabase(str(location))
    return SqliteDatabase(sqlite_path(location))


_current: Database | None = None


def use(database: Database) -> None:
    """Make ``database`` the one :func:`query` reaches (the app does this once, at creation)."""
    global _current
    _current = database


def _in_use() -> Database:
    if _current is None:
        raise RuntimeError("no shop database in use: create the app (examples.shop.app.create_app) first")
    return _current


def query(sql: str, *params: Any) -> list[Any]:
    """Run one statement with ``?`` placeholders on the shop's database; rows read by position or by name.

    The time spent is added to the current request's database time (the Server-Timing header).
    """
    with _timed():
        return _in_use().query(sql, *params)


def write(sql: str, *params: Any) -> list[Any]:
    """Run one statement that changes data, committed when it returns (or undone when it fails)."""
    with _timed():
        return _in_use().write(sql, *params)


@contextmanager
def _timed() -> Iterator[None]:
    """Add the time spent inside to the current request's database time."""
    started = time.perf_counter()
    try:
        yield
    finally:
        spent = db_seconds.get()
        if spent is not None:  # None only when called outside a request (no middleware around it)
            spent[0] += time.perf_counter() - started
