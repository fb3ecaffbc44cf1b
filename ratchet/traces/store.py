"""Spans on disk: received spans land in Parquet parts; a run's spans are selected from them by trace id.

Ratchet's load tests start every trace themselves (a W3C ``traceparent`` header on each request), with a
trace id that begins with the run's prefix and then the endpoint's number. So a run's spans are exactly the
spans whose trace id starts with that prefix, whatever service sent them and however late.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ratchet.store.sample_stream import sql_literal
from ratchet.traces.otlp import SPAN_COLUMNS

RUN_PREFIX_HEX = 14  # 7 bytes of the 16-byte trace id name the run …
ENDPOINT_HEX = 2  # … 1 byte the endpoint (its position in the target), and the rest is random

SPAN_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()), ("span_id", pa.string()), ("parent_span_id", pa.string()),
        ("name", pa.string()), ("kind", pa.string()), ("service", pa.string()),
        ("start_ns", pa.int64()), ("end_ns", pa.int64()), ("duration_ms", pa.float64()), ("status", pa.string()),
        ("route", pa.string()), ("http_method", pa.string()), ("http_status", pa.int64()), ("body_size", pa.int64()),
        ("url", pa.string()), ("server_address", pa.string()), ("db_system", pa.string()),
        ("statement", pa.string()), ("attributes", pa.string()),
    ]
)  # fmt: skip
assert tuple(SPAN_SCHEMA.names) == SPAN_COLUMNS, "the Parquet schema and the decoded columns must agree"


def run_trace_prefix(run_id: str) -> str:
    """The hex prefix of every trace id a run's load test starts (stable: derived from the run id)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:RUN_PREFIX_HEX]


@dataclass
class PrefixActivity:
    """How many spans arrived for one trace-id prefix, and when the last did (monotonic seconds)."""

    spans: int = 0
    last_received: float = field(default_factory=time.monotonic)


class SpanSink:
    """Buffers decoded spans and writes them as Parquet parts under ``incoming_dir``.

    A part is written when the buffer holds ``max_rows`` spans or on ``flush()`` (the receiver calls it every
    second and before answering a run's collector), so memory stays bounded whatever the arrival rate.
    """

    def __init__(self, incoming_dir: Path, *, max_rows: int = 50_000) -> None:
        self.incoming_dir = incoming_dir
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._buffer: dict[str, list[Any]] = {name: [] for name in SPAN_COLUMNS}
        self._rows = 0
        self._sequence = 0
        self.received = 0
        self.by_prefix: dict[str, PrefixActivity] = {}
        incoming_dir.mkdir(parents=True, exist_ok=True)

    def add(self, columns: dict[str, list[Any]]) -> int:
        """Take one export's spans; returns how many."""
        count = len(columns["trace_id"])
        if not count:
            return 0
        now = time.monotonic()
        with self._lock:
            for name in SPAN_COLUMNS:
                self._buffer[name].extend(columns[name])
            self._rows += count
            self.received += count
            for trace_id in columns["trace_id"]:
                activity = self.by_prefix.setdefault(trace_id[:RUN_PREFIX_HEX], PrefixActivity())
                activity.spans += 1
                activity.last_received = now
            full = self._rows >= self.max_rows
        if full:
            self.flush()
        return count

    def flush(self) -> Path | None:
        """Write what is buffered as one Parquet part (atomically: temporary name, then rename)."""
        with self._lock:
            if not self._rows:
                return None
            table = pa.table(self._buffer, schema=SPAN_SCHEMA)
            self._buffer = {name: [] for name in SPAN_COLUMNS}
            self._rows = 0
            self._sequence += 1
            part = self.incoming_dir / f"spans-{time.time_ns()}-{self._sequence:06d}.parquet"
        tmp = part.with_suffix(".tmp")
        pq.write_table(table, tmp)
        tmp.replace(part)
        return part


def collect_run_spans(incoming_dir: Path, prefix: str, out_file: Path, endpoints: list[str]) -> int:
    """Copy the spans of one run (trace ids starting with ``prefix``) into ``out_file``; return their number.

    Each span gets the run's endpoint name, read from the byte after the prefix (see the k6 script).
    """
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_suffix(".tmp.parquet")
    parts = sorted(incoming_dir.glob("spans-*.parquet")) if incoming_dir.is_dir() else []
    with duckdb.connect() as con:
        con.execute("CREATE TEMP TABLE endpoints (position INTEGER, endpoint VARCHAR)")
        con.executemany("INSERT INTO endpoints VALUES (?, ?)", list(enumerate(endpoints)))
        if parts:
            source = "read_parquet([" + ", ".join(sql_literal(p) for p in parts) + "])"
        else:  # the service sent nothing (yet): an empty file with the same columns
            con.register("no_spans", pa.table({n: [] for n in SPAN_COLUMNS}, schema=SPAN_SCHEMA))
            source = "no_spans"
        con.execute(
            f"""
            COPY (
              SELECT s.*, e.endpoint FROM {source} s
              LEFT JOIN endpoints e ON e.position = TRY_CAST(('0x' || substr(s.trace_id, {RUN_PREFIX_HEX + 1},
                                                               {ENDPOINT_HEX})) AS INTEGER)
              WHERE starts_with(s.trace_id, ?)
              ORDER BY s.trace_id, s.start_ns
            ) TO {sql_literal(tmp)} (FORMAT parquet)
            """,
            [prefix],
        )
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp)]).fetchone()
    tmp.replace(out_file)
    return int(count[0]) if count else 0
