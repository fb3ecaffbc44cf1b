"""Decode OTLP/protobuf trace exports into Arrow columns, many exports at once, with compiled loops (numba).

``otlp.span_columns`` builds a protobuf object per span and a Python dict per attribute: for a million spans
that costs about what a plain ``json.loads`` loop over the same exports costs (``make bench``). Here each
export is framed as it arrives (``frame_export``: its resources, and where each span's bytes lie), and the
spans are decoded later, a batch of exports at a time (``decode_exports``): one compiled pass over each span
(``wire.decode_spans``) reads its fields and attributes and writes straight into the columns' buffers (ids as
hex, names, the promoted attributes, the rest of the attributes as JSON text), which become Arrow arrays
without a copy.

The rows are those ``span_columns`` gives (tests compare the two). A span this path does not handle itself —
an id that is not 16 or 8 bytes, a field sent twice, an attribute value that is a double, an array, a map or
bytes, a key twice, a promoted attribute of another type than its column's, a string that is not valid UTF-8 —
goes through ``otlp.append_span`` with opentelemetry-proto, one span at a time; a span that even that cannot
parse is dropped and counted. What the columns do not keep (scope, events, links) is skipped without being
checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ratchet.traces import wire_aot
from ratchet.traces.otlp import (
    PROMOTED_ATTRIBUTES,
    SPAN_COLUMNS,
    SPAN_KINDS,
    STATUS_CODES,
    append_span,
    empty_columns,
)
from ratchet.traces.wire_layout import (
    END,
    HAS_PARENT,
    JSON_TEXT,
    KIND,
    KINDS,
    NAME_TEXT,
    START,
    STATUS,
    STATUSES,
    TEXTS,
    Frame,
    PromotedKeys,
    Spans,
    promoted_keys,
)

SPAN_SCHEMA = pa.schema(
    [
        ("trace_id", pa.string()),
        ("span_id", pa.string()),
        ("parent_span_id", pa.string()),
        ("name", pa.string()),
        ("kind", pa.string()),
        ("service", pa.string()),
        ("start_ns", pa.int64()),
        ("end_ns", pa.int64()),
        ("duration_ms", pa.float64()),
        ("status", pa.string()),
        ("route", pa.string()),
        ("http_method", pa.string()),
        ("http_status", pa.int64()),
        ("body_size", pa.int64()),
        ("url", pa.string()),
        ("server_address", pa.string()),
        ("db_system", pa.string()),
        ("statement", pa.string()),
        ("attributes", pa.string()),
    ]
)
assert tuple(SPAN_SCHEMA.names) == SPAN_COLUMNS, "the Parquet schema and the decoded columns must agree"

# A batch's bytes at most: decode_spans reserves its text columns' buffers at up to ~13 times that (address
# space, backed by memory only where written), and their Arrow offsets are 32-bit.
_MAX_DATA = 1 << 27

_INT_COLUMNS = {"http_status", "body_size"}
_KEYS = promoted_keys(PROMOTED_ATTRIBUTES, _INT_COLUMNS)
assert (len(SPAN_KINDS), len(STATUS_CODES)) == (KINDS, STATUSES), "the compiled code maps them"


# The decoder: compiled ahead of time at install (no numba loaded, ~130 MB less in a receiver at rest), else
# numba's compilation at run time (about a minute the first time, then its cache on disk).
# RATCHET_SPAN_DECODER=numba picks numba's where both are there (the bench compares them).
_compiled = None if os.environ.get("RATCHET_SPAN_DECODER") == "numba" else wire_aot.load()


def _frame(buf: np.ndarray) -> Frame:
    if _compiled is not None:
        return Frame(*_compiled.frame(buf))
    from ratchet.traces import wire

    return wire.frame(buf)


def _decode_spans(
    bodies: np.ndarray, body_of: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: PromotedKeys
) -> Spans:
    if _compiled is not None:
        return Spans(*_compiled.decode_spans(bodies, body_of, starts, ends, *keys))
    from ratchet.traces import wire

    return wire.decode_spans(bodies, body_of, starts, ends, keys)


def compiled_at_install() -> bool:
    """Whether the decoder compiled at install runs (else numba's)."""
    return _compiled is not None


def decoder() -> str:
    """Which decoder runs, in words: said by the bench."""
    return "compiled at install" if compiled_at_install() else "numba, compiled at run time"


class UnframedExport(Exception):
    """The export's headers are not laid out as this path reads them: decode it with opentelemetry-proto."""


@dataclass(frozen=True)
class FramedExport:
    """One protobuf export, read down to where each of its spans lies."""

    body: bytes
    starts: np.ndarray
    """Offset in ``body`` of each span's bytes (int64)."""
    ends: np.ndarray
    resource_of: np.ndarray
    """For each span, its resource's position in ``services``."""
    services: list[str]
    """service.name of each ResourceSpans."""
    received: float = field(default_factory=time.monotonic)

    @property
    def spans(self) -> int:
        """How many spans the export holds."""
        return len(self.starts)


@dataclass(frozen=True)
class DecodedSpans:
    """A batch of exports as one table (rows in SPAN_SCHEMA)."""

    table: pa.Table
    received: np.ndarray
    """For each row, when its export arrived (time.monotonic)."""
    dropped: int
    """Spans whose bytes are not a protobuf Span (not stored)."""


# --- an export's headers, read as it arrives ------------------------------------------------------------


def frame_export(body: bytes) -> FramedExport:
    """Where each span of an ``ExportTraceServiceRequest`` lies, and its service; raises UnframedExport."""
    body = bytes(body)  # (a no-op for bytes; a writable buffer would make numba compile the scan a second time)
    framed = _frame(np.frombuffer(body, np.uint8))
    if not framed.ok:
        raise UnframedExport
    services = [
        body[at : at + length].decode() if length >= 0 else ""
        for at, length in zip(framed.service_at.tolist(), framed.service_length.tolist(), strict=True)
    ]
    return FramedExport(
        body=body, starts=framed.starts, ends=framed.ends, resource_of=framed.resource_of, services=services
    )


def warm_up(*, numba: bool = False) -> float:
    """Make the decoder ready by decoding one small export; returns the seconds it took. Compiled at install
    (ratchet.traces.wire_aot), it is ready at once. Else numba compiles it: the first call after an install
    or a change of ratchet/traces/wire.py takes about 50 s on two cores (and up to ~0.9 GiB of memory
    meanwhile); later ones, in any process, load numba's cache (about half a second). ``numba``: numba's
    decoder even where the compiled one is there (`make` caches it too, for a machine that loses the other)."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    started = time.perf_counter()
    attributes = [KeyValue(key="http.route", value=AnyValue(string_value="/")), KeyValue(key="n", value=AnyValue())]
    span = Span(trace_id=bytes(16), span_id=bytes(8), name="warm-up", attributes=attributes)
    export = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])])
    # numba=True swaps the module's decoder for the call: `make` asks for it, in a process of its own.
    global _compiled
    kept, _compiled = _compiled, (None if numba else _compiled)
    try:
        decode_exports([frame_export(export.SerializeToString())])
    finally:
        _compiled = kept
    return time.perf_counter() - started


# --- a batch of exports, decoded by the compiled scan --------------------------------------------------------


class _Oversized(Exception):
    """A text column of the batch would pass Arrow's 32-bit offsets: decode it in smaller batches."""


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    return None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))


