"""OTLP's protobuf wire format read by compiled loops (numba): where each span lies in an export, what each
span holds, and the text its columns keep, written straight into Arrow-shaped buffers.

Everything here works on byte arrays (``np.uint8``) and integer arrays, never on Python objects, so numba
compiles it to machine code; the compiled code is cached on disk beside this module (``cache=True``), so only
the first run after an install or a change of this file pays the compilation (~50 s). Callers turn
the arrays into Arrow columns (ratchet.traces.columnar). A span this code does not handle itself is only
marked (``Spans.odd``): what to do with it is the caller's decision.

The helpers called for every field read memory through an address and an index (ratchet.compiled_memory)
rather than take arrays: numba counts references to every array handed to a function, with an atomic
operation each time, and for a walk over millions of fields that counting cost more than the reading.
The entry points (``frame``, ``decode_spans``) hold the arrays, so the addresses stay valid while they run.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from ratchet.compiled_memory import address as _address
from ratchet.compiled_memory import get as _get
from ratchet.compiled_memory import peek as _peek
from ratchet.compiled_memory import poke as _poke
from ratchet.compiled_memory import put as _put
from ratchet.traces.wire_layout import (
    BOOL,
    END,
    FNV_OFFSET,
    FNV_PRIME,
    HAS_PARENT,
    INT,
    JSON_TEXT,
    KIND,
    KINDS,
    NAME_TEXT,
    NONE,
    NUMBERS,
    START,
    STATUS,
    STATUSES,
    STRING,
    TEXTS,
    Frame,
    PromotedKeys,
    Spans,
)

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Field numbers (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto).
_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND = 1, 2, 4, 5, 6
_SPAN_START, _SPAN_END, _SPAN_ATTRIBUTES, _SPAN_STATUS = 7, 8, 9, 15
_STATUS_CODE = 3
_SINGULAR = sum(
    1 << n
    for n in (_SPAN_TRACE_ID, _SPAN_ID, _SPAN_PARENT, _SPAN_NAME, _SPAN_KIND, _SPAN_START, _SPAN_END, _SPAN_STATUS)
)
_KV_KEY, _KV_VALUE = 1, 2

# What one span's walk records: its fields (where they lie) …
_TRACE_AT, _SPAN_AT, _PARENT_AT, _HAS_PARENT, _NAME_AT, _NAME_LENGTH, _KIND, _START, _END, _STATUS = range(10)
_SPAN_COLUMNS = 10
# … and per attribute: _VALUE is a string's length, an int's value or a bool's 0/1; _CONSUMED whether a column
# took the attribute. Strings are checked for UTF-8 as they are written (a span with one that is not is undone).
_KEY_AT, _KEY_LENGTH, _TYPE, _VALUE_AT, _VALUE, _CONSUMED, _HASH, _SLOT = range(8)
_ATTRIBUTE_COLUMNS = 8

_SERVICE_NAME = np.frombuffer(b"service.name", np.uint8)


# --- reading the wire format ----------------------------------------------------------------------------
# What runs for every span, field or attribute is inlined into its caller (numba's inline="always"): a call
# each would cost more than the work. It makes the compilation long (~50 s on two cores, once per install).


@njit(cache=True, inline="always")
def _varint(data: int, p: int, end: int) -> tuple[np.uint64, int]:
    """The varint at ``p`` and where it ends; -1 when it runs past ``end`` or over 10 bytes. Bits past the
    64th are dropped, as protobuf's own parser drops them."""
    if p < end and _peek(data, p) < 0x80:
        return np.uint64(_peek(data, p)), p + 1
    value = np.uint64(0)
    shift = np.uint64(0)
    for _ in range(10):
        if p >= end:
            return value, -1
        byte = _peek(data, p)
        p += 1
        value |= np.uint64(byte & 0x7F) << shift
        if byte < 0x80:
            return value, p
        shift += np.uint64(7)
    return value, -1


