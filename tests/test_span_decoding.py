"""The batch decoder of protobuf exports (ratchet.traces.columnar) gives span_columns' rows, whatever the export:
the decoder compiled at install, and numba's, which runs where the first could not be built."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from ratchet.traces import columnar, wire_aot
from ratchet.traces.columnar import SPAN_SCHEMA, UnframedExport, decode_exports, frame_export, warm_up
from ratchet.traces.otlp import OtlpPayloadError, decode_protobuf, span_columns
from ratchet.traces.store import SpanSink, run_trace_prefix


@pytest.fixture(autouse=True, params=["compiled at install", "numba at run time"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs on both decoders."""
    if request.param == "numba at run time":
        monkeypatch.setattr(columnar, "_compiled", None)
    return columnar.decoder()


def test_make_builds_the_decoder_for_the_sources_as_they_are() -> None:
    """`make` compiled the decoder ahead of time, from these very sources (a stale build is never loaded)."""
    assert wire_aot.load() is not None, f"{wire_aot.module_name()} is not built for these sources: run `make decoder`"


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def sdk_export() -> bytes:
    """An export the standard SDK encodes, with every kind of attribute value and both naming conventions."""
    kept = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /cart/{id}", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "http.route": "/cart/{id}",
                "http.response.status_code": 200,
                "http.status_code": 201,
                "http.request.method": "GET",
                "http.method": "POST",
                "url.full": 'http://shop/cart/7?q="x"\n',
                "user_agent.original": "k6 ✓ 1.1",
                "retry": True,
                "ratio": 0.25,
                "count": -3,
                "tags": ["a", "b"],
                "long": "x" * 20_000,
                "quote": 'say "hi"\\',
                "empty": "",
            }
        )
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT) as query:
            query.set_attributes({"db.system": "postgresql", "db.statement": 'SELECT * FROM "cart" WHERE id = $1'})
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            call.set_attributes({"server.address": 127, "http.response.body.size": "512", "net.peer.name": "x"})
            call.set_status(Status(StatusCode.ERROR, "timeout"))
        with tracer.start_as_current_span("internal", kind=SpanKind.INTERNAL) as inner:
            inner.set_attributes({"http.status_code": True, "db.system.name": 3.5})
            inner.add_event("exception", {"exception.message": "boom"})
        with tracer.start_as_current_span("bare"):
            pass
    provider.shutdown()
    return encode_spans(kept.spans).SerializeToString()


def reference(body: bytes) -> pa.Table:
    return pa.table(span_columns(decode_protobuf(body)), schema=SPAN_SCHEMA).sort_by("span_id")


def decoded(*bodies: bytes) -> pa.Table:
    return decode_exports([frame_export(b) for b in bodies]).table.sort_by("span_id")


def test_the_sdks_exports_decode_to_span_columns_rows() -> None:
    body = sdk_export()
    ours, theirs = decoded(body), reference(body)
    assert ours.num_rows == 5
    assert ours.to_pylist() == theirs.to_pylist()


def kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def hand_made_span(trace: bytes, span: bytes, **fields: object) -> Span:
    return Span(trace_id=trace, span_id=span, name="op", start_time_unix_nano=1, end_time_unix_nano=3_000_001, **fields)  # type: ignore[arg-type]


def test_unusual_spans_still_decode_as_span_columns_does() -> None:
    trace = bytes(range(16))
    normal = hand_made_span(trace, b"\x01" * 8, attributes=[kv("http.route", AnyValue(string_value="/a"))])
    odd_ids = hand_made_span(trace[:8], b"\x02" * 4)  # ids of the wrong length are kept as they are
    no_value = hand_made_span(trace, b"\x03" * 8, attributes=[KeyValue(key="k"), kv("e", AnyValue())])
    kinds = hand_made_span(trace, b"\x04" * 8, kind=9, parent_span_id=b"\x05" * 8)  # type: ignore[arg-type]
    listed = hand_made_span(trace, b"\x06" * 8, attributes=[kv("m", AnyValue(bytes_value=b"\x00\xff"))])
    twice_keyed = hand_made_span(
        trace,
        b"\x08" * 8,
        attributes=[
            kv("a", AnyValue(int_value=1)),
            kv("http.route", AnyValue(string_value="/x")),
            kv("b", AnyValue()),
            kv("a", AnyValue(int_value=2)),
            kv("http.route", AnyValue(string_value="/y")),
        ],
    )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=[normal, odd_ids, no_value, kinds, listed, twice_keyed])])
        ]
    )
    body = request.SerializeToString()
    # The same span twice over in one message (protobuf merges), and fields in reverse order.
    twice = normal.SerializeToString() + Span(name="renamed").SerializeToString()
    reverse = b"".join(
        Span(**{f.name: v}).SerializeToString()  # type: ignore[arg-type]
        for f, v in reversed(hand_made_span(trace, b"\x07" * 8, status={"code": 2}).ListFields())
    )
    extra = ScopeSpans(spans=[Span.FromString(twice), Span.FromString(reverse)])
    body2 = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[extra])]).SerializeToString()
    assert (
        decoded(body, body2).to_pylist()
        == pa.concat_tables([reference(body), reference(body2)]).sort_by("span_id").to_pylist()
    )


