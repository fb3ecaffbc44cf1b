"""Decode OTLP/protobuf trace exports into Arrow columns, many exports at once, with numpy and Arrow kernels.

``otlp.span_columns`` builds a protobuf object per span and a Python dict per attribute: for a million spans
that costs about what a plain ``json.loads`` loop over the same exports costs (``make bench``). Here Python reads
only the headers of each export as it arrives (``frame_export``: its resources and where each span's bytes
lie). The spans are decoded later, a batch of exports at a time (``decode_exports``): each numpy step reads
the next field of every span at once ("lockstep", as many steps as the longest span has fields), then the
attributes' keys and values the same way, and Arrow kernels turn byte ranges into string columns and the
remaining attributes into JSON text.

The rows are those ``span_columns`` gives (tests compare the two). A span this path does not handle itself —
an id that is not 16 or 8 bytes, a field sent twice, an attribute value that is a double, an array, a map or
bytes, a promoted attribute of another type than its column's, a string that is not valid UTF-8 — goes through
``otlp.append_span`` with opentelemetry-proto, one span at a time; a span that even that cannot parse is
dropped and counted. What the columns do not keep (scope, events, links) is skipped without being checked.
"""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet.traces.otlp import (
    PROMOTED_ATTRIBUTES,
    SPAN_COLUMNS,
    SPAN_KINDS,
    STATUS_CODES,
    append_span,
    empty_columns,
)

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

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Field numbers (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto).
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND = 1, 2, 4, 5, 6
_SPAN_START, _SPAN_END, _SPAN_ATTRIBUTES, _SPAN_STATUS = 7, 8, 9, 15
_STATUS_CODE = 3
_KEY, _VALUE = 1, 2
_STRING, _BOOL, _INT = 1, 2, 3  # AnyValue's oneof; 4 double, 5 array, 6 map, 7 bytes: not handled here
_PAD = 32  # zero bytes after the data, so that reading a varint or an 8-byte value never leaves the buffer
_MAX_DATA = 1 << 30  # Arrow string views address their data with 32-bit offsets

_PROMOTED_INDEX = {key: i for i, key in enumerate(k for keys in PROMOTED_ATTRIBUTES.values() for k in keys)}
_INT_COLUMNS = {"http_status", "body_size"}


class UnframedExport(Exception):
    """The export's headers are not laid out as this path reads them: decode it with opentelemetry-proto."""


@dataclass(frozen=True)
class FramedExport:
    """One protobuf export, read down to where each of its spans lies."""

    body: bytes
    starts: array[int]
    """Offset in ``body`` of each span's bytes."""
    ends: array[int]
    resource_of: array[int]
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


# --- an export's headers, read in Python as it arrives ---------------------------------------------------


def frame_export(body: bytes) -> FramedExport:
    """Where each span of an ``ExportTraceServiceRequest`` lies, and its service; raises UnframedExport."""
    starts, ends, resource_of = array("q"), array("q"), array("q")
    services: list[str] = []
    try:
        for number, wire, at, end in _fields(body, 0, len(body)):
            if number != 1:
                continue
            if wire != _LEN:
                raise UnframedExport
            first, service = len(starts), ""
            for inner, inner_wire, inner_at, inner_end in _fields(body, at, end):
                if inner in (1, 2) and inner_wire != _LEN:
                    raise UnframedExport
                if inner == 1:
                    service = _service_name(body, inner_at, inner_end)
                elif inner == 2:
                    _frame_spans(body, inner_at, inner_end, starts, ends)
            resource_of.extend([len(services)] * (len(starts) - first))
            services.append(service)
    except IndexError:
        raise UnframedExport from None
    return FramedExport(body=body, starts=starts, ends=ends, resource_of=resource_of, services=services)


