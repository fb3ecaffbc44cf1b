"""Raw k6 samples in Parquet, read and summarised with DuckDB (never loaded whole into Python objects).

k6's ``--out json`` is streamed into Parquet parts while a test runs (``sample_stream``); here the parts of a
run become its samples file: one row per request (``http_req_duration``), tagged with the endpoint, its
status, its scenario, the generator that sent it and its timestamp.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from ratchet.contracts import EndpointStats
from ratchet.store.sample_stream import sql_literal as _literal


def finalize_run_samples(parts_dir: Path, parquet: Path, *, warmup_s: float) -> int:
    """Merge a run's Parquet parts (all its load generators) into the run's samples file; return its requests.

    Requests in the first ``warmup_s`` seconds after the first sample are left out. Dropped iterations go to
    ``dropped_file(parquet)``. The parts are removed once both files are in place.
    """
    parquet.parent.mkdir(parents=True, exist_ok=True)
    parts = sorted(parts_dir.glob("*.parquet")) if parts_dir.is_dir() else []
    tmp, dropped_tmp = parquet.with_suffix(".tmp.parquet"), dropped_file(parquet).with_suffix(".tmp.parquet")
    with duckdb.connect() as con:
        if parts:
            con.execute(f"CREATE TEMP VIEW points AS SELECT * FROM read_parquet({_list_literal(parts)})")
        else:
            con.execute(
                "CREATE TEMP VIEW points AS SELECT NULL::VARCHAR AS metric, NULL::VARCHAR AS endpoint, "
                "NULL::VARCHAR AS scenario, NULL::TIMESTAMPTZ AS ts, NULL::DOUBLE AS value, "
                "NULL::INTEGER AS status, NULL::INTEGER AS generator WHERE false"
            )
        con.execute(
            f"""
            COPY (
              SELECT endpoint, ts, value AS duration_ms, status, scenario, generator FROM points
              WHERE metric = 'http_req_duration' AND endpoint IS NOT NULL
                AND ts >= (SELECT min(ts) FROM points) + INTERVAL {float(warmup_s)} SECOND
              ORDER BY ts
            ) TO {_literal(tmp)} (FORMAT parquet)
            """
        )
        con.execute(
            f"COPY (SELECT scenario, ts, value AS dropped, generator FROM points "
            f"WHERE metric = 'dropped_iterations' ORDER BY ts) TO {_literal(dropped_tmp)} (FORMAT parquet)"
        )
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp)]).fetchone()
    tmp.replace(parquet)
    dropped_tmp.replace(dropped_file(parquet))
    for part in parts:
        part.unlink(missing_ok=True)
    return int(count[0]) if count else 0


def dropped_file(parquet: Path) -> Path:
    """Where a run keeps k6's dropped iterations (the generator ran out of VUs), beside its samples."""
    return parquet.with_name(parquet.name.removesuffix(".parquet") + ".dropped.parquet")


def _list_literal(paths: list[Path]) -> str:
    return "[" + ", ".join(_literal(p) for p in paths) + "]"


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