def test_a_span_whose_bytes_are_broken_is_dropped_and_counted() -> None:
    good = hand_made_span(bytes(16), b"\x01" * 8).SerializeToString()
    broken = b"\x0a\x10" + b"\x00" * 5  # a trace id that promises 16 bytes and has 5
    scope = b"\x12" + bytes([len(good)]) + good + b"\x12" + bytes([len(broken)]) + broken
    resource = b"\x12" + bytes([len(scope)]) + scope
    body = b"\x0a" + bytes([len(resource)]) + resource
    with pytest.raises(OtlpPayloadError):
        decode_protobuf(body)  # opentelemetry-proto refuses the whole export …
    result = decode_exports([frame_export(body)])  # … the batch keeps the good span
    assert (result.table.num_rows, result.dropped) == (1, 1)


@pytest.mark.parametrize("body", [b"\xff\xff\xff not protobuf", b"\x0a\x05ab", b"\x0b\x00"])
def test_bodies_that_are_not_exports_are_not_framed(body: bytes, tmp_path: Path) -> None:
    with pytest.raises(UnframedExport):
        frame_export(body)
    with pytest.raises(OtlpPayloadError):
        SpanSink(tmp_path).add_protobuf(body)


def test_the_sink_counts_a_runs_spans_and_its_requests_roots_once_decoded(tmp_path: Path) -> None:
    """A request's root is the span whose parent is the load test's own span: the trace id's random tail (see
    the k6 script); its children, and spans of traces Ratchet did not start, are not roots."""
    prefix = run_trace_prefix("campaign-1-baseline")
    sink = SpanSink(tmp_path, max_rows=1_000_000)
    assert sink.add_protobuf(sdk_export()) == 5
    tail = bytes.fromhex("ab" * 8)
    trace = bytes.fromhex(prefix + "00") + tail
    spans = [
        hand_made_span(trace, b"\x01" * 8, parent_span_id=tail),  # the request's root
        hand_made_span(trace, b"\x02" * 8, parent_span_id=b"\x01" * 8),  # its child
        hand_made_span(bytes.fromhex(prefix + "00" * 9), b"\x03" * 8),  # no parent: not started by the load test
    ]
    mine = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    assert sink.add_protobuf(mine.SerializeToString()) == 3
    assert sink.pending and prefix not in sink.by_prefix
    part = sink.flush()
    assert part is not None and not sink.pending
    assert (sink.by_prefix[prefix].spans, sink.by_prefix[prefix].roots, sink.received) == (3, 1, 8)
    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{part}')").fetchall()
    assert count == [(8,)]
    # The same spans decoded from JSON (the other path into the sink) count the same.
    json_sink = SpanSink(tmp_path / "json")
    json_sink.add(span_columns(mine))
    assert (json_sink.by_prefix[prefix].spans, json_sink.by_prefix[prefix].roots) == (3, 1)


@pytest.mark.parametrize(("value", "service"), [(AnyValue(int_value=7), "7"), (AnyValue(), "None")])
def test_a_service_name_that_is_not_a_string_is_left_to_span_columns(
    value: AnyValue, service: str, tmp_path: Path
) -> None:
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource

    span = hand_made_span(bytes(16), b"\x01" * 8)
    resource = ProtoResource(attributes=[kv("service.name", value)])
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()
    with pytest.raises(UnframedExport):
        frame_export(body)
    sink = SpanSink(tmp_path)
    assert sink.add_protobuf(body) == 1
    part = sink.flush()
    assert duckdb.sql(f"SELECT service FROM read_parquet('{part}')").fetchall() == [(service,)]


def test_mangled_exports_never_crash_and_agree_with_span_columns_when_it_accepts_them() -> None:
    """Bytes changed, cut out or put in at random: framing refuses or the batch decodes; never a crash, and
    where opentelemetry-proto accepts the export, the same rows."""
    import random

    rng = random.Random(20261123)
    original = sdk_export()
    agreed = 0
    for _ in range(400):
        body = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            if rng.random() < 0.6:
                body[at] = rng.randrange(256)
            else:
                del body[at : at + rng.randint(1, 20)]
        try:
            export = frame_export(bytes(body))
        except UnframedExport:
            continue
        result = decode_exports([export]).table
        try:
            expected = reference(bytes(body))
        except OtlpPayloadError:
            continue  # refused as a whole by opentelemetry-proto; the batch keeps the spans it can read
        assert result.sort_by("span_id").to_pylist() == expected.to_pylist()
        agreed += 1
    assert agreed > 20


