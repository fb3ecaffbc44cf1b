"""OTLP's protobuf wire format read by compiled loops (numba): where each span lies in an export, what each
span holds, and the text its columns keep, written straight into Arrow-shaped buffers.

Everything here works on byte arrays (``np.uint8``) and integer arrays, never on Python objects, so numba
compiles it to machine code; the compiled code is cached on disk beside this module (``cache=True``), so only
the first run after an install or a change of this file pays the compilation (a few seconds). Callers turn
the arrays into Arrow columns (ratchet.traces.columnar). A span this code does not handle itself is only
marked (``SpanFields.odd``): what to do with it is the caller's decision.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Field numbers (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto).
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND = 1, 2, 4, 5, 6
_SPAN_START, _SPAN_END, _SPAN_ATTRIBUTES, _SPAN_STATUS = 7, 8, 9, 15
_STATUS_CODE = 3
_SINGULAR = sum(1 << n for n in (_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND, _SPAN_START,
                                  _SPAN_END, _SPAN_STATUS))  # fmt: skip
_KV_KEY, _KV_VALUE = 1, 2

# An attribute value's type: AnyValue's oneof numbers for the three this code handles (4 double, 5 array,
# 6 map and 7 bytes are not), 0 for no value.
NONE, STRING, BOOL, INT = 0, 1, 2, 3
KINDS, STATUSES = 6, 3  # SPAN_KINDS and STATUS_CODES: a value past them reads as the first

# Columns of Spans.numbers.
START, END, KIND, STATUS, HAS_PARENT = range(5)
_NUMBERS = 5
# Text columns of Spans; promoted column c is TEXTS + c.
NAME_TEXT, JSON_TEXT, TEXTS = 0, 1, 2

# What one span's walk records: its fields (where they lie) …
_TRACE_AT, _SPAN_AT, _PARENT_AT, _HAS_PARENT, _NAME_AT, _NAME_LENGTH, _KIND, _START, _END, _STATUS = range(10)
_SPAN_COLUMNS = 10
# … and per attribute: VALUE is a string's length, an int's value or a bool's 0/1; *_JSON the length of the
# text json.dumps writes for the key (quoted) and the value; _CONSUMED whether a column took the attribute.
_KEY_AT, _KEY_LENGTH, _KEY_JSON, _TYPE, _VALUE_AT, _VALUE, _VALUE_JSON, _CONSUMED, _HASH, _SLOT = range(10)
_ATTRIBUTE_COLUMNS = 10

# How many more characters json.dumps (ensure_ascii) writes for an ASCII byte than the byte: 1 for \" \\ \b
# \t \n \f \r, 5 for the other control characters (\u00XX); -1 for a byte of a multi-byte character.
_JSON_EXTRA = np.array(
    [5] * 32 + [0] * 95 + [5] + [-1] * 128, np.int64
)  # fmt: skip
_JSON_EXTRA[[0x22, 0x5C, 0x08, 0x09, 0x0A, 0x0C, 0x0D]] = 1
_SERVICE_NAME = np.frombuffer(b"service.name", np.uint8)
_FNV_OFFSET, _FNV_PRIME = 0xCBF29CE484222325, 0x100000001B3


class Frame(NamedTuple):
    """Where each span of one export lies (``frame``)."""

    ok: bool
    """False when the export is not laid out as ``frame`` reads it (the other fields are then empty)."""
    starts: np.ndarray
    """Offset of each span's bytes."""
    ends: np.ndarray
    resource_of: np.ndarray
    """For each span, its ResourceSpans' position."""
    service_at: np.ndarray
    """Per ResourceSpans, where its service.name string lies …"""
    service_length: np.ndarray
    """… and its length in bytes; -1 when it has none (the service is "")."""


