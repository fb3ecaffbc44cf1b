"""The steps of analysed executions, kept as Parquet in Ratchet's home (one file per workflow type and
analysis), for trends and for the analyses to come."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ratchet.workflow_analytics.steps import Execution

_SCHEMA = pa.schema(
    [
        ("workflow_id", pa.string()),
        ("run_id", pa.string()),
        ("workflow_type", pa.string()),
        ("execution_started_at", pa.timestamp("us", tz="UTC")),
        ("execution_ms", pa.float64()),
        ("status", pa.string()),
        ("kind", pa.string()),
        ("step", pa.string()),
        ("event_id", pa.int64()),
        ("task_queue", pa.string()),
        ("scheduled_ms", pa.float64()),
        ("wait_ms", pa.float64()),
        ("work_ms", pa.float64()),
        ("attempt", pa.int32()),
        ("outcome", pa.string()),
        ("failure", pa.string()),
    ]
)


def store_steps(folder: Path, workflow_type: str, executions: list[Execution]) -> Path:
    """Write every step of ``executions`` to a new Parquet file under ``folder``; its path."""
    rows = [
        {
            "workflow_id": e.workflow_id,
            "run_id": e.run_id,
            "workflow_type": e.workflow_type,
            "execution_started_at": e.started_at.replace(tzinfo=UTC),
            "execution_ms": e.total_ms,
            "status": e.status,
            "kind": s.kind,
            "step": s.name,
            "event_id": s.event_id,
            "task_queue": s.task_queue,
            "scheduled_ms": s.scheduled_ms,
            "wait_ms": s.wait_ms,
            "work_ms": s.work_ms,
            "attempt": s.attempt,
            "outcome": s.outcome,
            "failure": s.failure or s.last_failure,
        }
        for e in executions
        for s in e.steps
    ]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", workflow_type)
    path = folder / safe / f"steps-{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=_SCHEMA), path)
    return path
