"""A workload driver's executions as load-test samples: the same Parquet columns k6's requests are kept in
(``ratchet/store/samples.py``), so percentiles, verdicts and arms read a workflow run as they read an HTTP
one. An execution is a request whose latency is its start-to-result time: status 200 when it completed, 500
when it failed, 0 when no answer came (not started, or still open when the run stopped awaiting it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ratchet.store.samples import SAMPLE_SCHEMA, dropped_file
from ratchet.workflow_load.driver import ExecutionSample

# A timed-out execution is an answer that never came (as a k6 request that timed out): status 0.
_NO_DROPPED = pa.table(
    {"scenario": [], "ts": [], "dropped": [], "generator": []},
    schema=pa.schema(
        [
            ("scenario", pa.string()),
            ("ts", pa.timestamp("us", tz="UTC")),
            ("dropped", pa.float64()),
            ("generator", pa.int32()),
        ]
    ),
)
_STATUS = {"completed": 200, "failed": 500, "timed-out": 0, "not-started": 0}


def write_samples(
    samples: dict[str, list[ExecutionSample]], parquet: Path, *, run_started_at: datetime, warmup_s: float
) -> int:
    """Write each endpoint's executions due after the warm-up to ``parquet`` (in start order); return how many."""
    kept = sorted(
        ((endpoint, s) for endpoint, found in samples.items() for s in found if s.due_s >= warmup_s),
        key=lambda pair: pair[1].started_s,
    )
    table = pa.table(
        {
            "endpoint": [endpoint for endpoint, _ in kept],
            "ts": [run_started_at + timedelta(seconds=s.started_s) for _, s in kept],
            "duration_ms": [s.duration_ms for _, s in kept],
            "status": [_STATUS[s.status] for _, s in kept],
            "scenario": ["workflows"] * len(kept),
            "generator": [0] * len(kept),
        },
        schema=SAMPLE_SCHEMA,
    )
    parquet.parent.mkdir(parents=True, exist_ok=True)
    partial = parquet.with_suffix(".tmp.parquet")
    pq.write_table(table, partial)
    partial.replace(parquet)
    # The driver drops no arrival (each is a task of its own, none waits for a free VU): an empty file, so that
    # a stepped run's steps are read as k6's are.
    pq.write_table(_NO_DROPPED, dropped_file(parquet))
    return len(kept)