class Spans(NamedTuple):
    """What ``decode_spans`` made of every span: a row each, in the order of the spans."""

    odd: np.ndarray
    """Per span: left to the caller (malformed, or a case this code does not handle); its row is empty."""
    trace_ids: np.ndarray
    """32 hex digits per span (uint8) …"""
    span_ids: np.ndarray
    """… 16 …"""
    parent_ids: np.ndarray
    """… and 16 (meaningless where the span has no parent: numbers[HAS_PARENT] says)."""
    numbers: np.ndarray
    """Per span, int64 columns START, END, KIND, STATUS (both mapped into range), HAS_PARENT."""
    integers: np.ndarray
    """Per span and promoted column, its value if the column holds integers (else 0)."""
    text: np.ndarray
    """The data of every text column (uint8): column t's in ``text[region[t]:region[t + 1]]``; t is
    NAME_TEXT, JSON_TEXT (the attributes no column took), or TEXTS + c for promoted column c (empty if it
    holds integers)."""
    region: np.ndarray
    offsets: np.ndarray
    """Per text column, Arrow's offsets (int64, into its region)."""
    valid: np.ndarray
    """Per text column or promoted column (TEXTS + c), per span: whether it has a value."""


class PromotedKeys(NamedTuple):
    """The attribute keys that fill columns, in the arrays the compiled code reads."""

    data: np.ndarray
    """Every key's UTF-8 bytes, one after the other."""
    offsets: np.ndarray
    """Key k is ``data[offsets[k]:offsets[k + 1]]``."""
    by_hash: np.ndarray
    """The key (k) whose FNV-1a hash ends in i's bits is ``by_hash[i]``, -1 none (a power of 2 long, so
    that no two keys share a place)."""
    column: np.ndarray
    """Key k fills column ``column[k]`` …"""
    rank: np.ndarray
    """… unless a key of lower rank for the same column is there too."""
    numeric: np.ndarray
    """Per column: whether it holds integers (else strings)."""


def _fnv(key: bytes) -> int:
    h = _FNV_OFFSET
    for byte in key:
        h = ((h ^ byte) * _FNV_PRIME) % 2**64
    return h - 2**64 if h >= 2**63 else h


def promoted_keys(columns: dict[str, tuple[str, ...]], numeric: set[str]) -> PromotedKeys:
    """The compiled form of PROMOTED_ATTRIBUTES (column → its keys, preferred first)."""
    keys = [(c, r, key.encode()) for c, keys in enumerate(columns.values()) for r, key in enumerate(keys)]
    size = 16
    while len({_fnv(k) & (size - 1) for _, _, k in keys}) < len(keys):
        size *= 2
    by_hash = np.full(size, -1, np.int8)
    for k, (_, _, key) in enumerate(keys):
        by_hash[_fnv(key) & (size - 1)] = k
    return PromotedKeys(
        data=np.frombuffer(b"".join(k for _, _, k in keys) or b"\0", np.uint8),
        offsets=np.cumsum([0] + [len(k) for _, _, k in keys]).astype(np.int64),
        by_hash=by_hash,
        column=np.array([c for c, _, _ in keys], np.int64),
        rank=np.array([r for _, r, _ in keys], np.int64),
        numeric=np.array([name in numeric for name in columns], np.bool_),
    )


# --- reading the wire format ----------------------------------------------------------------------------
# The small readers are inlined into their callers (numba's inline="always"): called for every field of every
# span, a call each would cost more than the reading.


@njit(cache=True, inline="always")
def _varint(buf: np.ndarray, p: int, end: int) -> tuple[np.uint64, int]:
    """The varint at ``p`` and where it ends; -1 when it runs past ``end`` or over 10 bytes. Bits past the
    64th are dropped, as protobuf's own parser drops them."""
    if p < end and buf[p] < 0x80:
        return np.uint64(buf[p]), p + 1
    value = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if p >= end:
            return value, -1
        byte = buf[p]
        p += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, p
        shift += np.uint64(7)
    return value, -1