def _varint(data: bytes, p: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        byte = data[p]
        p += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, p
        shift += 7
    raise UnframedExport


def _skip(data: bytes, p: int, end: int) -> tuple[int, int, int, int]:
    """The field at ``p``: its number, wire type, where its value starts, where the next field starts."""
    tag, p = _varint(data, p)
    number, wire = tag >> 3, tag & 7
    if wire == _LEN:
        size, p = _varint(data, p)
        after = p + size
    elif wire == _VARINT:
        _, after = _varint(data, p)
    elif wire == _I64:
        after = p + 8
    elif wire == _I32:
        after = p + 4
    else:
        raise UnframedExport
    if number == 0 or after > end:
        raise UnframedExport
    return number, wire, p, after


def _fields(data: bytes, p: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    while p < end:
        number, wire, at, p = _skip(data, p, end)
        yield number, wire, at, p


def _frame_spans(data: bytes, p: int, end: int, starts: array[int], ends: array[int]) -> None:
    """The spans of one ScopeSpans (field 2); the scope and anything else is skipped."""
    add_start, add_end = starts.append, ends.append
    while p < end:
        if data[p] == 0x12:  # field 2, LEN: a span (the hot loop: lengths under 16 KiB are read inline)
            size = data[p + 1]
            if size < 0x80:
                at = p + 2
            elif data[p + 2] < 0x80:
                size, at = (size & 0x7F) | (data[p + 2] << 7), p + 3
            else:
                size, at = _varint(data, p + 1)
            p = at + size
            if p > end:
                raise UnframedExport
            add_start(at)
            add_end(p)
        else:
            number, _, _, p = _skip(data, p, end)
            if number == 2:  # spans with another wire type
                raise UnframedExport


def _service_name(data: bytes, p: int, end: int) -> str:
    service: str | None = ""
    for number, wire, at, after in _fields(data, p, end):
        if number != 1:
            continue
        if wire != _LEN:
            raise UnframedExport
        key, value = b"", None
        for kv_number, kv_wire, kv_at, kv_after in _fields(data, at, after):
            if kv_number == _KEY and kv_wire == _LEN:
                key = data[kv_at:kv_after]
            elif kv_number == _VALUE and kv_wire == _LEN:
                value = (kv_at, kv_after)
        if key != b"service.name":
            continue
        service = None
        for value_number, value_wire, value_at, value_after in _fields(data, *value) if value else ():
            if value_number != _STRING or value_wire != _LEN:
                raise UnframedExport  # not a string: span_columns says what str() makes of it
            try:
                service = data[value_at:value_after].decode()
            except UnicodeDecodeError:
                raise UnframedExport from None
        if service is None:  # no value: span_columns says what str() makes of it
            raise UnframedExport
    return service


# --- a batch of exports, decoded in lockstep -------------------------------------------------------------


class _Fields(NamedTuple):
    """Fields read from many messages: one entry per field, in the order read (each message's in order)."""

    owner: np.ndarray  # the message's index
    number: np.ndarray
    wire: np.ndarray
    at: np.ndarray  # where the value starts: a LEN's bytes, a fixed value's bytes, a varint
    value: np.ndarray  # a LEN's byte length, a VARINT's value (uint64)


def _read_varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The varints at ``pos``: values (uint64) and lengths in bytes (0 for one longer than 10 bytes)."""
    byte = buf[pos]
    value = (byte & 0x7F).astype(np.uint64)
    length = np.ones(pos.shape, np.int64)
    more = np.flatnonzero(byte & 0x80)
    shift = 7
    while more.size:
        if shift > 63:
            length[more] = 0
            break
        byte = buf[pos[more] + length[more]]
        value[more] |= (byte & 0x7F).astype(np.uint64) << np.uint64(shift)
        length[more] += 1
        more = more[(byte & 0x80) != 0]
        shift += 7
    return value, length


_FIXED_SIZE = np.array([0, 8, 0, -1, -1, 4, -1, -1], np.int64)  # by wire type; -1: groups and invalid types


def _walk(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, wanted: set[int]) -> tuple[_Fields, np.ndarray]:
    """Read every field of the messages at ``starts``:``ends`` in lockstep; keep those numbered in ``wanted``.

    Returns the fields and, per message, whether its bytes are malformed (a truncated or overlong value, an
    invalid wire type or field number): a malformed message's fields up to the fault are still returned.
    """
    table = np.zeros(64, bool)
    table[list(wanted)] = True
    malformed = np.zeros(len(starts), bool)
    owner = np.flatnonzero(starts < ends)
    pos, end = starts[owner], ends[owner]
    found: list[tuple[np.ndarray, ...]] = []
    while owner.size:
        tag, tag_length = _read_varints(buf, pos)
        number = (tag >> np.uint64(3)).astype(np.int64)
        wire = (tag & np.uint64(7)).astype(np.int64)
        at = pos + tag_length
        value, value_length = _read_varints(buf, at)
        is_len, is_varint = wire == _LEN, wire == _VARINT
        length = np.minimum(value, np.uint64(1 << 40)).astype(np.int64)
        at = np.where(is_len, at + value_length, at)
        size = np.where(is_len, length, np.where(is_varint, value_length, _FIXED_SIZE[wire]))
        after = at + size
        invalid = (
            (size < 0) | (after > end) | (tag_length == 0) | (number == 0)
            | ((is_len | is_varint) & (value_length == 0))
        )  # fmt: skip
        keep = ~invalid & table[np.minimum(number, 63)] & (number < 63)
        found.append((owner[keep], number[keep], wire[keep], at[keep], value[keep]))
        malformed[owner[invalid]] = True
        going = ~invalid & (after < end)
        owner, pos, end = owner[going], after[going], end[going]
    if not found:
        empty = np.zeros(0, np.int64)
        return _Fields(empty, empty, empty, empty, empty.astype(np.uint64)), malformed
    return _Fields(*(np.concatenate(column) for column in zip(*found, strict=True))), malformed


def _one(fields: _Fields, count: int, number: int, wire: int, odd: np.ndarray) -> tuple[np.ndarray, ...]:
    """A singular field of ``count`` messages: present?, where, value. Marks in ``odd`` the messages that have
    it twice or with another wire type (protobuf's merge rules are left to opentelemetry-proto)."""
    chosen = np.flatnonzero(fields.number == number)
    right = fields.wire[chosen] == wire
    odd[fields.owner[chosen[~right]]] = True
    chosen = chosen[right]
    owner = fields.owner[chosen]
    times = np.bincount(owner, minlength=count)
    odd |= times > 1
    at = np.zeros(count, np.int64)
    value = np.zeros(count, np.uint64)
    at[owner] = fields.at[chosen]
    value[owner] = fields.value[chosen]
    return times > 0, at, value


def _gather(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes at each of ``at``, one row each (a fresh array)."""
    return np.lib.stride_tricks.sliding_window_view(buf, width)[at]


def _uint64(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(_gather(buf, at, 8)).view("<u8").ravel()


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    return None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _hex(buf: np.ndarray, at: np.ndarray, width: int, valid: np.ndarray | None = None) -> pa.Array:
    """Ids as lowercase hex strings (``width`` bytes each)."""
    digits = _gather(buf, at, width).tobytes().hex().encode()
    offsets = np.arange(len(at) + 1, dtype=np.int32) * (2 * width)
    return pa.Array.from_buffers(pa.string(), len(at), [_validity(valid), pa.py_buffer(offsets), pa.py_buffer(digits)])


# For a string of n bytes (n <= 12), which bits of the 3 inline words of its view it fills.
_INLINE_MASKS = np.array([[(1 << (8 * min(max(n - 4 * k, 0), 4))) - 1 for k in range(3)] for n in range(13)], np.uint32)


def _views(data: pa.Buffer, buf: np.ndarray, at: np.ndarray, length: np.ndarray) -> pa.Array:
    """The byte ranges as an Arrow binary-view array onto the data (no copy of the longer ones)."""
    # A view is 4 words: the length, then up to 12 bytes inline, or the first 4 bytes, buffer 0 and the offset.
    blocks = np.ndarray(shape=(len(buf) - 15,), dtype="V16", buffer=buf, strides=(1,))  # 16 bytes at every byte
    views = blocks[at].view("<u4").reshape(len(at), 4)  # a copy: the 16 bytes at each range, as 4 words
    views[:, 1:] = views[:, :3] & _INLINE_MASKS[np.minimum(length, 12)]
    views[:, 0] = length
    long = np.flatnonzero(length > 12)
    views[long, 2] = 0
    views[long, 3] = at[long]
    return pa.Array.from_buffers(pa.binary_view(), len(at), [None, pa.py_buffer(views), data])


def _utf8(binary: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Byte strings as a string array, and which are not valid UTF-8 (those come back empty)."""
    try:
        return binary.cast(pa.string()), np.zeros(len(binary), bool)
    except pa.ArrowInvalid:  # rare: find which (opentelemetry-proto will refuse their spans)
        values, invalid = [], np.zeros(len(binary), bool)
        for i, raw in enumerate(binary.to_pylist()):
            try:
                values.append(raw.decode())
            except UnicodeDecodeError:
                values.append("")
                invalid[i] = True
        return pa.array(values, pa.string()), invalid


def _strings(data: pa.Buffer, buf: np.ndarray, at: np.ndarray, length: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The byte ranges as a string array, and which are not valid UTF-8."""
    return _utf8(_views(data, buf, at, length))


def _key_values(buf: np.ndarray, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """KeyValue messages: where each key lies, its value's type (0 none, or _STRING, _BOOL, _INT), where a
    string value lies or the value, and which this path leaves to opentelemetry-proto or finds malformed.

    SDKs write a KeyValue as key then value, the value holding one field: read that layout for all at once,
    and walk the others field by field.
    """
    limit = len(buf) - _PAD
    key_length, key_varint = _read_varints(buf, at + 1)
    key_at = at + 1 + key_varint
    key_end = key_at + np.minimum(key_length, np.uint64(limit)).astype(np.int64)
    value_length, value_varint = _read_varints(buf, np.minimum(key_end + 1, limit))
    value_at = key_end + 1 + value_varint
    value_end = value_at + np.minimum(value_length, np.uint64(limit)).astype(np.int64)
    tag = buf[np.minimum(value_at, limit)]
    scalar, scalar_varint = _read_varints(buf, np.minimum(value_at + 1, limit))
    scalar_at = value_at + 1 + scalar_varint
    is_string, is_bool, is_int = tag == 0x0A, tag == 0x10, tag == 0x18
    string_end = scalar_at + np.minimum(scalar, np.uint64(limit)).astype(np.int64)
    canonical = (
        (buf[at] == 0x0A) & (key_varint > 0) & (key_end < end) & (buf[np.minimum(key_end, limit)] == 0x12)
        & (value_varint > 0) & (scalar_varint > 0) & (value_end == end) & (value_at < value_end)
        & ((is_string & (string_end == value_end)) | ((is_bool | is_int) & (scalar_at == value_end)))
    )  # fmt: skip
    value_type = np.where(is_string, _STRING, np.where(is_bool, _BOOL, _INT)) * canonical
    key_length = (key_end - key_at) * canonical
    odd = np.zeros(len(at), bool)
    other = np.flatnonzero(~canonical)
    if other.size:
        parts = _key_values_walked(buf, at[other], end[other])
        for column, part in zip((key_at, key_length, value_type, scalar_at, scalar, odd), parts, strict=True):
            column[other] = part
    return key_at, key_length, value_type, scalar_at, scalar, odd


def _key_values_walked(buf: np.ndarray, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """_key_values for any layout: the fields of each KeyValue, then of each AnyValue, in lockstep."""
    m = len(at)
    kv_fields, kv_malformed = _walk(buf, at, end, {_KEY, _VALUE})
    odd = kv_malformed.copy()
    _, key_at, key_length = _one(kv_fields, m, _KEY, _LEN, odd)
    has_value, value_at, value_length = _one(kv_fields, m, _VALUE, _LEN, odd)
    with_value = np.flatnonzero(has_value)
    value_end = value_at[with_value] + value_length[with_value].astype(np.int64)
    any_fields, any_malformed = _walk(buf, value_at[with_value], value_end, set(range(1, 8)))
    odd[with_value[any_malformed]] = True
    odd[with_value] |= np.bincount(any_fields.owner, minlength=len(with_value)) > 1
    target = with_value[any_fields.owner]
    handled = (any_fields.number <= _INT) & (any_fields.wire == np.where(any_fields.number == _STRING, _LEN, _VARINT))
    odd[target[~handled]] = True
    target = target[handled]
    value_type = np.zeros(m, np.int64)
    scalar_at = np.zeros(m, np.int64)
    scalar = np.zeros(m, np.uint64)
    value_type[target] = any_fields.number[handled]
    scalar_at[target] = any_fields.at[handled]
    scalar[target] = any_fields.value[handled]
    return key_at, key_length.astype(np.int64), value_type, scalar_at, scalar, odd


def _json_strings(strings: pa.Array) -> pa.Array:
    """Each string as json.dumps writes it: quoted, and escaped when it has a quote, a backslash, a control or a
    non-ASCII character (those few go through json.dumps itself)."""
    quoted = pc.binary_join_element_wise('"', strings, '"', "")
    strings = strings.combine_chunks() if isinstance(strings, pa.ChunkedArray) else strings
    escape = ~np.asarray(pc.fill_null(pc.ascii_is_printable(strings), True))
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[strings.offset : strings.offset + len(strings) + 1]
    data = np.frombuffer(strings.buffers()[2] or b"", np.uint8)[offsets[0] : offsets[-1]]
    marks = np.flatnonzero((data == 0x22) | (data == 0x5C)) + offsets[0]
    escape[np.searchsorted(offsets, marks, side="right") - 1] = True
    if not escape.any():
        return quoted
    dumped = [json.dumps(s) for s in strings.filter(pa.array(escape)).to_pylist()]
    return pc.replace_with_mask(quoted, pa.array(escape), pa.array(dumped, pa.string()))


def decode_exports(exports: Sequence[FramedExport]) -> DecodedSpans:
    """The spans of ``exports`` as one table (and when each row's export arrived)."""
    if not exports:
        return DecodedSpans(table=SPAN_SCHEMA.empty_table(), received=np.zeros(0), dropped=0)
    counts = np.array([e.spans for e in exports], np.int64)
    sizes = np.array([len(e.body) for e in exports], np.int64)
    base = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    if int(sizes.sum()) > _MAX_DATA:
        half = len(exports) // 2
        return _concat([decode_exports(exports[:half]), decode_exports(exports[half:])])
    raw = b"".join(e.body for e in exports) + bytes(_PAD)
    data, buf = pa.py_buffer(raw), np.frombuffer(raw, np.uint8)
    starts = np.concatenate([np.frombuffer(e.starts, np.int64) for e in exports] + [np.zeros(0, np.int64)])
    ends = np.concatenate([np.frombuffer(e.ends, np.int64) for e in exports] + [np.zeros(0, np.int64)])
    starts += np.repeat(base, counts)
    ends += np.repeat(base, counts)
    services = [s for e in exports for s in e.services]
    service_base = np.cumsum([0] + [len(e.services) for e in exports])[:-1]
    resource = np.concatenate([np.frombuffer(e.resource_of, np.int64) for e in exports] + [np.zeros(0, np.int64)])
    resource += np.repeat(np.asarray(service_base, np.int64), counts)
    received = np.repeat(np.array([e.received for e in exports], np.float64), counts)

    n = len(starts)
    odd = np.zeros(n, bool)  # decoded by opentelemetry-proto instead
    wanted = {_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND, _SPAN_START, _SPAN_END,
              _SPAN_ATTRIBUTES, _SPAN_STATUS}  # fmt: skip
    spans, malformed = _walk(buf, starts, ends, wanted)
    odd |= malformed
    has_trace, trace_at, trace_length = _one(spans, n, _SPAN_TRACE_ID, _LEN, odd)
    has_span, span_at, span_length = _one(spans, n, _SPAN_ID, _LEN, odd)
    has_parent, parent_at, parent_length = _one(spans, n, _SPAN_PARENT, _LEN, odd)
    _, name_at, name_length = _one(spans, n, _SPAN_NAME, _LEN, odd)
    _, _, kind = _one(spans, n, _SPAN_KIND, _VARINT, odd)
    has_start, start_at, _ = _one(spans, n, _SPAN_START, _I64, odd)
    has_end, end_at, _ = _one(spans, n, _SPAN_END, _I64, odd)
    has_status, status_at, status_length = _one(spans, n, _SPAN_STATUS, _LEN, odd)
    odd |= ~has_trace | (trace_length != 16) | ~has_span | (span_length != 8)
    odd |= has_parent & (parent_length != 0) & (parent_length != 8)

    status_code = np.zeros(n, np.uint64)
    with_status = np.flatnonzero(has_status)
    status_end = status_at[with_status] + status_length[with_status].astype(np.int64)
    status_fields, status_malformed = _walk(buf, status_at[with_status], status_end, {_STATUS_CODE})
    status_odd = status_malformed.copy()
    _, _, code = _one(status_fields, len(with_status), _STATUS_CODE, _VARINT, status_odd)
    status_code[with_status] = code
    odd[with_status[status_odd]] = True

    # Attributes, grouped by span in their order (the lockstep read them field by field across spans).
    chosen = np.flatnonzero(spans.number == _SPAN_ATTRIBUTES)
    chosen = chosen[np.argsort(spans.owner[chosen], kind="stable")]
    odd[spans.owner[chosen[spans.wire[chosen] != _LEN]]] = True
    kv_span, kv_at = spans.owner[chosen], spans.at[chosen]
    kv_end = kv_at + spans.value[chosen].astype(np.int64)
    key_at, key_length, value_type, scalar_at, scalar, kv_odd = _key_values(buf, kv_at, kv_end)
    m = len(kv_span)

    # Keys repeat: decode, look up and JSON-quote each distinct key once.
    keys = pc.dictionary_encode(_views(data, buf, key_at, key_length))
    key_index = np.asarray(keys.indices)
    distinct_ids, distinct_json, distinct_bad = [], [], []
    for key_bytes in keys.dictionary.to_pylist():
        try:
            key = key_bytes.decode()
        except UnicodeDecodeError:
            key = ""
        distinct_bad.append(not key and bool(key_bytes))
        distinct_ids.append(_PROMOTED_INDEX.get(key, -1))
        distinct_json.append(json.dumps(key))
    key_id = np.array([*distinct_ids, -1], np.int64)[key_index]
    kv_odd |= np.array([*distinct_bad, False], bool)[key_index]
    key_json = pa.array(distinct_json, pa.string()).take(keys.indices)
    kv_odd |= _repeated(kv_span * (len(distinct_ids) + 1) + key_index, n * (len(distinct_ids) + 1))
    is_string = value_type == _STRING
    text_at = np.where(is_string, scalar_at, 0)
    texts, bad_texts = _strings(data, buf, text_at, np.where(is_string, scalar, 0).astype(np.int64))
    kv_odd |= bad_texts

    # Promoted attributes: per column, the first of its keys that the span has (as span_columns pops them).
    promoted: dict[str, np.ndarray] = {}
    consumed = np.zeros(m, bool)
    first_key = 0
    for column, column_keys in PROMOTED_ATTRIBUTES.items():
        pick = np.full(n, -1, np.int64)
        for k in reversed(range(first_key, first_key + len(column_keys))):
            matches = np.flatnonzero(key_id == k)
            pick[kv_span[matches]] = matches
        first_key += len(column_keys)
        picked = pick[pick >= 0]
        consumed[picked] = True
        allowed = (value_type[picked] == _INT) if column in _INT_COLUMNS else (value_type[picked] != _BOOL)
        kv_odd[picked[~allowed & (value_type[picked] != 0)]] = True
        promoted[column] = pick
    odd[kv_span[kv_odd]] = True

    names, bad_names = _strings(data, buf, name_at, name_length.astype(np.int64))
    odd |= bad_names
    rows = np.flatnonzero(~odd)
    fast = _rows(
        buf, rows, trace_at, span_at, parent_at, has_parent & (parent_length == 8), names, kind, services,
        resource, has_start, start_at, has_end, end_at, status_code, promoted, key_json, texts, value_type, scalar,
        kv_span, consumed, odd,
    )  # fmt: skip
    slow, slow_rows, dropped = _decode_one_by_one(raw, np.flatnonzero(odd), starts, ends, services, resource)
    table = pa.concat_tables([fast, slow]) if slow.num_rows else fast
    return DecodedSpans(table=table, received=np.concatenate([received[rows], received[slow_rows]]), dropped=dropped)


def _repeated(codes: np.ndarray, limit: int) -> np.ndarray:
    """Which of ``codes`` (each below ``limit``) occur more than once: a key twice in one span's attributes,
    which span_columns' dict keeps once (the last value in the first place)."""
    if limit <= 8 * len(codes) + 4096:
        return np.bincount(codes, minlength=limit)[codes] > 1
    ordered = np.sort(codes)
    return np.isin(codes, ordered[1:][ordered[1:] == ordered[:-1]])


def _rows(
    buf: np.ndarray, rows: np.ndarray, trace_at: np.ndarray, span_at: np.ndarray, parent_at: np.ndarray,
    has_parent: np.ndarray, names: pa.Array, kind: np.ndarray, services: list[str], resource: np.ndarray,
    has_start: np.ndarray, start_at: np.ndarray, has_end: np.ndarray, end_at: np.ndarray, status_code: np.ndarray,
    promoted: dict[str, np.ndarray], key_json: pa.Array, texts: pa.Array, value_type: np.ndarray,
    scalar: np.ndarray, kv_span: np.ndarray, consumed: np.ndarray, odd: np.ndarray,
) -> pa.Table:  # fmt: skip
    """The table of the spans at ``rows`` (all of which this path handles)."""
    take = pa.array(rows)
    start = np.where(has_start[rows], _uint64(buf, start_at[rows]), 0).view(np.int64)
    end = np.where(has_end[rows], _uint64(buf, end_at[rows]), 0).view(np.int64)
    integers = scalar.view(np.int64)
    columns: dict[str, pa.Array] = {
        "trace_id": _hex(buf, trace_at[rows], 16),
        "span_id": _hex(buf, span_at[rows], 8),
        "parent_span_id": _hex(buf, parent_at[rows], 8, has_parent[rows]),
        "name": names.take(take),
        "kind": pa.array(SPAN_KINDS).take(pa.array(np.where(kind[rows] < len(SPAN_KINDS), kind[rows], 0))),
        "service": pa.array(services, pa.string()).take(pa.array(resource[rows])),
        "start_ns": pa.array(start),
        "end_ns": pa.array(end),
        "duration_ms": pa.array((end - start) / 1e6),
        "status": pa.array(STATUS_CODES).take(
            pa.array(np.where(status_code[rows] < len(STATUS_CODES), status_code[rows], 0))
        ),
    }
    for column, pick in promoted.items():
        chosen = pick[rows]
        present = chosen >= 0
        safe = np.where(present, chosen, 0)
        if not present.any():
            columns[column] = pa.nulls(len(rows), SPAN_SCHEMA.field(column).type)
        elif column in _INT_COLUMNS:
            columns[column] = pa.array(integers[safe], mask=~(present & (value_type[safe] == _INT)))
        else:
            kind_of = np.where(present, value_type[safe], 0)
            text = texts.take(pa.array(safe, mask=kind_of != _STRING))  # a masked index takes a null
            is_int = kind_of == _INT
            if is_int.any():  # an int where a string is expected: span_columns writes str(value)
                as_int = pa.array(integers[safe]).cast(pa.string())
                text = pc.if_else(pa.array(is_int), as_int, text)
            columns[column] = text
    columns["attributes"] = _attributes_json(rows, key_json, texts, value_type, integers, kv_span, consumed, odd)
    return pa.table(columns, schema=SPAN_SCHEMA)


def _attributes_json(
    rows: np.ndarray, key_json: pa.Array, texts: pa.Array, value_type: np.ndarray, integers: np.ndarray,
    kv_span: np.ndarray, consumed: np.ndarray, odd: np.ndarray,
) -> pa.Array:  # fmt: skip
    """The attributes not promoted to a column, as json.dumps writes the dict span_columns keeps."""
    rest = np.flatnonzero(~consumed & ~odd[kv_span])
    kinds = value_type[rest]
    strings = np.flatnonzero(kinds == _STRING)
    ints = np.flatnonzero(kinds == _INT)
    bools = np.flatnonzero(kinds == _BOOL)
    nones = np.flatnonzero(kinds == 0)
    # One array of every JSON value, then taken in the attributes' order.
    pool = pa.concat_arrays(
        [
            _json_strings(texts.take(pa.array(rest[strings]))),
            pa.array(integers[rest[ints]]).cast(pa.string()),
            pa.array(np.where(integers[rest[bools]] != 0, "true", "false"), pa.string()),
            pa.array(["null"] * len(nones), pa.string()),
        ]
    )
    position = np.empty(len(rest), np.int64)
    offset = 0
    for group in (strings, ints, bools, nones):
        position[group] = np.arange(offset, offset + len(group))
        offset += len(group)
    values = pool.take(pa.array(position))
    pairs = pc.binary_join_element_wise(key_json.take(pa.array(rest)), values, ": ")
    # Spans are rows in order and attributes are grouped by span, so each row's pairs are a contiguous run.
    row_of_span = np.full(len(odd), -1, np.int64)
    row_of_span[rows] = np.arange(len(rows))
    per_row = np.bincount(row_of_span[kv_span[rest]], minlength=len(rows))
    offsets = np.concatenate([[0], np.cumsum(per_row)]).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pairs), ", ")
    wrapped = pc.binary_join_element_wise("{", joined, "}", "")
    return pc.if_else(pa.array(per_row > 0), wrapped, pa.scalar(None, pa.string()))


def _decode_one_by_one(
    raw: bytes, spans: np.ndarray, starts: np.ndarray, ends: np.ndarray, services: list[str], resource: np.ndarray
) -> tuple[pa.Table, np.ndarray, int]:
    """The spans this path does not handle, decoded by span_columns' code; those it cannot parse are dropped."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    columns: dict[str, list[Any]] = empty_columns()
    kept: list[int] = []
    for i in spans.tolist():
        try:
            span = Span.FromString(raw[starts[i] : ends[i]])
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
