"""Whether a target's database can be opened, asked before a campaign starts: read-only, so that a misspelt
SQLite path is an error, never a new empty file."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def masked(url: str) -> str:
    """The URL without its password."""
    return _PASSWORD.sub(r"\1***@", url)


def database_problem(url: str) -> str | None:
    """Why the database at ``url`` cannot be opened (read-only), or None."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            return f"no SQLite file at {path} (Ratchet never creates one: is the path right?)"
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            return f"{path} cannot be read as a SQLite database: {exc}"
        return None
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"cannot connect to {masked(url)}: " + masked(str(exc).strip().splitlines()[0] if str(exc) else "")
    return None