@njit(cache=True, inline="always")
def _field(buf: np.ndarray, p: int, end: int) -> tuple[int, int, int, np.uint64, int]:
    """The field at ``p``: number, wire type, where its value starts, the value (a VARINT's, a LEN's length),
    and where the next field starts; that is -1 when the field is malformed (truncated, overlong, an invalid
    wire type or field number)."""
    tag, p = _varint(buf, p, end)
    if p < 0:
        return 0, 0, 0, np.uint64(0), -1
    number = np.int64(tag >> np.uint64(3))
    wire = np.int64(tag & np.uint64(7))
    if number == 0:
        return 0, 0, 0, np.uint64(0), -1
    if wire == _VARINT:
        value, after = _varint(buf, p, end)
        return number, wire, p, value, after
    if wire == _LEN:
        length, at = _varint(buf, p, end)
        if at < 0 or length > np.uint64(end - at):
            return 0, 0, 0, np.uint64(0), -1
        return number, wire, at, length, at + np.int64(length)
    size = 8 if wire == _I64 else 4 if wire == _I32 else -1
    if size < 0 or p + size > end:
        return 0, 0, 0, np.uint64(0), -1
    return number, wire, p, np.uint64(0), p + size


@njit(cache=True, inline="always")
def _fixed64(buf: np.ndarray, at: int) -> int:
    value = np.uint64(0)
    for k in range(8):
        value |= np.uint64(buf[at + k]) << np.uint64(8 * k)
    return np.int64(value)


@njit(cache=True, inline="always")
def _json_length(buf: np.ndarray, at: int, length: int) -> tuple[int, int]:
    """The length of the bytes as json.dumps writes them as a string (quoted, escaped as ASCII), or -1 when
    they are not valid UTF-8 (as Python's ``bytes.decode`` judges it); and their FNV-1a hash, to find a key
    among others without comparing every pair's bytes."""
    size = length + 2
    h = np.uint64(_FNV_OFFSET)
    p, end = at, at + length
    while p < end:
        b = buf[p]
        h = (h ^ np.uint64(b)) * np.uint64(_FNV_PRIME)
        extra = _JSON_EXTRA[b]
        if extra >= 0:
            size += extra
            p += 1
            continue
        if b < 0xC2 or b > 0xF4:
            return -1, 0
        if b < 0xE0:
            width, low, high = 2, 0x80, 0xBF
        elif b < 0xF0:
            width = 3
            low = 0xA0 if b == 0xE0 else 0x80
            high = 0x9F if b == 0xED else 0xBF
        else:
            width = 4
            low = 0x90 if b == 0xF0 else 0x80
            high = 0x8F if b == 0xF4 else 0xBF
        if p + width > end or buf[p + 1] < low or buf[p + 1] > high:
            return -1, 0
        for k in range(1, width):
            if k > 1 and (buf[p + k] < 0x80 or buf[p + k] > 0xBF):
                return -1, 0
            h = (h ^ np.uint64(buf[p + k])) * np.uint64(_FNV_PRIME)
        size += 12 - 4 if width == 4 else 6 - width  # \uXXXX, or a surrogate pair past the BMP
        p += width
    return size, np.int64(h)


@njit(cache=True, inline="always")
def _digits(value: int) -> int:
    """How many characters ``str(value)`` has."""
    size = 1
    if value < 0:
        size += 1
        magnitude = np.uint64(-(value + 1)) + np.uint64(1)
    else:
        magnitude = np.uint64(value)
    while magnitude >= np.uint64(10):
        magnitude //= np.uint64(10)
        size += 1
    return size


@njit(cache=True, inline="always")
def _same_bytes(a: np.ndarray, a_at: int, b: np.ndarray, b_at: int, length: int) -> bool:
    for k in range(length):  # noqa: SIM110 (numba compiles no generator expression)
        if a[a_at + k] != b[b_at + k]:
            return False
    return True


@njit(cache=True)
def _grow(table: np.ndarray, rows: int) -> np.ndarray:
    """``table`` with room for ``rows`` rows at least (a copy twice as large when it has too few)."""
    if rows <= table.shape[0]:
        return table
    bigger = np.empty((max(rows, 2 * table.shape[0]), table.shape[1]), table.dtype)
    bigger[: table.shape[0]] = table
    return bigger


# --- an export, framed ------------------------------------------------------------------------------------


