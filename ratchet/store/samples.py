"""Raw k6 samples in Parquet, read and summarised with DuckDB (never loaded whole into Python objects).

k6's ``--out json`` writes one JSON line per metric sample. Only ``http_req_duration`` points are kept:
each is one request, tagged with the endpoint, its status and its timestamp.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from ratchet.contracts import EndpointStats

_K6_COLUMNS = "{'type': 'VARCHAR', 'metric': 'VARCHAR', 'data': 'STRUCT(\"time\" VARCHAR, \"value\" DOUBLE, tags MAP(VARCHAR, VARCHAR))'}"


def _literal(path: Path) -> str:
    """A path as a SQL string literal (COPY and views cannot take prepared parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


def ingest_k6_json(ndjson: Path, parquet: Path, *, warmup_s: float) -> int:
    """Convert a k6 NDJSON output file to Parquet, dropping the warm-up; return the number of requests kept."""
    parquet.parent.mkdir(parents=True, exist_ok=True)
    tmp = parquet.with_suffix(".tmp.parquet")
    with duckdb.connect() as con:
        if not ndjson.exists() or ndjson.stat().st_size == 0:
            con.execute(
                "COPY (SELECT NULL::VARCHAR AS endpoint, NULL::TIMESTAMPTZ AS ts, NULL::DOUBLE AS duration_ms, "
                f"NULL::INTEGER AS status WHERE false) TO {_literal(tmp)} (FORMAT parquet)"
            )
        else:
            con.execute(
                f"""
                CREATE TEMP VIEW points AS
                SELECT data.tags['endpoint'] AS endpoint,
                       CAST(data.time AS TIMESTAMPTZ) AS ts,
                       data.value AS duration_ms,
                       TRY_CAST(data.tags['status'] AS INTEGER) AS status
                FROM read_json({_literal(ndjson)}, format = 'newline_delimited', columns = {_K6_COLUMNS}, ignore_errors = true)
                WHERE type = 'Point' AND metric = 'http_req_duration'
                """
            )
            con.execute(
                f"""
                COPY (
                  SELECT endpoint, ts, duration_ms, coalesce(status, 0) AS status FROM points
                  WHERE endpoint IS NOT NULL
                    AND ts >= (SELECT min(ts) FROM points) + INTERVAL {float(warmup_s)} SECOND
                  ORDER BY ts
                ) TO {_literal(tmp)} (FORMAT parquet)
                """
            )
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp)]).fetchone()
    tmp.replace(parquet)
    return int(count[0]) if count else 0


def endpoint_stats(parquet: Path) -> list[EndpointStats]:
    """Exact p50/p95/p99 per endpoint (linear interpolation, as numpy's default), errors = status 0 or >= 400.

    Status 0 is k6's "no answer" (refused, reset, timed out), also counted apart as ``unanswered``.
    """
    with duckdb.connect() as con:
        rows = con.execute(
            """
            SELECT endpoint, count(*) AS n,
                   count(*) FILTER (WHERE status = 0 OR status >= 400) AS errors,
                   count(*) FILTER (WHERE status = 0) AS unanswered,
                   quantile_cont(duration_ms, 0.50), quantile_cont(duration_ms, 0.95),
                   quantile_cont(duration_ms, 0.99), avg(duration_ms)
            FROM read_parquet(?) GROUP BY endpoint ORDER BY endpoint
            """,
            [str(parquet)],
        ).fetchall()
    return [
        EndpointStats(
            endpoint=endpoint,
            requests=n,
            errors=errors,
            error_rate=errors / n if n else 0.0,
            unanswered=unanswered,
            p50=round(p50, 3),
            p95=round(p95, 3),
            p99=round(p99, 3),
            mean=round(mean, 3),
        )
        for endpoint, n, errors, unanswered, p50, p95, p99, mean in rows
    ]


def endpoint_durations(parquet: Path, endpoint: str) -> np.ndarray:
    """The latencies (ms) of one endpoint's requests in one run, as a numpy array for the statistics."""
    with duckdb.connect() as con:
        result = con.execute(
            "SELECT duration_ms FROM read_parquet(?) WHERE endpoint = ?", [str(parquet), endpoint]
        ).fetchnumpy()
    return np.asarray(result["duration_ms"], dtype=float)
