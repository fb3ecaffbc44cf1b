"""Whether a target's database can be opened and holds the tables the target's statements use, asked before a
campaign starts: read-only, so that a misspelt SQLite path is an error, never a new empty file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def masked(url: str) -> str:
    """The URL without its password."""
    return _PASSWORD.sub(r"\1***@", url)


def holds_password(text: str) -> bool:
    """Whether ``text`` holds a URL with a password (``scheme://user:password@``)."""
    return _PASSWORD.search(text) is not None


def database_tables(url: str) -> set[str] | str:
    """The tables and views of the database at ``url`` (lower case), read read-only; or why it cannot be read."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return f"no SQLite file at {path} (Ratchet never creates one: is the path right?)"
        # Read-only still makes a WAL database's -wal and -shm files when none are there (nobody has it open):
        # then the file is all there is, and reading it as immutable makes nothing.
        immutable = "&immutable=1" if not Path(f"{path}-wal").exists() else ""
        try:
            with sqlite3.connect(f"file:{path}?mode=ro{immutable}", uri=True) as connection:
                rows = connection.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')").fetchall()
        except sqlite3.Error as exc:
            return f"{path} cannot be read as a SQLite database: {exc}"
        return {str(name).lower() for (name,) in rows}
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            rows = connection.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            ).fetchall()
    except psycopg.Error as exc:
        return f"cannot connect to {masked(url)}: " + masked(str(exc).strip().splitlines()[0] if str(exc) else "")
    return {str(name).lower() for (name,) in rows}