@njit(cache=True)
def _service_name(buf: np.ndarray, p: int, end: int) -> tuple[bool, int, int]:
    """A Resource's service.name: handled?, where the string lies and its length (-1: no such attribute).
    Not handled: a service.name that is not a string, or not UTF-8 (span_columns says what str() makes of
    it), or a malformed Resource."""
    service_at, service_length = 0, -1
    while p < end:
        number, wire, at, _, after = _field(buf, p, end)
        if after < 0 or (number == 1 and wire != _LEN):
            return False, 0, 0
        if number == 1:  # an attribute: its key and value as the last of each that it has (protobuf's rule)
            key_at = key_length = value_at = 0
            value_end = -1
            q = at
            while q < after:
                kv_number, kv_wire, kv_at, _, kv_after = _field(buf, q, after)
                if kv_after < 0:
                    return False, 0, 0
                if kv_number == _KV_KEY and kv_wire == _LEN:
                    key_at, key_length = kv_at, kv_after - kv_at
                elif kv_number == _KV_VALUE and kv_wire == _LEN:
                    value_at, value_end = kv_at, kv_after
                q = kv_after
            if key_length == len(_SERVICE_NAME) and _same_bytes(buf, key_at, _SERVICE_NAME, 0, key_length):
                found = False
                q = value_at
                while q < value_end:
                    v_number, v_wire, v_at, _, v_after = _field(buf, q, value_end)
                    if v_after < 0 or v_number != STRING or v_wire != _LEN:
                        return False, 0, 0
                    found, service_at, service_length = True, v_at, v_after - v_at
                    q = v_after
                if not found or _json_length(buf, service_at, service_length)[0] < 0:
                    return False, 0, 0
        p = after
    return True, service_at, service_length


@njit(cache=True)
def frame(buf: np.ndarray) -> Frame:
    """Where each span of an ``ExportTraceServiceRequest`` lies, and each ResourceSpans' service."""
    empty = np.zeros(0, np.int64)
    failed = Frame(False, empty, empty, empty, empty, empty)
    spans = np.empty((64, 3), np.int64)  # start, end, resource
    services = np.empty((4, 2), np.int64)  # at, length
    count = resources = 0
    p, n = 0, len(buf)
    while p < n:
        number, wire, at, _, after = _field(buf, p, n)
        if after < 0 or (number == 1 and wire != _LEN):
            return failed
        if number == 1:  # a ResourceSpans
            service_at, service_length = 0, -1
            q = at
            while q < after:
                inner, inner_wire, inner_at, _, inner_after = _field(buf, q, after)
                if inner_after < 0 or ((inner == 1 or inner == 2) and inner_wire != _LEN):
                    return failed
                if inner == 1:  # its Resource
                    handled, service_at, service_length = _service_name(buf, inner_at, inner_after)
                    if not handled:
                        return failed
                elif inner == 2:  # a ScopeSpans: its spans (field 2; the hot loop) and the rest skipped
                    r = inner_at
                    while r < inner_after:
                        if buf[r] == 0x12:
                            size, span_at = _varint(buf, r + 1, inner_after)
                            if span_at < 0 or size > np.uint64(inner_after - span_at):
                                return failed
                            r = span_at + np.int64(size)
                            spans = _grow(spans, count + 1)
                            spans[count, 0], spans[count, 1], spans[count, 2] = span_at, r, resources
                            count += 1
                        else:
                            scope_number, _, _, _, r = _field(buf, r, inner_after)
                            if r < 0 or scope_number == 2:  # malformed, or spans with another wire type
                                return failed
                q = inner_after
            services = _grow(services, resources + 1)
            services[resources, 0], services[resources, 1] = service_at, service_length
            resources += 1
        p = after
    return Frame(
        True, spans[:count, 0].copy(), spans[:count, 1].copy(), spans[:count, 2].copy(),
        services[:resources, 0].copy(), services[:resources, 1].copy(),
    )  # fmt: skip


