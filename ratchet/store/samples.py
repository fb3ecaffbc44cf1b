"""Raw k6 samples in Parquet, read and summarised with DuckDB (never loaded whole into Python objects).

k6's ``--out json`` is streamed into Parquet parts while a test runs (``sample_stream``); here the parts of a
run become its samples file: one row per request (``http_req_duration``), tagged with the endpoint, its
status, its scenario, the generator that sent it and its timestamp.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import duckdb
import numpy as np
import pyarrow as pa

from ratchet.analysis.knee import StepSample
from ratchet.contracts import EndpointStats
from ratchet.store.sample_stream import sql_literal as _literal

# The columns of a run's samples file, one row per request (or per workflow execution: ratchet/workflow_load).
SAMPLE_SCHEMA = pa.schema(
    [
        ("endpoint", pa.string()),
        ("ts", pa.timestamp("us", tz="UTC")),
        ("duration_ms", pa.float64()),
        ("status", pa.int32()),
        ("scenario", pa.string()),
        ("generator", pa.int32()),
    ]
)


class RunSampleCounts(NamedTuple):
    kept: int
    """Requests in the samples file (after the warm-up)."""
    answered: int
    """Requests the target answered (any status but k6's 0), warm-up included: each started one trace."""


def finalize_run_samples(
    parts_dir: Path, parquet: Path, *, warmup_s: float, endpoint_names: dict[str, str] | None = None
) -> RunSampleCounts:
    """Merge a run's Parquet parts (all its load generators) into the run's samples file; return its counts.

    Requests in the first ``warmup_s`` seconds after the first sample are left out. With ``endpoint_names``
    (tag value -> endpoint, for a user's own script) requests are renamed by it and those whose tag value is
    not in it are left out. Dropped iterations go to ``dropped_file(parquet)``. The parts are removed once
    both files are in place.
    """
    parquet.parent.mkdir(parents=True, exist_ok=True)
    every_part = sorted(parts_dir.glob("*.parquet")) if parts_dir.is_dir() else []
    parts = run_parts(every_part)
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
        if endpoint_names is not None:
            con.execute("CREATE TEMP TABLE names (tag_value VARCHAR, endpoint VARCHAR)")
            con.executemany("INSERT INTO names VALUES (?, ?)", list(endpoint_names.items()))
            con.execute(
                "CREATE TEMP VIEW named AS SELECT p.* REPLACE (n.endpoint AS endpoint) "
                "FROM points p JOIN names n ON p.endpoint = n.tag_value"
            )
        source = "named" if endpoint_names is not None else "points"
        con.execute(
            f"""
            COPY (
              SELECT endpoint, ts, value AS duration_ms, status, scenario, generator FROM {source}
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
        answered = con.execute(
            f"SELECT count(*) FROM {source} WHERE metric = 'http_req_duration' AND endpoint IS NOT NULL AND status <> 0"
        ).fetchone()
    tmp.replace(parquet)
    dropped_tmp.replace(dropped_file(parquet))
    for part in every_part:
        part.unlink(missing_ok=True)
    return RunSampleCounts(int(count[0]) if count else 0, int(answered[0]) if answered else 0)


_PART = re.compile(r"chunk-(?P<generator>\d+)-a(?P<attempt>\d+)-\d+\.parquet")


def run_parts(parts: list[Path]) -> list[Path]:
    """The parts of each generator's latest attempt. A run retried after its heartbeat lapsed (a stalled host,
    a lost worker) may leave the parts of its earlier attempt, which can even go on writing while the retry
    runs: their samples belong to no complete run (CI, 2026-12-08: a superseded attempt merged, then deleted,
    its retry's parts, and the retry counted 0 requests)."""
    latest: dict[int, int] = {}
    numbered = []
    for part in parts:
        named = _PART.fullmatch(part.name)
        if named is None:
            continue
        generator, attempt = int(named["generator"]), int(named["attempt"])
        latest[generator] = max(attempt, latest.get(generator, 0))
        numbered.append((part, generator, attempt))
    return [part for part, generator, attempt in numbered if attempt == latest[generator]]


def dropped_file(parquet: Path) -> Path:
    """Where a run keeps k6's dropped iterations (the generator ran out of VUs), beside its samples."""
    return parquet.with_name(parquet.name.removesuffix(".parquet") + ".dropped.parquet")


def _list_literal(paths: list[Path]) -> str:
    return "[" + ", ".join(_literal(p) for p in paths) + "]"


def endpoint_stats(parquet: Path | list[Path]) -> list[EndpointStats]:
    """Exact p50/p95/p99 per endpoint (linear interpolation, as numpy's default), errors = status 0 or >= 400.

    Status 0 is k6's "no answer" (refused, reset, timed out), also counted apart as ``unanswered``. Several
    files (the runs of one arm) are summarised as one pool of requests.
    """
    files = [str(p) for p in parquet] if isinstance(parquet, list) else str(parquet)
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
            [files],
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


def durations_by_endpoint(parquet: Path) -> dict[str, np.ndarray]:
    """The latencies (ms) of every endpoint's requests in one run, read in one pass (``endpoint_durations`` for
    each endpoint would read the file once per endpoint), each in the order of the file."""
    with duckdb.connect() as con:
        result = con.execute("SELECT endpoint, duration_ms FROM read_parquet(?)", [str(parquet)]).fetchnumpy()
    names, codes = np.unique(np.asarray(result["endpoint"], dtype=object), return_inverse=True)
    order = np.argsort(codes, kind="stable")  # stable: each endpoint's requests keep the file's order
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    durations = np.asarray(result["duration_ms"], dtype=float)[order]
    return {str(name): durations[bounds[k] : bounds[k + 1]] for k, name in enumerate(names.tolist())}


def timed_durations(parquet: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every answered request of a run (all endpoints): seconds since the run's first, and its latency (ms)."""
    with duckdb.connect() as con:
        result = con.execute(
            "SELECT epoch(ts - min(ts) OVER ()) AS at_s, duration_ms FROM read_parquet(?) WHERE status <> 0 "
            "ORDER BY ts",
            [str(parquet)],
        ).fetchnumpy()
    return np.asarray(result["at_s"], dtype=float), np.asarray(result["duration_ms"], dtype=float)


def sampled_durations(parquet: list[Path], *, per_endpoint: int, seed: int = 0) -> dict[str, np.ndarray]:
    """At most ``per_endpoint`` latencies (ms) of each endpoint, drawn at random from the requests of ``parquet``
    pooled (a drawing, not a summary: the exact figures come from ``endpoint_stats``).

    Each endpoint keeps each request with probability ``per_endpoint / its requests``, decided by a hash of the
    request and ``seed`` so the drawing repeats; DuckDB streams the files, so memory holds only what is kept.
    """
    if not parquet:
        return {}
    files = [str(p) for p in parquet]
    with duckdb.connect() as con:
        result = con.execute(
            """
            WITH counts AS (SELECT endpoint, count(*) AS n FROM read_parquet($files) GROUP BY endpoint)
            SELECT s.endpoint, s.duration_ms
            FROM read_parquet($files) s JOIN counts c ON s.endpoint = c.endpoint
            WHERE hash(s.ts, s.duration_ms, s.generator, $seed) % 1000000 < 1e6 * $keep::DOUBLE / c.n
            ORDER BY s.endpoint, s.ts, s.duration_ms
            """,
            {"files": files, "seed": seed, "keep": per_endpoint},
        ).fetchnumpy()
    endpoints, durations = np.asarray(result["endpoint"], dtype=object), np.asarray(result["duration_ms"], dtype=float)
    names, starts = np.unique(endpoints, return_index=True)
    bounds = [*starts.tolist(), len(endpoints)]
    rng = np.random.default_rng(seed)
    drawn: dict[str, np.ndarray] = {}
    for name, start, stop in zip(names.tolist(), bounds[:-1], bounds[1:], strict=True):
        values = durations[start:stop]
        # The hash keeps about per_endpoint; "at most" is a promise, so trim the few above it at random.
        drawn[str(name)] = values if len(values) <= per_endpoint else rng.choice(values, per_endpoint, replace=False)
    return drawn


def endpoint_arms(
    before_files: list[Path], after_files: list[Path]
) -> dict[str, tuple[EndpointStats, EndpointStats, list[np.ndarray], list[np.ndarray]]]:
    """Per endpoint measured in both arms: each arm's stats (its runs pooled) and its latencies run by run."""
    before_stats = {s.endpoint: s for s in endpoint_stats(before_files)}
    after_stats = {s.endpoint: s for s in endpoint_stats(after_files)}
    before_runs = [durations_by_endpoint(f) for f in before_files]
    after_runs = [durations_by_endpoint(f) for f in after_files]
    none = np.zeros(0)
    return {
        endpoint: (
            before,
            after_stats[endpoint],
            [run.get(endpoint, none) for run in before_runs],
            [run.get(endpoint, none) for run in after_runs],
        )
        for endpoint, before in before_stats.items()
        if endpoint in after_stats
    }


# A step's first second is left out: k6 moves every endpoint's rate at once, but requests already in
# flight from the previous step still land there.
_STEP_SETTLE_S = 1.0


def step_samples(parquet: Path, *, started_at: datetime, step_s: float, steps: int) -> list[StepSample]:
    """Requests, p95, errors and dropped iterations of each step of a stepped run, timed from its start."""
    settle = min(_STEP_SETTLE_S, step_s / 4)
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(
            """
            WITH timed AS (
              SELECT floor(epoch(ts - ?::TIMESTAMPTZ) / ?)::INTEGER AS step,
                     epoch(ts - ?::TIMESTAMPTZ) % ? AS into_step, duration_ms, status
              FROM read_parquet(?)
            )
            SELECT step, count(*), quantile_cont(duration_ms, 0.95),
                   count(*) FILTER (WHERE status = 0 OR status >= 400),
                   avg(duration_ms)
            FROM timed WHERE step >= 0 AND step < ? AND into_step >= ? GROUP BY step
            """,
            [started_at, step_s, started_at, step_s, str(parquet), steps, settle],
        ).fetchall()
        dropped_rows = con.execute(
            """
            SELECT floor(epoch(ts - ?::TIMESTAMPTZ) / ?)::INTEGER AS step, sum(dropped)
            FROM read_parquet(?) GROUP BY step
            """,
            [started_at, step_s, str(dropped_file(parquet))],
        ).fetchall()
    measured: dict[int, tuple[int, float | None, int, float | None]] = {
        int(step): (int(n), float(p95), int(errors), float(mean)) for step, n, p95, errors, mean in rows
    }
    dropped = {int(step): int(total or 0) for step, total in dropped_rows}
    samples = []
    for i in range(steps):
        requests, p95, errors, mean = measured.get(i, (0, None, 0, None))
        samples.append(StepSample(i, requests, step_s - settle, p95, errors, dropped.get(i, 0), mean))
    return samples
