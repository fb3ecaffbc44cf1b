"""The service's own time per request: the duration of each request's root server span in a run's spans file.

A request's root server span is where the service began handling it (the span whose parent, the load
generator's, is not in the trace). It leaves out what the load generator and the host add around the
service: k6's own scheduling on a busy machine, connection setup, the socket. Warm-up requests are left
out, as in the run's samples.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np


def server_durations(spans_file: Path) -> dict[str, np.ndarray]:
    """Per endpoint, the root server spans' durations (ms) of the run's steady-state requests; {} when the run
    has no spans file."""
    if not spans_file.is_file():
        return {}
    with duckdb.connect() as con:
        rows = con.execute(
            """
            WITH s AS (
              SELECT trace_id, span_id, parent_span_id, kind, duration_ms, endpoint
              FROM read_parquet(?) WHERE NOT warmup AND endpoint IS NOT NULL
            )
            SELECT endpoint, list(duration_ms) FROM s
            WHERE kind = 'server'
              AND NOT EXISTS (SELECT 1 FROM s p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)
            GROUP BY endpoint
            """,
            [str(spans_file)],
        ).fetchall()
    return {endpoint: np.asarray(durations, dtype=float) for endpoint, durations in rows}