# --- spans ------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _attribute(buf: np.ndarray, at: int, end: int, table: np.ndarray, r: int, keys: PromotedKeys) -> bool:
    """One KeyValue into row ``r`` of ``table``; False when this code does not handle it."""
    key_at = key_length = 0
    has_key = has_value = False
    value_at = value_end = 0
    p = at
    # SDKs write the key, then the value holding one field: read that layout (with lengths under 128) at once.
    if end - at >= 4 and buf[at] == 0x0A and buf[at + 1] < 0x80:
        q = at + 2 + np.int64(buf[at + 1])
        if q + 2 <= end and buf[q] == 0x12 and buf[q + 1] < 0x80 and q + 2 + np.int64(buf[q + 1]) == end:
            has_key, key_at, key_length = True, at + 2, q - at - 2
            has_value, value_at, value_end = True, q + 2, end
            p = end
    while p < end:
        number, wire, field_at, _, after = _field(buf, p, end)
        if after < 0:
            return False
        if number == _KV_KEY:
            if wire != _LEN or has_key:
                return False
            has_key, key_at, key_length = True, field_at, after - field_at
        elif number == _KV_VALUE:
            if wire != _LEN or has_value:
                return False
            has_value, value_at, value_end = True, field_at, after
        p = after
    kind, scalar_at, scalar = NONE, 0, 0
    p, fields = value_at, 0
    if (
        value_end - value_at >= 2 and buf[value_at] == 0x0A and buf[value_at + 1] < 0x80
        and value_at + 2 + np.int64(buf[value_at + 1]) == value_end
    ):  # fmt: skip
        kind, scalar_at, scalar = STRING, value_at + 2, value_end - value_at - 2  # a short string (the most common)
        p = value_end
    while has_value and p < value_end:
        number, wire, field_at, value, after = _field(buf, p, value_end)
        if after < 0:
            return False
        if 1 <= number <= 7:  # AnyValue's oneof; later numbers are fields it does not know (skipped)
            fields += 1
            if fields > 1:
                return False
            if number == STRING and wire == _LEN:
                kind, scalar_at, scalar = STRING, field_at, after - field_at
            elif number == BOOL and wire == _VARINT:
                kind, scalar = BOOL, 1 if value != np.uint64(0) else 0
            elif number == INT and wire == _VARINT:
                kind, scalar = INT, np.int64(value)
            else:
                return False
        p = after
    key_json, h = _json_length(buf, key_at, key_length)
    if key_json < 0:
        return False
    if kind == STRING:
        value_json = _json_length(buf, scalar_at, scalar)[0]
        if value_json < 0:
            return False
    elif kind == INT:
        value_json = _digits(scalar)
    elif kind == BOOL:
        value_json = 4 if scalar else 5
    else:
        value_json = 4
    slot = keys.by_hash[h & (len(keys.by_hash) - 1)]
    if slot >= 0:
        start = keys.offsets[slot]
        if keys.offsets[slot + 1] - start != key_length or not _same_bytes(buf, key_at, keys.data, start, key_length):
            slot = -1
    table[r, _KEY_AT], table[r, _KEY_LENGTH], table[r, _KEY_JSON], table[r, _TYPE] = key_at, key_length, key_json, kind
    table[r, _VALUE_AT], table[r, _VALUE], table[r, _VALUE_JSON] = scalar_at, scalar, value_json
    table[r, _CONSUMED], table[r, _HASH], table[r, _SLOT] = 0, h, slot
    return True


@njit(cache=True, inline="always")
def _status(buf: np.ndarray, at: int, end: int) -> int:
    """A Status message's code, or -1 when this code does not handle it."""
    code = np.uint64(0)
    seen = False
    p = at
    while p < end:
        number, wire, _, value, after = _field(buf, p, end)
        if after < 0:
            return -1
        if number == _STATUS_CODE:
            if wire != _VARINT or seen:
                return -1
            seen, code = True, value
        p = after
    return np.int64(code) if code < np.uint64(STATUSES) else 0


