"""Spans on disk: received spans land in Parquet parts; a run's spans are selected from them by trace id.

Ratchet's load tests start every trace themselves (a W3C ``traceparent`` header on each request), with a
trace id that begins with the run's prefix and then the endpoint's number. So a run's spans are exactly the
spans whose trace id starts with that prefix, whatever service sent them and however late.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ratchet.traces.columnar import (
    SPAN_SCHEMA,
    DecodedSpans,
    FramedExport,
    UnframedExport,
    decode_exports,
    frame_export,
)
from ratchet.traces.otlp import SPAN_COLUMNS, decode_protobuf, span_columns

RUN_PREFIX_HEX = 14  # 7 bytes of the 16-byte trace id name the run …
ENDPOINT_HEX = 2  # … 1 byte the endpoint (its position in the target), and the rest is random
# The load test's own (never exported) parent span id repeats the trace id's random tail: a span whose parent
# is that id is the root of one request's trace in the target.
ROOT_PARENT_HEX = slice(RUN_PREFIX_HEX + ENDPOINT_HEX, 32)


def is_request_root(trace_id: str, parent_span_id: str | None) -> bool:
    """Whether a span is the root of a load-test request's trace (its parent is the load test's own span)."""
    return parent_span_id is not None and parent_span_id == trace_id[ROOT_PARENT_HEX]


# Incoming parts: dictionary pages only where values repeat, statistics only where DuckDB prunes with them
# (a run's spans are selected by trace id, and by time). The same columns either way; this just writes faster.
_PART_OPTIONS: dict[str, Any] = {
    "use_dictionary": [
        "name",
        "kind",
        "service",
        "status",
        "route",
        "http_method",
        "server_address",
        "db_system",
        "statement",
    ],
    "write_statistics": ["trace_id", "start_ns", "end_ns"],
}


def run_trace_prefix(run_id: str) -> str:
    """The hex prefix of every trace id a run's load test starts (stable: derived from the run id)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:RUN_PREFIX_HEX]


@dataclass
class PrefixActivity:
    """How many spans arrived for one trace-id prefix, how many of them are requests' roots, and when the last
    arrived (monotonic seconds)."""

    spans: int = 0
    last_received: float = field(default_factory=time.monotonic)
    roots: int = 0