# Arrays are made from buffers here, not with pa.array: that imports pandas (a third of a second) to check
# whether it was handed a pandas object.


def _from_numpy(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """An int64 or float64 array of ``values`` (null where ``valid`` is False)."""
    kind, dtype = (pa.float64(), np.float64) if values.dtype.kind == "f" else (pa.int64(), np.int64)
    values = np.ascontiguousarray(values, dtype)
    return pa.Array.from_buffers(kind, len(values), [_validity(valid), pa.py_buffer(values)])


def _strings(values: Sequence[str]) -> pa.Array:
    """A string array of ``values``."""
    encoded = [v.encode() for v in values]
    offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
    return _string_array(offsets, np.frombuffer(b"".join(encoded), np.uint8), None)


def _string_array(offsets: np.ndarray, data: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """A string column from the compiled writers' int64 offsets and UTF-8 data (already validated)."""
    if offsets[-1] > np.iinfo(np.int32).max:
        raise _Oversized
    buffers = [_validity(valid), pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(offsets) - 1, buffers)


def decode_exports(exports: Sequence[FramedExport]) -> DecodedSpans:
    """The spans of ``exports`` as one table (and when each row's export arrived)."""
    if not exports:
        return DecodedSpans(table=SPAN_SCHEMA.empty_table(), received=np.zeros(0), dropped=0)
    if len(exports) > 1 and sum(len(e.body) for e in exports) > _MAX_DATA:
        return _halves(exports)
    try:
        return _decode_batch(exports)
    except _Oversized:
        if len(exports) > 1:
            return _halves(exports)
        export = exports[0]  # text past 2 GiB from one export: its spans one by one
        table, kept, dropped = _decode_one_by_one(
            [export.body] * export.spans,
            np.arange(export.spans),
            export.starts,
            export.ends,
            export.services,
            export.resource_of,
        )
        return DecodedSpans(
            table=SPAN_SCHEMA.empty_table() if table is None else table,
            received=np.full(len(kept), export.received),
            dropped=dropped,
        )


def _halves(exports: Sequence[FramedExport]) -> DecodedSpans:
    half = len(exports) // 2
    return _concat([decode_exports(exports[:half]), decode_exports(exports[half:])])


def _decode_batch(exports: Sequence[FramedExport]) -> DecodedSpans:
    counts = np.array([e.spans for e in exports], np.int64)
    bodies = np.array([np.frombuffer(e.body, np.uint8).ctypes.data for e in exports], np.int64)
    body_of = np.repeat(np.arange(len(exports), dtype=np.int64), counts)
    starts = np.concatenate([e.starts for e in exports] + [np.zeros(0, np.int64)])
    ends = np.concatenate([e.ends for e in exports] + [np.zeros(0, np.int64)])
    services = [s for e in exports for s in e.services]
    service_base = np.cumsum([0] + [len(e.services) for e in exports])[:-1]
    resource = np.concatenate([e.resource_of for e in exports] + [np.zeros(0, np.int64)])
    resource += np.repeat(np.asarray(service_base, np.int64), counts)
    received = np.repeat(np.array([e.received for e in exports], np.float64), counts)

    spans = _decode_spans(bodies, body_of, starts, ends, _KEYS)  # reads the bodies in place (kept alive here)
    rows = np.flatnonzero(~spans.odd)
    fast = _table(spans, services, resource)
    if len(rows) < len(starts):
        fast = fast.filter(pa.array(~spans.odd))
    odd = np.flatnonzero(spans.odd)
    slow, slow_rows, dropped = _decode_one_by_one(
        [exports[b].body for b in body_of[odd].tolist()], odd, starts, ends, services, resource
    )
    table = pa.concat_tables([fast, slow]) if slow is not None and slow.num_rows else fast
    return DecodedSpans(table=table, received=np.concatenate([received[rows], received[slow_rows]]), dropped=dropped)


def _table(spans: Spans, services: list[str], resource: np.ndarray) -> pa.Table:
    """The table of every span decode_spans read (the odd ones as empty rows, for the caller to filter out)."""
    n = len(spans.odd)

    def text(t: int) -> pa.Array:
        offsets, valid = spans.offsets[t], spans.valid[t]
        data = spans.text[spans.region[t] : spans.region[t] + offsets[-1]]
        return _string_array(offsets, data, None if valid.all() else valid)

    def ids(digits: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
        width = len(digits) // n if n else 0
        offsets = pa.py_buffer(np.arange(n + 1, dtype=np.int32) * width)
        return pa.Array.from_buffers(pa.string(), n, [_validity(valid), offsets, pa.py_buffer(digits)])

    numbers = spans.numbers
    start, end = numbers[:, START], numbers[:, END]
    columns: dict[str, pa.Array] = {
        "trace_id": ids(spans.trace_ids),
        "span_id": ids(spans.span_ids),
        "parent_span_id": ids(spans.parent_ids, numbers[:, HAS_PARENT] != 0),
        "name": text(NAME_TEXT),
        "kind": _strings(SPAN_KINDS).take(_from_numpy(numbers[:, KIND])),
        "service": _strings(services).take(_from_numpy(resource)),
        "start_ns": _from_numpy(start),
        "end_ns": _from_numpy(end),
        "duration_ms": _from_numpy((end - start) / 1e6),
        "status": _strings(STATUS_CODES).take(_from_numpy(numbers[:, STATUS])),
    }
    for c, name in enumerate(PROMOTED_ATTRIBUTES):
        if name in _INT_COLUMNS:
            columns[name] = _from_numpy(spans.integers[:, c], spans.valid[TEXTS + c])
        else:  # an int where a string is expected: span_columns writes str(value), and so does decode_spans
            columns[name] = text(TEXTS + c)
    columns["attributes"] = text(JSON_TEXT)
    return pa.table(columns, schema=SPAN_SCHEMA)


def _decode_one_by_one(
    bodies: list[bytes],
    spans: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    services: list[str],
    resource: np.ndarray,
) -> tuple[pa.Table | None, np.ndarray, int]:
    """The spans this path does not handle (span ``spans[k]`` in ``bodies[k]``), decoded by span_columns' code;
    those it cannot parse are dropped."""
    if not len(spans):  # (an empty table is not made: pyarrow imports pandas to make one)
        return None, np.zeros(0, np.int64), 0
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    columns: dict[str, list[Any]] = empty_columns()
    kept: list[int] = []
    for body, i in zip(bodies, spans.tolist(), strict=True):
        try:
            span = Span.FromString(body[starts[i] : ends[i]])
        except (DecodeError, ValueError):
            continue
        append_span(columns, span, services[resource[i]])
        kept.append(i)
    return pa.table(columns, schema=SPAN_SCHEMA), np.array(kept, np.int64), len(spans) - len(kept)


def _concat(parts: list[DecodedSpans]) -> DecodedSpans:
    return DecodedSpans(
        table=pa.concat_tables([p.table for p in parts]),
        received=np.concatenate([p.received for p in parts]),
        dropped=sum(p.dropped for p in parts),
    )