@njit(cache=True, inline="always")
def _span(
    buf: np.ndarray, p: int, end: int, spans: np.ndarray, i: int, attributes: np.ndarray, first: int,
    picks: np.ndarray, keys: PromotedKeys,
) -> int:  # fmt: skip
    """Span ``i`` into row ``i`` of ``spans`` and ``picks``, its attributes into ``attributes`` from row
    ``first`` on (which has room for them all); returns where its attributes end, or -1 when this code does
    not handle the span."""
    seen = 0  # a bit per singular field number
    trace_length = span_length = parent_length = -1
    status_at = status_end = -1
    m = first
    while p < end:
        number, wire, at, value, after = _field(buf, p, end)
        if after < 0:
            return -1
        if number == _SPAN_ATTRIBUTES:
            if wire != _LEN or not _attribute(buf, at, after, attributes, m, keys):
                return -1
            h, length, key_at = attributes[m, _HASH], attributes[m, _KEY_LENGTH], attributes[m, _KEY_AT]
            for j in range(first, m):  # a key twice: span_columns' dict keeps the last value in the first place
                if (
                    attributes[j, _HASH] == h
                    and attributes[j, _KEY_LENGTH] == length
                    and _same_bytes(buf, attributes[j, _KEY_AT], buf, key_at, length)
                ):
                    return -1
            slot = attributes[m, _SLOT]
            if slot >= 0:  # the column takes the first of its keys in its order, wherever the span has it
                column = keys.column[slot]
                chosen = picks[i, column]
                if chosen < 0 or keys.rank[slot] < keys.rank[attributes[chosen, _SLOT]]:
                    picks[i, column] = m
            m += 1
        elif number < 16 and (np.int64(1) << number) & _SINGULAR:
            bit = np.int64(1) << number
            expected = _VARINT if number == _SPAN_KIND else _I64 if number in (_SPAN_START, _SPAN_END) else _LEN
            if wire != expected or seen & bit:
                return -1
            seen |= bit
            if number == _SPAN_TRACE_ID:
                spans[i, _TRACE_AT], trace_length = at, after - at
            elif number == _SPAN_ID:
                spans[i, _SPAN_AT], span_length = at, after - at
            elif number == _SPAN_PARENT:
                spans[i, _PARENT_AT], parent_length = at, after - at
            elif number == _SPAN_NAME:
                spans[i, _NAME_AT], spans[i, _NAME_LENGTH] = at, after - at
            elif number == _SPAN_KIND:
                spans[i, _KIND] = np.int64(value) if value < np.uint64(KINDS) else 0
            elif number == _SPAN_START:
                spans[i, _START] = _fixed64(buf, at)
            elif number == _SPAN_END:
                spans[i, _END] = _fixed64(buf, at)
            else:
                status_at, status_end = at, after
        p = after
    if trace_length != 16 or span_length != 8 or (parent_length > 0 and parent_length != 8):
        return -1
    spans[i, _HAS_PARENT] = 1 if parent_length == 8 else 0
    if status_at >= 0:
        spans[i, _STATUS] = _status(buf, status_at, status_end)
        if spans[i, _STATUS] < 0:
            return -1
    if _json_length(buf, spans[i, _NAME_AT], spans[i, _NAME_LENGTH])[0] < 0:
        return -1
    for column in range(picks.shape[1]):
        chosen = picks[i, column]
        if chosen < 0:
            continue
        kind = attributes[chosen, _TYPE]
        if (kind != NONE and kind != INT) if keys.numeric[column] else kind == BOOL:
            return -1  # span_columns' int() or str() of it: left to that code
        attributes[chosen, _CONSUMED] = 1
    return m


# --- text columns -------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _copy(buf: np.ndarray, at: int, length: int, out: np.ndarray, o: int) -> int:
    for k in range(length):
        out[o + k] = buf[at + k]
    return o + length


@njit(cache=True, inline="always")
def _write_digits(value: int, out: np.ndarray, o: int) -> int:
    size = _digits(value)
    if value < 0:
        out[o] = 0x2D
        magnitude = np.uint64(-(value + 1)) + np.uint64(1)
    else:
        magnitude = np.uint64(value)
    for k in range(o + size - 1, o + (1 if value < 0 else 0) - 1, -1):
        out[k] = 0x30 + np.int64(magnitude % np.uint64(10))
        magnitude //= np.uint64(10)
    return o + size


