"""Statement statistics of a run: from pg_stat_statements (a snapshot before the load and one after) on
PostgreSQL, and from the run's stored spans (each database span carries its statement) everywhere."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import duckdb
from sqlalchemy import text

from ratchet.config.target import Target
from ratchet.database.statements import PgStatementRow, RawStatement, pg_statement_delta
from ratchet.database.target import target_engine
from ratchet.files import write_atomically

# Counters of this database only; Ratchet's own reads of the view are left out.
_PG_SNAPSHOT = """
SELECT userid::bigint, queryid, query, calls, total_exec_time, rows
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND queryid IS NOT NULL
  AND query NOT LIKE '%pg_stat_statements%'
"""


class StatementStatsUnavailable(RuntimeError):
    """pg_stat_statements cannot be read on this database (the message says why and what to do)."""


def pg_snapshot(database_url: str) -> list[PgStatementRow]:
    """The cumulative counters of pg_stat_statements for the target's database."""
    try:
        with target_engine(database_url).connect() as connection:
            rows = connection.execute(text(_PG_SNAPSHOT)).fetchall()
    except Exception as exc:
        reason = str(exc).splitlines()[0]
        raise StatementStatsUnavailable(
            f"pg_stat_statements not readable ({reason}): add pg_stat_statements to shared_preload_libraries "
            "and run CREATE EXTENSION pg_stat_statements in the target's database"
        ) from None
    return [PgStatementRow(int(u), int(q), str(t), int(c), float(ms), int(r)) for u, q, t, c, ms, r in rows]


class StatementRecorder:
    """Counts what the target's PostgreSQL database ran during a load test: a snapshot at ``start`` and the
    difference at ``finish``, stored as JSON. Nothing is reset, so other users of the view lose nothing."""

    def __init__(self, target: Target) -> None:
        database = target.database
        self.url = database.url if database is not None and database.dialect == "postgresql" else None
        self.before: list[PgStatementRow] | None = None
        self.note = ""

    def start(self) -> None:
        """Take the snapshot before the load (a failure is kept as a note: the run goes on without it)."""
        if self.url is None:
            return
        try:
            self.before = pg_snapshot(self.url)
        except StatementStatsUnavailable as exc:
            self.note = str(exc)

    def finish(self, out_file: Path) -> str:
        """Store what ran since ``start`` in ``out_file``; returns a note when it could not."""
        if self.url is None or self.before is None:
            return self.note
        try:
            delta = pg_statement_delta(self.before, pg_snapshot(self.url))
        except StatementStatsUnavailable as exc:
            return str(exc)
        out_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(out_file, json.dumps([asdict(item) for item in delta]))
        return ""


def recorded_statements(path: Path) -> list[RawStatement]:
    """The statements a :class:`StatementRecorder` stored for a run."""
    return [RawStatement(**item) for item in json.loads(path.read_text())]


def span_statements(spans_file: Path) -> list[RawStatement]:
    """Statements of a run's database spans: per distinct text, how often it ran and its total duration."""
    with duckdb.connect() as connection:
        rows = connection.execute(
            "SELECT statement, count(*), sum(duration_ms) FROM read_parquet(?) "
            "WHERE statement IS NOT NULL AND statement <> '' GROUP BY statement",
            [str(spans_file)],
        ).fetchall()
    return [RawStatement(str(sql), int(calls), float(total)) for sql, calls, total in rows]