@njit(cache=True, inline="always")
def _field(data: int, p: int, end: int) -> tuple[int, int, int, np.uint64, int]:
    """The field at ``p``: number, wire type, where its value starts, the value (a VARINT's, a LEN's length),
    and where the next field starts; that is -1 when the field is malformed (truncated, overlong, an invalid
    wire type or field number)."""
    tag, p = _varint(data, p, end)
    if p < 0:
        return 0, 0, 0, np.uint64(0), -1
    number = np.int64(tag >> np.uint64(3))
    wire = np.int64(tag & np.uint64(7))
    if number == 0:
        return 0, 0, 0, np.uint64(0), -1
    if wire == _VARINT:
        value, after = _varint(data, p, end)
        return number, wire, p, value, after
    if wire == _LEN:
        length, at = _varint(data, p, end)
        if at < 0 or length > np.uint64(end - at):
            return 0, 0, 0, np.uint64(0), -1
        return number, wire, at, length, at + np.int64(length)
    size = 8 if wire == _I64 else 4 if wire == _I32 else -1
    if size < 0 or p + size > end:
        return 0, 0, 0, np.uint64(0), -1
    return number, wire, p, np.uint64(0), p + size


@njit(cache=True, inline="always")
def _fixed64(data: int, at: int) -> int:
    value = np.uint64(0)
    for k in range(8):
        value |= np.uint64(_peek(data, at + k)) << np.uint64(8 * k)
    return np.int64(value)


@njit(cache=True, inline="always")
def _utf8_width(data: int, p: int, end: int) -> int:
    """How many bytes the (multi-byte) UTF-8 character at ``p`` takes, or -1 when it is not valid UTF-8 as
    Python's ``bytes.decode`` judges it (no overlong forms, no surrogates, nothing past U+10FFFF)."""
    b = _peek(data, p)
    if b < 0xC2 or b > 0xF4:
        return -1
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
    if p + width > end or _peek(data, p + 1) < low or _peek(data, p + 1) > high:
        return -1
    for k in range(2, width):
        if _peek(data, p + k) < 0x80 or _peek(data, p + k) > 0xBF:
            return -1
    return width


@njit(cache=True, inline="always")
def _valid_utf8(data: int, at: int, length: int) -> bool:
    p, end = at, at + length
    while p < end:
        if _peek(data, p) < 0x80:
            p += 1
            continue
        width = _utf8_width(data, p, end)
        if width < 0:
            return False
        p += width
    return True


@njit(cache=True, inline="always")
def _key_hash(data: int, at: int, length: int) -> int:
    """A hash of the bytes (FNV-like, 8 bytes a step), to find a key among others without comparing every
    pair's bytes."""
    h = np.uint64(FNV_OFFSET) ^ np.uint64(length)
    p, end = at, at + length
    while p < end:
        word = np.uint64(0)
        for k in range(min(8, end - p)):
            word |= np.uint64(_peek(data, p + k)) << np.uint64(8 * k)
        h = (h ^ word) * np.uint64(FNV_PRIME)
        h ^= h >> np.uint64(29)
        p += 8
    return np.int64(h)