_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_TRUE = np.frombuffer(b"true", np.uint8)
_FALSE = np.frombuffer(b"false", np.uint8)
_NULL = np.frombuffer(b"null", np.uint8)


@njit(cache=True, inline="always")
def _write_escape(code: int, out: np.ndarray, o: int) -> int:
    out[o], out[o + 1] = 0x5C, 0x75  # \u
    for k in range(4):
        out[o + 2 + k] = _HEX[(code >> (12 - 4 * k)) & 0xF]
    return o + 6


@njit(cache=True)
def _write_json_string(buf: np.ndarray, at: int, length: int, json_length: int, out: np.ndarray, o: int) -> int:
    """The (valid UTF-8) bytes as json.dumps writes a string; returns where the text ends."""
    out[o] = 0x22
    o += 1
    if json_length == length + 2:  # nothing to escape (most strings)
        o = _copy(buf, at, length, out, o)
        out[o] = 0x22
        return o + 1
    p, end = at, at + length
    while p < end:
        b = np.int64(buf[p])
        if b < 0x80:
            extra = _JSON_EXTRA[b]
            if extra == 0:
                out[o] = b
                o += 1
            elif extra == 1:
                out[o] = 0x5C
                out[o + 1] = 0x62 if b == 0x08 else 0x74 if b == 0x09 else 0x6E if b == 0x0A else (
                    0x66 if b == 0x0C else 0x72 if b == 0x0D else b)  # fmt: skip
                o += 2
            else:
                o = _write_escape(b, out, o)
            p += 1
            continue
        if b < 0xE0:
            code, width = b & 0x1F, 2
        elif b < 0xF0:
            code, width = b & 0x0F, 3
        else:
            code, width = b & 0x07, 4
        for k in range(1, width):
            code = (code << 6) | (np.int64(buf[p + k]) & 0x3F)
        p += width
        if code < 0x10000:
            o = _write_escape(code, out, o)
        else:
            code -= 0x10000
            o = _write_escape(0xD800 | (code >> 10), out, o)
            o = _write_escape(0xDC00 | (code & 0x3FF), out, o)
    out[o] = 0x22
    return o + 1


@njit(cache=True, inline="always")
def _write_text(buf: np.ndarray, kind: int, at: int, value: int, out: np.ndarray, o: int) -> int:
    """A column's text for an attribute value: a string as it is, an int as ``str()`` writes it."""
    return _copy(buf, at, value, out, o) if kind == STRING else _write_digits(value, out, o)


@njit(cache=True, inline="always")
def _write_hex(buf: np.ndarray, at: int, width: int, out: np.ndarray, o: int) -> None:
    for k in range(at, at + width):
        out[o], out[o + 1] = _HEX[buf[k] >> 4], _HEX[buf[k] & 0xF]
        o += 2


@njit(cache=True, inline="always")
def _write_attributes(buf: np.ndarray, attributes: np.ndarray, count: int, out: np.ndarray, o: int) -> int:
    """The attributes no column consumed, as ``json.dumps`` writes their dict; nothing when there are none."""
    start = o
    for j in range(count):
        if attributes[j, _CONSUMED]:
            continue
        if o == start:
            out[o] = 0x7B  # {
            o += 1
        else:
            out[o], out[o + 1] = 0x2C, 0x20  # ", "
            o += 2
        o = _write_json_string(
            buf, attributes[j, _KEY_AT], attributes[j, _KEY_LENGTH], attributes[j, _KEY_JSON], out, o
        )
        out[o], out[o + 1] = 0x3A, 0x20  # ": "
        o += 2
        kind = attributes[j, _TYPE]
        if kind == STRING:
            o = _write_json_string(
                buf, attributes[j, _VALUE_AT], attributes[j, _VALUE], attributes[j, _VALUE_JSON], out, o
            )
        elif kind == INT:
            o = _write_digits(attributes[j, _VALUE], out, o)
        else:
            word = _NULL if kind == NONE else _TRUE if attributes[j, _VALUE] else _FALSE
            o = _copy(word, 0, len(word), out, o)
    if o > start:
        out[o] = 0x7D  # }
        o += 1
    return o


