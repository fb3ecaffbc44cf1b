"""Decode OTLP trace exports (protobuf or JSON) into span columns, with opentelemetry-proto.

A span row keeps what the detectors read: ids and parent, name, kind, start and end, status, the service, and
the attributes that say what a span did (route, statement, status code, body size, peer). Other attributes
are kept as a JSON text column so nothing a later detector needs is lost.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

SPAN_KINDS = ("unspecified", "internal", "server", "client", "producer", "consumer")
STATUS_CODES = ("unset", "ok", "error")

# Column → the attribute keys that fill it, newest semantic convention first (older SDKs use the later ones).
PROMOTED_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "route": ("http.route",),
    "http_method": ("http.request.method", "http.method"),
    "http_status": ("http.response.status_code", "http.status_code"),
    "body_size": ("http.response.body.size", "http.response_content_length"),
    "url": ("url.full", "http.url"),
    "server_address": ("server.address", "net.peer.name", "http.host"),
    "db_system": ("db.system.name", "db.system"),
    "statement": ("db.query.text", "db.statement"),
}
SPAN_COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "name",
    "kind",
    "service",
    "start_ns",
    "end_ns",
    "duration_ms",
    "status",
    *PROMOTED_ATTRIBUTES,
    "attributes",
)
_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


class OtlpPayloadError(ValueError):
    """The body is not a valid OTLP trace export (the receiver answers 400 with this message)."""


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """An ``application/x-protobuf`` export."""
    try:
        return ExportTraceServiceRequest.FromString(body)
    except (DecodeError, ValueError) as exc:
        raise OtlpPayloadError(f"not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """An ``application/json`` export. OTLP/JSON writes ids as hex, where protobuf's JSON mapping wants base64."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpPayloadError(f"not JSON: {exc}") from None
    except RecursionError:
        raise OtlpPayloadError("not an OTLP/JSON export: nested too deeply") from None
    if not isinstance(document, dict):
        raise OtlpPayloadError("an OTLP/JSON export is an object with resourceSpans")
    try:
        _hex_ids_to_base64(document)
        return json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError, AttributeError) as exc:
        raise OtlpPayloadError(f"not an OTLP/JSON ExportTraceServiceRequest: {exc}") from None
    except RecursionError:  # a document nested deeper than any export: refused, not a server error
        raise OtlpPayloadError("not an OTLP/JSON export: nested too deeply") from None


def _hex_ids_to_base64(node: Any) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_FIELDS and isinstance(value, str):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def _value(any_value: AnyValue) -> Any:
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in any_value.kvlist_value.values}
    if which == "bytes_value":
        return any_value.bytes_value.hex()
    return getattr(any_value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


def empty_columns() -> dict[str, list[Any]]:
    """One empty list per name in SPAN_COLUMNS."""
    return {name: [] for name in SPAN_COLUMNS}


def span_columns(request: ExportTraceServiceRequest) -> dict[str, list[Any]]:
    """The spans of one export as columns (one list per name in SPAN_COLUMNS)."""
    columns = empty_columns()
    for resource_spans in request.resource_spans:
        service = str(_attributes(resource_spans.resource.attributes).get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                append_span(columns, span, service)
    return columns


def append_span(columns: dict[str, list[Any]], span: Span, service: str) -> None:
    """Add one span's row to ``columns`` (the reference for what every column holds)."""
    attributes = _attributes(span.attributes)
    columns["trace_id"].append(span.trace_id.hex())
    columns["span_id"].append(span.span_id.hex())
    columns["parent_span_id"].append(span.parent_span_id.hex() or None)
    columns["name"].append(span.name)
    columns["kind"].append(SPAN_KINDS[span.kind] if 0 <= span.kind < len(SPAN_KINDS) else "unspecified")
    columns["service"].append(service)
    columns["start_ns"].append(span.start_time_unix_nano)
    columns["end_ns"].append(span.end_time_unix_nano)
    columns["duration_ms"].append((span.end_time_unix_nano - span.start_time_unix_nano) / 1e6)
    code = span.status.code
    columns["status"].append(STATUS_CODES[code] if 0 <= code < len(STATUS_CODES) else "unset")
    for column, keys in PROMOTED_ATTRIBUTES.items():
        found = next((attributes.pop(k) for k in keys if k in attributes), None)
        columns[column].append(_coerce(column, found))
    columns["attributes"].append(json.dumps(attributes, default=str) if attributes else None)


_NUMERIC = {"http_status", "body_size"}


def _coerce(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _NUMERIC:
        try:
            return int(value)
        except (TypeError, ValueError):
            return None  # e.g. a status code sent as "OK": not a number we can compare
    return str(value)