def test_strings_are_escaped_as_json_dumps_escapes_them() -> None:
    """Control characters, DEL, characters past the BMP, quotes and backslashes, in keys and values; ints and
    bools at their limits; an int where a column holds strings."""
    values = {
        "ctl\x01": AnyValue(string_value="a\x00b\x1fc\x7fd\te\rf\x08g\x0ch"),
        "emoji 😀": AnyValue(string_value="ü € 😀 \U0010ffff"),
        'q"\\': AnyValue(string_value='"\\/'),
        "min": AnyValue(int_value=-(2**63)),
        "max": AnyValue(int_value=2**63 - 1),
        "zero": AnyValue(int_value=0),
        "yes": AnyValue(bool_value=True),
        "no": AnyValue(bool_value=False),
        "none": AnyValue(),
        "server.address": AnyValue(int_value=-42),
        "http.status_code": AnyValue(int_value=404),
        "db.statement": AnyValue(string_value="SELECT 'é'"),
    }
    span = hand_made_span(bytes(range(16)), b"\x01" * 8, attributes=[kv(k, v) for k, v in values.items()])
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    ).SerializeToString()
    assert decoded(body).to_pylist() == reference(body).to_pylist()


def test_a_span_with_a_string_that_is_not_utf8_is_dropped_and_its_neighbours_kept_whole() -> None:
    """The compiled pass writes a span's text as it checks it: a string found broken in a promoted column (written
    last) leaves nothing of that span in the columns, and the spans after it are unaffected."""
    trace = bytes(range(16))
    attributes = [kv("user", AnyValue(string_value="ann")), kv("http.route", AnyValue(string_value="/x\xa7"))]
    spans = [hand_made_span(trace, bytes([i]) * 8, attributes=attributes) for i in (1, 2, 3)]
    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()
    second = body.index(b"/x\xc2\xa7", body.index(b"/x\xc2\xa7") + 1)
    broken = body[:second] + b"/xx\xa7" + body[second + 4 :]  # its route: a lone continuation byte, same length
    result = decode_exports([frame_export(broken)])
    assert (result.table.num_rows, result.dropped) == (2, 1)  # opentelemetry-proto refuses the span too
    good = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[spans[0], spans[2]])])]
    ).SerializeToString()
    assert result.table.sort_by("span_id").to_pylist() == reference(good).to_pylist()


def test_parts_written_while_spans_arrive_are_all_on_disk_once_flush_returns(tmp_path: Path) -> None:
    sink = SpanSink(tmp_path, max_rows=4)
    for first in range(0, 15, 3):  # the buffer full every other export: those parts are written in the background
        spans = [hand_made_span(bytes(16), bytes([i + 1]) * 8) for i in range(first, first + 3)]
        body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
        assert sink.add_protobuf(body.SerializeToString()) == 3
    assert sink.flush() is not None  # the last export's spans, and it waits for the part before
    assert sink.flush() is None  # nothing left
    parts = sorted(tmp_path.glob("*.parquet"))
    assert len(parts) == 3 and not list(tmp_path.glob("*.tmp"))
    assert duckdb.sql(f"SELECT count(DISTINCT span_id) FROM read_parquet('{tmp_path}/*.parquet')").fetchall() == [(15,)]


def test_the_decoder_warms_up() -> None:
    assert warm_up() >= 0


def test_a_batch_larger_than_the_limit_is_decoded_in_halves(monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.traces import columnar

    bodies = [sdk_export() for _ in range(3)]
    whole = decode_exports([frame_export(b) for b in bodies]).table
    monkeypatch.setattr(columnar, "_MAX_DATA", len(bodies[0]))
    halves = decode_exports([frame_export(b) for b in bodies])
    assert halves.table.sort_by("span_id").to_pylist() == whole.sort_by("span_id").to_pylist()
    assert len(halves.received) == whole.num_rows == 15


def test_the_sink_refuses_every_body_that_is_not_an_export_and_takes_every_one_that_is(tmp_path: Path) -> None:
    """What the receiver answers 400 to: a body opentelemetry-proto cannot parse, however well it frames (the
    exporter is told at once, instead of a 200 and its spans dropped when the batch is decoded)."""
    import random

    rng = random.Random(7)
    original = sdk_export()
    sink = SpanSink(tmp_path, max_rows=1_000_000)
    refused = taken = 0
    for _ in range(300):
        body = bytearray(original)
        at = rng.randrange(len(body))
        body[at] = rng.randrange(256)
        try:
            decode_protobuf(bytes(body))
        except OtlpPayloadError:
            with pytest.raises(OtlpPayloadError):
                sink.add_protobuf(bytes(body))
            refused += 1
            continue
        sink.add_protobuf(bytes(body))
        taken += 1
    nested = b""
    for _ in range(5000):  # an export nested far deeper than any exporter writes
        nested = b"\x0a" + _varint(len(nested)) + nested
    with pytest.raises(OtlpPayloadError):
        sink.add_protobuf(nested)
    assert refused > 20 and taken > 20, (refused, taken)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