class SpanSink:
    """Buffers received spans and writes them as Parquet parts under ``incoming_dir``.

    A protobuf export is only framed when it arrives (its headers read, so a body that is not an export is
    refused at once); its spans are decoded with the other pending exports, many at a time, when the buffer is
    written. A part is written when the buffer holds ``max_rows`` spans or on ``flush()`` (the receiver calls
    it every second and before telling a run's collector what arrived), so memory stays bounded whatever the
    arrival rate. A part written because the buffer is full is written by a thread of its own while the next
    spans arrive and decode (one part at a time); ``flush()`` returns once every part is on disk.
    """

    def __init__(self, incoming_dir: Path, *, max_rows: int = 50_000) -> None:
        self.incoming_dir = incoming_dir
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time
        self._writer: ThreadPoolExecutor | None = None  # made on first use
        self._writing: Future[None] | None = None  # the part being written, at most one
        self._buffer: dict[str, list[Any]] = {name: [] for name in SPAN_COLUMNS}
        self._exports: list[FramedExport] = []
        self._rows = 0
        self._sequence = 0
        self.received = 0
        self.dropped = 0
        """Spans that arrived in a well-framed export but whose own bytes are not a Span (not stored)."""
        self.by_prefix: dict[str, PrefixActivity] = {}
        incoming_dir.mkdir(parents=True, exist_ok=True)

    @property
    def pending(self) -> bool:
        """Whether exports wait to be decoded (their spans are not in ``by_prefix`` yet)."""
        return bool(self._exports)

    def add_protobuf(self, body: bytes) -> int:
        """Take one ``application/x-protobuf`` export; returns how many spans it holds.

        Raises OtlpPayloadError when the body is not an ExportTraceServiceRequest.
        """
        # The whole body is parsed first (upb, in C: about 0.6 ms per MB), so that an exporter sending what is not
        # an export is told at once (400), not answered 200 and its spans dropped when the batch is decoded.
        parsed = decode_protobuf(body)
        try:
            export = frame_export(body)
        except UnframedExport:  # a layout the framing does not read: opentelemetry-proto's parse is decoded
            return self.add(span_columns(parsed))
        if not export.spans:
            return 0
        with self._lock:
            self._exports.append(export)
            self._rows += export.spans
            self.received += export.spans
            full = self._rows >= self.max_rows
        if full:
            self._flush(wait=False)
        return export.spans

    def add(self, columns: dict[str, list[Any]]) -> int:
        """Take one export's spans, already decoded; returns how many."""
        count = len(columns["trace_id"])
        if not count:
            return 0
        now = time.monotonic()
        with self._lock:
            for name in SPAN_COLUMNS:
                self._buffer[name].extend(columns[name])
            self._rows += count
            self.received += count
            for trace_id, parent in zip(columns["trace_id"], columns["parent_span_id"], strict=True):
                activity = self.by_prefix.setdefault(trace_id[:RUN_PREFIX_HEX], PrefixActivity())
                activity.spans += 1
                activity.roots += is_request_root(trace_id, parent)
                activity.last_received = now
            full = self._rows >= self.max_rows
        if full:
            self._flush(wait=False)
        return count

    def flush(self) -> Path | None:
        """Write what is buffered as one Parquet part (atomically: temporary name, then rename); returns once it,
        and any part written before, is on disk."""
        return self._flush(wait=True)

    def _flush(self, *, wait: bool) -> Path | None:
        with self._flush_lock:
            with self._lock:
                if not self._rows:
                    buffered, exports, part = None, [], None
                else:
                    buffered, exports = self._buffer, self._exports
                    self._buffer = {name: [] for name in SPAN_COLUMNS}
                    self._exports = []
                    self._rows = 0
                    self._sequence += 1
                    part = self.incoming_dir / f"spans-{time.time_ns()}-{self._sequence:06d}.parquet"
            tables = [pa.table(buffered, schema=SPAN_SCHEMA)] if buffered and buffered["trace_id"] else []
            if exports:
                decoded = decode_exports(exports)
                self._note_arrivals(decoded)
                tables.append(decoded.table)
            table = (pa.concat_tables(tables) if len(tables) > 1 else tables[0]) if tables else None
            self._wait_for_writing()  # one part in memory at a time, whatever the arrival rate
            if table is not None and table.num_rows and part is not None:
                self._writer = self._writer or ThreadPoolExecutor(1, thread_name_prefix="span-parts")
                self._writing = self._writer.submit(_write_part, table, part)
            else:
                part = None
            if wait:
                self._wait_for_writing()
            return part

    def _wait_for_writing(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _note_arrivals(self, decoded: DecodedSpans) -> None:
        # numpy over the prefixes' dictionary codes, not Table.group_by or np.asarray: those import pandas (a
        # third of a second, once per process)
        trace_ids = decoded.table["trace_id"].combine_chunks()
        prefixes = pc.dictionary_encode(pc.utf8_slice_codeunits(trace_ids, 0, RUN_PREFIX_HEX))
        indices = prefixes.indices  # int32, no nulls (trace ids never are); read from its buffer, as above
        codes = np.frombuffer(indices.buffers()[1], np.int32)[indices.offset : indices.offset + len(indices)]
        spans = np.bincount(codes, minlength=len(prefixes.dictionary))
        root_tail = pc.utf8_slice_codeunits(trace_ids, ROOT_PARENT_HEX.start, ROOT_PARENT_HEX.stop)
        is_root = pc.fill_null(pc.equal(decoded.table["parent_span_id"].combine_chunks(), root_tail), False)
        roots = np.bincount(codes, weights=is_root.to_numpy(zero_copy_only=False), minlength=len(prefixes.dictionary))
        last = np.full(len(prefixes.dictionary), -np.inf)
        np.maximum.at(last, codes, decoded.received)
        with self._lock:
            self.dropped += decoded.dropped
            for prefix, count, root_count, latest in zip(
                prefixes.dictionary.to_pylist(), spans.tolist(), roots.tolist(), last.tolist(), strict=True
            ):
                activity = self.by_prefix.setdefault(prefix, PrefixActivity(spans=0, last_received=latest))
                activity.spans += count
                activity.roots += int(root_count)
                activity.last_received = max(activity.last_received, latest)


def _write_part(table: pa.Table, part: Path) -> None:
    tmp = part.with_suffix(".tmp")
    pq.write_table(table, tmp, **_PART_OPTIONS)
    tmp.replace(part)


def collect_run_spans(
    incoming_dir: Path, prefix: str, out_file: Path, endpoints: list[str], warmup_s: float = 0.0
) -> int:
    """Copy the spans of one run (trace ids starting with ``prefix``) into ``out_file``; return their number.

    Each span gets the run's endpoint name, read from the byte after the prefix (see the k6 script), and
    ``warmup``: true for traces that began in the run's first ``warmup_s`` seconds. The analyses leave those
    out, as the run's samples leave out the warm-up's requests (a cold cache's misses are not the steady
    state); what counts everything the service did, such as its statements, keeps them.
    """
    # Imported here: the receiver, which imports this module for SpanSink, never needs DuckDB (24 MB idle).
    import duckdb

    from ratchet.store.sample_stream import sql_literal

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
              WITH run AS (SELECT * FROM {source} WHERE starts_with(trace_id, ?)),
              began AS (SELECT trace_id, min(start_ns) AS start_ns FROM run GROUP BY trace_id),
              steady AS (
                SELECT trace_id FROM began
                WHERE start_ns >= (SELECT min(start_ns) FROM began) + CAST(? * 1e9 AS BIGINT)
              )
              SELECT s.*, e.endpoint, s.trace_id NOT IN (SELECT trace_id FROM steady) AS warmup FROM run s
              LEFT JOIN endpoints e ON e.position = TRY_CAST(('0x' || substr(s.trace_id, {RUN_PREFIX_HEX + 1},
                                                               {ENDPOINT_HEX})) AS INTEGER)
              ORDER BY s.trace_id, s.start_ns
            ) TO {sql_literal(tmp)} (FORMAT parquet)
            """,
            [prefix, warmup_s],
        )
        count = con.execute("SELECT count(*) FROM read_parquet(?)", [str(tmp)]).fetchone()
    tmp.replace(out_file)
    return int(count[0]) if count else 0