@njit(cache=True, inline="always")
def _same_bytes(a: int, a_at: int, b: int, b_at: int, length: int) -> bool:
    for k in range(length):  # noqa: SIM110 (numba compiles no generator expression)
        if _peek(a, a_at + k) != _peek(b, b_at + k):
            return False
    return True


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
def _service_name(data: int, p: int, end: int, name: int) -> tuple[bool, int, int]:
    """A Resource's service.name: handled?, where the string lies and its length (-1: no such attribute).
    Not handled: a service.name that is not a string, or not UTF-8 (span_columns says what str() makes of
    it), or a malformed Resource."""
    service_at, service_length = 0, -1
    while p < end:
        number, wire, at, _, after = _field(data, p, end)
        if after < 0 or (number == 1 and wire != _LEN):
            return False, 0, 0
        if number == 1:  # an attribute: its key and value as the last of each that it has (protobuf's rule)
            key_at = key_length = value_at = 0
            value_end = -1
            q = at
            while q < after:
                kv_number, kv_wire, kv_at, _, kv_after = _field(data, q, after)
                if kv_after < 0:
                    return False, 0, 0
                if kv_number == _KV_KEY and kv_wire == _LEN:
                    key_at, key_length = kv_at, kv_after - kv_at
                elif kv_number == _KV_VALUE and kv_wire == _LEN:
                    value_at, value_end = kv_at, kv_after
                q = kv_after
            if key_length == len(_SERVICE_NAME) and _same_bytes(data, key_at, name, 0, key_length):
                found = False
                q = value_at
                while q < value_end:
                    v_number, v_wire, v_at, _, v_after = _field(data, q, value_end)
                    if v_after < 0 or v_number != STRING or v_wire != _LEN:
                        return False, 0, 0
                    found, service_at, service_length = True, v_at, v_after - v_at
                    q = v_after
                if not found or not _valid_utf8(data, service_at, service_length):
                    return False, 0, 0
        p = after
    return True, service_at, service_length