@njit(cache=True, nogil=True)
def decode_spans(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: PromotedKeys) -> Spans:
    """Every span at ``starts``:``ends`` of ``buf``, read once and written into its columns' buffers."""
    n, columns = len(starts), len(keys.numeric)
    odd = np.zeros(n, np.bool_)
    trace_ids = np.empty(32 * n, np.uint8)
    span_ids = np.empty(16 * n, np.uint8)
    parent_ids = np.empty(16 * n, np.uint8)
    numbers = np.zeros((n, _NUMBERS), np.int64)
    integers = np.zeros((n, columns), np.int64)
    # Text columns: each in its own region of one buffer, as large as its text could be (pages never written
    # are never backed by memory): a name or a promoted string is in the span's bytes, an int takes 20
    # characters at most, and JSON escapes take 6 characters per byte at most.
    total = 0
    for i in range(n):
        total += ends[i] - starts[i]
    region = np.zeros(TEXTS + columns + 1, np.int64)
    region[NAME_TEXT + 1] = total
    region[JSON_TEXT + 1] = region[JSON_TEXT] + 6 * total + 2 * n
    for c in range(columns):
        t = TEXTS + c
        region[t + 1] = region[t] + (0 if keys.numeric[c] else total + 20 * n)
    text = np.empty(region[-1], np.uint8)
    cursor = region[:-1].copy()
    offsets = np.zeros((len(region) - 1, n + 1), np.int64)
    valid = np.zeros((len(region) - 1, n), np.bool_)

    span = np.zeros((1, _SPAN_COLUMNS), np.int64)
    picks = np.empty((1, columns), np.int64)
    attributes = np.empty((64, _ATTRIBUTE_COLUMNS), np.int64)
    for i in range(n):
        # An attribute takes 2 bytes at least: room for as many as the span could hold.
        attributes = _grow(attributes, (ends[i] - starts[i]) // 2 + 1)
        span[0] = 0
        picks[0] = -1
        count = _span(buf, starts[i], ends[i], span, 0, attributes, 0, picks, keys)
        if count < 0:
            odd[i] = True
            trace_ids[32 * i : 32 * i + 32] = 0x30
            span_ids[16 * i : 16 * i + 16] = 0x30
            parent_ids[16 * i : 16 * i + 16] = 0x30
        else:
            _write_hex(buf, span[0, _TRACE_AT], 16, trace_ids, 32 * i)
            _write_hex(buf, span[0, _SPAN_AT], 8, span_ids, 16 * i)
            _write_hex(buf, span[0, _PARENT_AT], 8, parent_ids, 16 * i)
            numbers[i, START], numbers[i, END] = span[0, _START], span[0, _END]
            numbers[i, KIND], numbers[i, STATUS], numbers[i, HAS_PARENT] = (
                span[0, _KIND],
                span[0, _STATUS],
                span[0, _HAS_PARENT],
            )
            cursor[NAME_TEXT] = _copy(buf, span[0, _NAME_AT], span[0, _NAME_LENGTH], text, cursor[NAME_TEXT])
            valid[NAME_TEXT, i] = True
            after = _write_attributes(buf, attributes, count, text, cursor[JSON_TEXT])
            valid[JSON_TEXT, i] = after > cursor[JSON_TEXT]
            cursor[JSON_TEXT] = after
            for c in range(columns):
                j = picks[0, c]
                kind = attributes[j, _TYPE] if j >= 0 else NONE
                if keys.numeric[c]:
                    integers[i, c] = attributes[j, _VALUE] if kind == INT else 0
                    valid[TEXTS + c, i] = kind == INT
                elif kind != NONE:
                    t = TEXTS + c
                    cursor[t] = _write_text(buf, kind, attributes[j, _VALUE_AT], attributes[j, _VALUE], text, cursor[t])
                    valid[t, i] = True
        for t in range(len(region) - 1):
            offsets[t, i + 1] = cursor[t] - region[t]
    return Spans(odd, trace_ids, span_ids, parent_ids, numbers, integers, text, region, offsets, valid)
