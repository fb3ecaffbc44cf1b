"""The database's time as the target's own spans saw it: every statement span (a span naming a database system)
of a run's steady state, as a p95 and per statement, for the playbook's database target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np


@dataclass(frozen=True)
class StatementTimes:
    """The p95 of every statement span of a run, how many there were, and the slowest statements by p95."""

    p95_ms: float
    spans: int
    slowest: list[tuple[str, int, float]]  # (statement, calls, p95 ms), slowest first


_STATEMENT_SPANS = (
    "WITH s AS (SELECT coalesce(nullif(statement, ''), name) AS statement, duration_ms FROM read_parquet(?) "
    "WHERE NOT warmup AND db_system IS NOT NULL AND db_system <> '') "
)


def statement_durations(spans_file: Path) -> np.ndarray:
    """Every statement span's duration (ms) in a run's steady state; empty without spans."""
    if not spans_file.is_file():
        return np.empty(0)
    with duckdb.connect() as con:
        rows = con.execute(_STATEMENT_SPANS + "SELECT duration_ms FROM s", [str(spans_file)]).fetchnumpy()
    return np.asarray(rows["duration_ms"], dtype=float)


def statement_times(spans_file: Path, top: int = 3) -> StatementTimes | None:
    """None when the run has no spans file or no statement span in its steady state."""
    if not spans_file.is_file():
        return None
    statements = _STATEMENT_SPANS
    with duckdb.connect() as con:
        p95, count = con.execute(
            statements + "SELECT quantile_cont(duration_ms, 0.95), count(*) FROM s", [str(spans_file)]
        ).fetchone() or (None, 0)
        if not count:
            return None
        slowest = con.execute(
            statements + "SELECT statement, count(*), quantile_cont(duration_ms, 0.95) AS p95 FROM s "
            "GROUP BY statement ORDER BY p95 DESC LIMIT ?",
            [str(spans_file), top],
        ).fetchall()
    return StatementTimes(float(p95), int(count), [(str(s), int(n), float(p)) for s, n, p in slowest])