@njit(cache=True, nogil=True)
def frame(buf: np.ndarray) -> Frame:
    """Where each span of an ``ExportTraceServiceRequest`` lies, and each ResourceSpans' service."""
    empty = np.zeros(0, np.int64)
    failed = Frame(False, empty, empty, empty, empty, empty)
    n = len(buf)
    spans = np.empty((n // 256 + 16, 3), np.int64)  # start, end, resource (grown when a span has no room)
    services = np.empty((4, 2), np.int64)  # at, length
    name = _SERVICE_NAME.copy()
    data, name_data = _address(buf), _address(name)
    count = resources = 0
    p = 0
    while p < n:
        number, wire, at, _, after = _field(data, p, n)
        if after < 0 or (number == 1 and wire != _LEN):
            return failed
        if number == 1:  # a ResourceSpans
            service_at, service_length = 0, -1
            q = at
            while q < after:
                inner, inner_wire, inner_at, _, inner_after = _field(data, q, after)
                if inner_after < 0 or ((inner == 1 or inner == 2) and inner_wire != _LEN):
                    return failed
                if inner == 1:  # its Resource
                    handled, service_at, service_length = _service_name(data, inner_at, inner_after, name_data)
                    if not handled:
                        return failed
                elif inner == 2:  # a ScopeSpans: its spans (field 2; the hot loop) and the rest skipped
                    r = inner_at
                    while r < inner_after:
                        if _peek(data, r) == 0x12:
                            size, span_at = _varint(data, r + 1, inner_after)
                            if span_at < 0 or size > np.uint64(inner_after - span_at):
                                return failed
                            r = span_at + np.int64(size)
                            if count == len(spans):
                                spans = _grow(spans, count + 1)
                            spans[count, 0], spans[count, 1], spans[count, 2] = span_at, r, resources
                            count += 1
                        else:
                            scope_number, _, _, _, r = _field(data, r, inner_after)
                            if r < 0 or scope_number == 2:  # malformed, or spans with another wire type
                                return failed
                q = inner_after
            if resources == len(services):
                services = _grow(services, resources + 1)
            services[resources, 0], services[resources, 1] = service_at, service_length
            resources += 1
        p = after
    return Frame(
        True,
        spans[:count, 0].copy(),
        spans[:count, 1].copy(),
        spans[:count, 2].copy(),
        services[:resources, 0].copy(),
        services[:resources, 1].copy(),
    )


# --- spans ------------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _attribute(data: int, at: int, end: int) -> tuple[bool, int, int, int, int, int]:
    """One KeyValue: handled?, where its key lies and its length, its value's type, where a string value lies
    and its length or an int or bool's value. Not handled: a value of another type than string, int or bool,
    a field sent twice or with another wire type, malformed bytes."""
    key_at = key_length = 0
    has_key = has_value = False
    value_at = value_end = 0
    p = at
    # SDKs write the key, then the value holding one field: read that layout (with lengths under 128) at once.
    if end - at >= 4 and _peek(data, at) == 0x0A and _peek(data, at + 1) < 0x80:
        q = at + 2 + np.int64(_peek(data, at + 1))
        if (
            q + 2 <= end
            and _peek(data, q) == 0x12
            and _peek(data, q + 1) < 0x80
            and q + 2 + np.int64(_peek(data, q + 1)) == end
        ):
            has_key, key_at, key_length = True, at + 2, q - at - 2
            has_value, value_at, value_end = True, q + 2, end
            p = end
    while p < end:
        number, wire, field_at, _, after = _field(data, p, end)
        if after < 0:
            return False, 0, 0, 0, 0, 0
        if number == _KV_KEY:
            if wire != _LEN or has_key:
                return False, 0, 0, 0, 0, 0
            has_key, key_at, key_length = True, field_at, after - field_at
        elif number == _KV_VALUE:
            if wire != _LEN or has_value:
                return False, 0, 0, 0, 0, 0
            has_value, value_at, value_end = True, field_at, after
        p = after
    kind, scalar_at, scalar = NONE, 0, 0
    p, fields = value_at, 0
    if (
        value_end - value_at >= 2
        and _peek(data, value_at) == 0x0A
        and _peek(data, value_at + 1) < 0x80
        and value_at + 2 + np.int64(_peek(data, value_at + 1)) == value_end
    ):
        kind, scalar_at, scalar = STRING, value_at + 2, value_end - value_at - 2  # a short string (the most common)
        p = value_end
    while has_value and p < value_end:
        number, wire, field_at, value, after = _field(data, p, value_end)
        if after < 0:
            return False, 0, 0, 0, 0, 0
        if 1 <= number <= 7:  # AnyValue's oneof; later numbers are fields it does not know (skipped)
            fields += 1
            if fields > 1:
                return False, 0, 0, 0, 0, 0
            if number == STRING and wire == _LEN:
                kind, scalar_at, scalar = STRING, field_at, after - field_at
            elif number == BOOL and wire == _VARINT:
                kind, scalar = BOOL, 1 if value != np.uint64(0) else 0
            elif number == INT and wire == _VARINT:
                kind, scalar = INT, np.int64(value)
            else:
                return False, 0, 0, 0, 0, 0
        p = after
    return True, key_at, key_length, kind, scalar_at, scalar


@njit(cache=True)
def _status(data: int, at: int, end: int) -> int:
    """A Status message's code, or -1 when this code does not handle it."""
    code = np.uint64(0)
    seen = False
    p = at
    while p < end:
        number, wire, _, value, after = _field(data, p, end)
        if after < 0:
            return -1
        if number == _STATUS_CODE:
            if wire != _VARINT or seen:
                return -1
            seen, code = True, value
        p = after
    return np.int64(code) if code < np.uint64(STATUSES) else 0


class _Keys(NamedTuple):
    """PromotedKeys as addresses (see the module's docstring)."""

    data: int
    offsets: int
    by_hash: int
    mask: int
    column: int
    rank: int
    numeric: int
    columns: int


@njit(cache=True, inline="always")
def _attribute_cell(row: int, column: int) -> int:
    return row * _ATTRIBUTE_COLUMNS + column


@njit(cache=True, inline="always")
def _span(data: int, p: int, end: int, span: int, attributes: int, picks: int, keys: _Keys) -> int:
    """One span's fields into ``span`` (_SPAN_COLUMNS int64), its attributes into ``attributes`` (rows of
    _ATTRIBUTE_COLUMNS, room for them all) and the attribute each promoted column takes into ``picks``;
    returns how many attributes it has, or -1 when this code does not handle the span."""
    for k in range(_SPAN_COLUMNS):
        _put(span, k, 0)
    for c in range(keys.columns):
        _put(picks, c, -1)
    seen = 0  # a bit per singular field number
    trace_length = span_length = parent_length = -1
    status_at = status_end = -1
    m = 0
    while p < end:
        number, wire, at, value, after = _field(data, p, end)
        if after < 0:
            return -1
        if number == _SPAN_ATTRIBUTES:
            if wire != _LEN:
                return -1
            handled, key_at, length, kind, scalar_at, scalar = _attribute(data, at, after)
            if not handled:
                return -1
            h = _key_hash(data, key_at, length)
            for j in range(m):  # a key twice: span_columns' dict keeps the last value in the first place
                if (
                    _get(attributes, _attribute_cell(j, _HASH)) == h
                    and _get(attributes, _attribute_cell(j, _KEY_LENGTH)) == length
                    and _same_bytes(data, _get(attributes, _attribute_cell(j, _KEY_AT)), data, key_at, length)
                ):
                    return -1
            slot = _get(keys.by_hash, h & keys.mask)
            if slot >= 0:
                start = _get(keys.offsets, slot)
                if _get(keys.offsets, slot + 1) - start != length or not _same_bytes(
                    data, key_at, keys.data, start, length
                ):
                    slot = -1
            row = _attribute_cell(m, 0)
            _put(attributes, row + _KEY_AT, key_at)
            _put(attributes, row + _KEY_LENGTH, length)
            _put(attributes, row + _TYPE, kind)
            _put(attributes, row + _VALUE_AT, scalar_at)
            _put(attributes, row + _VALUE, scalar)
            _put(attributes, row + _CONSUMED, 0)
            _put(attributes, row + _HASH, h)
            _put(attributes, row + _SLOT, slot)
            if slot >= 0:  # the column takes the first of its keys in its order, wherever the span has it
                column = _get(keys.column, slot)
                chosen = _get(picks, column)
                if chosen < 0 or _get(keys.rank, slot) < _get(
                    keys.rank, _get(attributes, _attribute_cell(chosen, _SLOT))
                ):
                    _put(picks, column, m)
            m += 1
        elif number < 16 and (np.int64(1) << number) & _SINGULAR:
            bit = np.int64(1) << number
            expected = _VARINT if number == _SPAN_KIND else _I64 if number in (_SPAN_START, _SPAN_END) else _LEN
            if wire != expected or seen & bit:
                return -1
            seen |= bit
            if number == _SPAN_TRACE_ID:
                _put(span, _TRACE_AT, at)
                trace_length = after - at
            elif number == _SPAN_ID:
                _put(span, _SPAN_AT, at)
                span_length = after - at
            elif number == _SPAN_PARENT:
                _put(span, _PARENT_AT, at)
                parent_length = after - at
            elif number == _SPAN_NAME:
                _put(span, _NAME_AT, at)
                _put(span, _NAME_LENGTH, after - at)
            elif number == _SPAN_KIND:
                _put(span, _KIND, np.int64(value) if value < np.uint64(KINDS) else 0)
            elif number == _SPAN_START:
                _put(span, _START, _fixed64(data, at))
            elif number == _SPAN_END:
                _put(span, _END, _fixed64(data, at))
            else:
                status_at, status_end = at, after
        p = after
    if trace_length != 16 or span_length != 8 or (parent_length > 0 and parent_length != 8):
        return -1
    _put(span, _HAS_PARENT, 1 if parent_length == 8 else 0)
    if status_at >= 0:
        code = _status(data, status_at, status_end)
        if code < 0:
            return -1
        _put(span, _STATUS, code)
    for column in range(keys.columns):
        chosen = _get(picks, column)
        if chosen < 0:
            continue
        kind = _get(attributes, _attribute_cell(chosen, _TYPE))
        if (kind != NONE and kind != INT) if _peek(keys.numeric, column) else kind == BOOL:
            return -1  # span_columns' int() or str() of it: left to that code
        _put(attributes, _attribute_cell(chosen, _CONSUMED), 1)
    return m


# --- text columns -------------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _copy(source: int, at: int, length: int, out: int, o: int) -> int:
    for k in range(length):
        _poke(out, o + k, _peek(source, at + k))
    return o + length


@njit(cache=True, inline="always")
def _write_digits(value: int, out: int, o: int) -> int:
    size = _digits(value)
    if value < 0:
        _poke(out, o, 0x2D)
        magnitude = np.uint64(-(value + 1)) + np.uint64(1)
    else:
        magnitude = np.uint64(value)
    for k in range(o + size - 1, o + (1 if value < 0 else 0) - 1, -1):
        _poke(out, k, 0x30 + np.int64(magnitude % np.uint64(10)))
        magnitude //= np.uint64(10)
    return o + size


@njit(cache=True, inline="always")
def _hex_digit(value: int) -> int:
    return value + (0x30 if value < 10 else 0x57)


@njit(cache=True, inline="always")
def _write_hex(data: int, at: int, width: int, out: int, o: int) -> None:
    for k in range(width):
        b = np.int64(_peek(data, at + k))
        _poke(out, o + 2 * k, _hex_digit(b >> 4))
        _poke(out, o + 2 * k + 1, _hex_digit(b & 0xF))


@njit(cache=True, inline="always")
def _write_escape(code: int, out: int, o: int) -> int:
    _poke(out, o, 0x5C)  # \u
    _poke(out, o + 1, 0x75)
    for k in range(4):
        _poke(out, o + 2 + k, _hex_digit((code >> (12 - 4 * k)) & 0xF))
    return o + 6


@njit(cache=True, inline="always")
def _write_json_string(data: int, at: int, length: int, out: int, o: int) -> int:
    """The bytes as json.dumps writes a string (quoted, escaped as ASCII); returns where the text ends, or -1
    when they are not valid UTF-8."""
    _poke(out, o, 0x22)
    o += 1
    p, end = at, at + length
    while p < end:
        b = np.int64(_peek(data, p))
        if 0x20 <= b < 0x7F and b != 0x22 and b != 0x5C:
            _poke(out, o, b)
            o += 1
            p += 1
            continue
        if b < 0x80:
            short = (
                0x62
                if b == 0x08
                else 0x74
                if b == 0x09
                else 0x6E
                if b == 0x0A
                else 0x66
                if b == 0x0C
                else (0x72 if b == 0x0D else b if b == 0x22 or b == 0x5C else 0)
            )
            if short:
                _poke(out, o, 0x5C)
                _poke(out, o + 1, short)
                o += 2
            else:  # the other control characters, and DEL
                o = _write_escape(b, out, o)
            p += 1
            continue
        width = _utf8_width(data, p, end)
        if width < 0:
            return -1
        code = b & (0x1F if width == 2 else 0x0F if width == 3 else 0x07)
        for k in range(1, width):
            code = (code << 6) | (np.int64(_peek(data, p + k)) & 0x3F)
        p += width
        if code < 0x10000:
            o = _write_escape(code, out, o)
        else:  # past the BMP: a surrogate pair
            code -= 0x10000
            o = _write_escape(0xD800 | (code >> 10), out, o)
            o = _write_escape(0xDC00 | (code & 0x3FF), out, o)
    _poke(out, o, 0x22)
    return o + 1


@njit(cache=True, inline="always")
def _copy_text(data: int, at: int, length: int, out: int, o: int) -> int:
    """The bytes copied to ``out`` at ``o``; returns where they end there, or -1 when they are not UTF-8."""
    p, end = at, at + length
    while p < end:
        b = _peek(data, p)
        if b < 0x80:
            _poke(out, o, b)
            o += 1
            p += 1
            continue
        width = _utf8_width(data, p, end)
        if width < 0:
            return -1
        o = _copy(data, p, width, out, o)
        p += width
    return o


@njit(cache=True, inline="always")
def _write_word(kind: int, value: int, out: int, o: int) -> int:
    """null, true or false."""
    if kind == NONE:
        word, size = 0x6C6C756E, 4  # "null", little-endian
    elif value:
        word, size = 0x65757274, 4  # "true"
    else:
        word, size = 0x65736C6166, 5  # "false"
    for k in range(size):
        _poke(out, o + k, (word >> (8 * k)) & 0xFF)
    return o + size


@njit(cache=True, inline="always")
def _write_attributes(data: int, attributes: int, count: int, out: int, o: int) -> int:
    """The attributes no column consumed, as ``json.dumps`` writes their dict (nothing when there are none);
    returns where the text ends, or -1 when a string in them is not UTF-8."""
    start = o
    for j in range(count):
        row = _attribute_cell(j, 0)
        if _get(attributes, row + _CONSUMED):
            continue
        if o == start:
            _poke(out, o, 0x7B)  # {
            o += 1
        else:
            _poke(out, o, 0x2C)  # ", "
            _poke(out, o + 1, 0x20)
            o += 2
        o = _write_json_string(data, _get(attributes, row + _KEY_AT), _get(attributes, row + _KEY_LENGTH), out, o)
        if o < 0:
            return -1
        _poke(out, o, 0x3A)  # ": "
        _poke(out, o + 1, 0x20)
        o += 2
        kind, value = _get(attributes, row + _TYPE), _get(attributes, row + _VALUE)
        if kind == STRING:
            o = _write_json_string(data, _get(attributes, row + _VALUE_AT), value, out, o)
            if o < 0:
                return -1
        elif kind == INT:
            o = _write_digits(value, out, o)
        else:
            o = _write_word(kind, value, out, o)
    if o > start:
        _poke(out, o, 0x7D)  # }
        o += 1
    return o


class _Out(NamedTuple):
    """Spans' arrays as addresses, and the row being written (see the module's docstring)."""

    trace_ids: int
    span_ids: int
    parent_ids: int
    numbers: int
    integers: int
    text: int
    valid: int
    cursor: int
    rows: int


@njit(cache=True, inline="always")
def _write_row(data: int, i: int, span: int, picks: int, attributes: int, count: int, keys: _Keys, out: _Out) -> bool:
    """Row ``i`` of the columns from the span's walk; False when one of its strings is not UTF-8 (the caller
    undoes what was written)."""
    _write_hex(data, _get(span, _TRACE_AT), 16, out.trace_ids, 32 * i)
    _write_hex(data, _get(span, _SPAN_AT), 8, out.span_ids, 16 * i)
    _write_hex(data, _get(span, _PARENT_AT), 8, out.parent_ids, 16 * i)
    for column, field in ((START, _START), (END, _END), (KIND, _KIND), (STATUS, _STATUS), (HAS_PARENT, _HAS_PARENT)):
        _put(out.numbers, i * NUMBERS + column, _get(span, field))
    after = _copy_text(data, _get(span, _NAME_AT), _get(span, _NAME_LENGTH), out.text, _get(out.cursor, NAME_TEXT))
    if after < 0:
        return False
    _put(out.cursor, NAME_TEXT, after)
    _poke(out.valid, NAME_TEXT * out.rows + i, 1)
    before = _get(out.cursor, JSON_TEXT)
    after = _write_attributes(data, attributes, count, out.text, before)
    if after < 0:
        return False
    _put(out.cursor, JSON_TEXT, after)
    _poke(out.valid, JSON_TEXT * out.rows + i, 1 if after > before else 0)
    for c in range(keys.columns):
        j = _get(picks, c)
        kind = _get(attributes, _attribute_cell(j, _TYPE)) if j >= 0 else NONE
        value = _get(attributes, _attribute_cell(j, _VALUE)) if j >= 0 else 0
        t = TEXTS + c
        if _peek(keys.numeric, c):
            _put(out.integers, i * keys.columns + c, value if kind == INT else 0)
            _poke(out.valid, t * out.rows + i, 1 if kind == INT else 0)
        elif kind != NONE:  # an int where a string is expected: span_columns writes str(value), and so do we
            o = _get(out.cursor, t)
            if kind == STRING:
                o = _copy_text(data, _get(attributes, _attribute_cell(j, _VALUE_AT)), value, out.text, o)
            else:
                o = _write_digits(value, out.text, o)
            if o < 0:
                return False
            _put(out.cursor, t, o)
            _poke(out.valid, t * out.rows + i, 1)
    return True


@njit(cache=True, nogil=True)
def decode_spans(
    bodies: np.ndarray, body_of: np.ndarray, starts: np.ndarray, ends: np.ndarray, keys: PromotedKeys
) -> Spans:
    """Every span, read once and written into its columns' buffers: span i lies at ``starts[i]``:``ends[i]``
    of the export whose bytes are at address ``bodies[body_of[i]]`` (the caller keeps them alive)."""
    n, columns = len(starts), len(keys.numeric)
    # Text columns: each in its own region of one buffer, as large as its text could be (pages never written
    # are never backed by memory): a name or a promoted string is in the span's bytes, an int takes 20
    # characters at most, and JSON escapes take 6 characters per byte at most.
    total = most = 0
    for i in range(n):
        total += ends[i] - starts[i]
        most = max(most, ends[i] - starts[i])
    region = np.zeros(TEXTS + columns + 1, np.int64)
    region[NAME_TEXT + 1] = total
    region[JSON_TEXT + 1] = region[JSON_TEXT] + 6 * total + 2 * n
    for c in range(columns):
        t = TEXTS + c
        region[t + 1] = region[t] + (0 if keys.numeric[c] else total + 20 * n)
    spans = Spans(
        np.zeros(n, np.bool_),
        np.empty(32 * n, np.uint8),
        np.empty(16 * n, np.uint8),
        np.empty(16 * n, np.uint8),
        np.zeros((n, NUMBERS), np.int64),
        np.zeros((n, columns), np.int64),
        np.empty(region[-1], np.uint8),
        region,
        np.zeros((len(region) - 1, n + 1), np.int64),
        np.zeros((len(region) - 1, n), np.bool_),
    )
    cursor = region[:-1].copy()
    span = np.zeros(_SPAN_COLUMNS, np.int64)
    picks = np.zeros(columns, np.int64)
    attributes = np.zeros((most // 2 + 1, _ATTRIBUTE_COLUMNS), np.int64)  # an attribute takes 2 bytes at least
    out = _Out(
        _address(spans.trace_ids),
        _address(spans.span_ids),
        _address(spans.parent_ids),
        _address(spans.numbers),
        _address(spans.integers),
        _address(spans.text),
        _address(spans.valid),
        _address(cursor),
        n,
    )
    compiled = _Keys(
        _address(keys.data),
        _address(keys.offsets),
        _address(keys.by_hash),
        len(keys.by_hash) - 1,
        _address(keys.column),
        _address(keys.rank),
        _address(keys.numeric),
        columns,
    )
    span_at, picks_at, attributes_at = _address(span), _address(picks), _address(attributes)
    for i in range(n):
        data = bodies[body_of[i]]
        count = _span(data, starts[i], ends[i], span_at, attributes_at, picks_at, compiled)
        if count < 0 or not _write_row(data, i, span_at, picks_at, attributes_at, count, compiled, out):
            spans.odd[i] = True
            spans.trace_ids[32 * i : 32 * i + 32] = 0x30
            spans.span_ids[16 * i : 16 * i + 16] = 0x30
            spans.parent_ids[16 * i : 16 * i + 16] = 0x30
            spans.numbers[i] = 0
            spans.integers[i] = 0
            for t in range(len(cursor)):  # undo what the row wrote
                cursor[t] = region[t] + spans.offsets[t, i]
                spans.valid[t, i] = False
        for t in range(len(cursor)):
            spans.offsets[t, i + 1] = cursor[t] - region[t]
    return spans
