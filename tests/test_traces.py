"""The OTLP/HTTP receiver (`ratchet traces serve`, a real process) and the span store."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from ratchet.settings import Settings
from ratchet.traces.collect import receiver_headers, wait_for_run_spans
from ratchet.traces.receiver import MAX_BODY_BYTES
from ratchet.traces.serve import READY_LINE
from ratchet.traces.store import collect_run_spans, run_trace_prefix

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def stored_spans(settings: Settings, token: str | None = None) -> list[dict]:
    """Every span the receiver wrote, after asking it to flush."""
    httpx.post(f"{settings.otlp_url}/ratchet/flush", headers=receiver_headers(token)).raise_for_status()
    incoming = settings.home / "spans" / "incoming"
    if not list(incoming.glob("*.parquet")):
        return []
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{incoming}/*.parquet') ORDER BY start_ns")
    return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]


def export_with_sdk(
    endpoint: str, compression: Compression = Compression.NoCompression, headers: dict[str, str] | None = None
) -> None:
    """What an instrumented service does: the standard SDK and its OTLP/HTTP exporter, one request traced."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", compression=compression, headers=headers)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("GET /cart/{id}", kind=SpanKind.SERVER) as server:
        server.set_attributes(
            {
                "http.route": "/cart/{id}",
                "http.response.status_code": 200,
                "http.response.body.size": 5120,
                "http.request.method": "GET",
            }
        )
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT) as query:
            query.set_attributes({"db.system.name": "postgresql", "db.query.text": "SELECT * FROM cart WHERE id = $1"})
        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as call:
            call.set_attributes({"server.address": "127.0.0.1", "url.full": "http://127.0.0.1:9/prices"})
            call.set_status(Status(StatusCode.ERROR, "timeout"))
    provider.shutdown()


def test_spans_from_the_standard_sdk_are_stored_with_what_detectors_read(
    settings: Settings, trace_receiver: str
) -> None:
    export_with_sdk(trace_receiver)
    spans = {s["name"]: s for s in stored_spans(settings)}
    assert set(spans) == {"GET /cart/{id}", "SELECT cart", "GET"}
    server, query, call = spans["GET /cart/{id}"], spans["SELECT cart"], spans["GET"]
    assert server["kind"] == "server" and server["service"] == "checkout" and server["parent_span_id"] is None
    assert (server["route"], server["http_status"], server["body_size"]) == ("/cart/{id}", 200, 5120)
    assert query["parent_span_id"] == server["span_id"] and query["trace_id"] == server["trace_id"]
    assert (query["statement"], query["db_system"]) == ("SELECT * FROM cart WHERE id = $1", "postgresql")
    assert call["status"] == "error" and call["server_address"] == "127.0.0.1"
    assert server["start_ns"] <= query["start_ns"] <= query["end_ns"] <= server["end_ns"]
    assert len(server["trace_id"]) == 32 and len(server["span_id"]) == 16


def test_gzip_compressed_exports_are_accepted(settings: Settings, trace_receiver: str) -> None:
    export_with_sdk(trace_receiver, Compression.Gzip)
    assert len(stored_spans(settings)) == 3


def test_otlp_json_with_hex_ids(settings: Settings, trace_receiver: str) -> None:
    trace_id, span_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "legacy"}}]},
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "GET /health",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000004000000",
                                "attributes": [{"key": "http.status_code", "value": {"intValue": "503"}}],
                                "status": {"code": 2},
                            }
                        ]
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{trace_receiver}/v1/traces", json=document)
    assert response.status_code == 200, response.text
    [span] = stored_spans(settings)
    assert (span["trace_id"], span["span_id"], span["service"]) == (trace_id, span_id, "legacy")
    assert (span["kind"], span["status"], span["http_status"], span["duration_ms"]) == ("server", "error", 503, 4.0)


@pytest.mark.parametrize(
    ("headers", "body", "status", "message"),
    [
        (PROTOBUF, b"\xff\xff\xff not protobuf", 400, "not an OTLP protobuf"),
        ({"Content-Type": "application/json"}, b"{not json", 400, "not JSON"),
        ({"Content-Type": "application/json"}, b'{"resourceSpans": [{"scopeSpans": 7}]}', 400, "OTLP/JSON"),
        (
            {"Content-Type": "application/json"},
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            400,
            "OTLP/JSON",
        ),
        (
            {"Content-Type": "application/json"},
            b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            400,
            "nested too deeply",
        ),
        ({"Content-Type": "text/plain"}, b"hello", 415, "Content-Type must be"),
        (PROTOBUF | {"Content-Encoding": "gzip"}, b"not gzip at all", 400, "not valid gzip"),
        (PROTOBUF | {"Content-Encoding": "br"}, b"x", 415, "Content-Encoding"),
        (PROTOBUF, b"\0" * (MAX_BODY_BYTES + 1), 413, "over the limit"),
        # 200 MB of zeros shrink to 200 KB: the limit holds after decompression too.
        (PROTOBUF | {"Content-Encoding": "gzip"}, gzip.compress(b"\0" * (200 << 20)), 413, "decompressed"),
    ],
    ids=[
        "garbage-protobuf",
        "bad-json",
        "json-wrong-shape",
        "json-bad-hex-id",
        "json-nested-too-deeply",
        "text-plain",
        "bad-gzip",
        "brotli",
        "oversized",
        "gzip-bomb",
    ],
)
def test_bad_payloads_get_the_right_error_and_the_receiver_carries_on(
    settings: Settings, trace_receiver: str, headers: dict[str, str], body: bytes, status: int, message: str
) -> None:
    response = httpx.post(f"{trace_receiver}/v1/traces", content=body, headers=headers, timeout=30)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert stored_spans(settings) == []
    export_with_sdk(trace_receiver)  # still receiving
    assert len(stored_spans(settings)) == 3


def test_wrong_method_and_path_are_refused(trace_receiver: str) -> None:
    assert httpx.get(f"{trace_receiver}/v1/traces").status_code == 405
    assert httpx.post(f"{trace_receiver}/v1/metrics", content=b"", headers=PROTOBUF).status_code == 404


def test_a_runs_spans_are_those_whose_trace_id_carries_its_prefix(
    settings: Settings, trace_receiver: str, tmp_path: Path
) -> None:
    prefix = run_trace_prefix("campaign-1-baseline")
    other = run_trace_prefix("campaign-2-baseline")

    def span(trace_id: str, span_id: str, start_s: float = 0.0, parent: str = "") -> dict:
        start = int(1e18 + start_s * 1e9)
        return {
            "traceId": trace_id,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": "GET /x",
            "kind": 2,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 1000),
        }

    spans = [
        span(prefix + "00" + "1" * 16, "a" * 16, parent="1" * 16),  # a request's root: its parent is the k6 span
        span(prefix + "01" + "2" * 16, "b" * 16, 3.0),
        span(other + "00" + "3" * 16, "c" * 16),
    ]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    assert httpx.post(f"{trace_receiver}/v1/traces", json=body).status_code == 200
    activity = httpx.get(f"{trace_receiver}/ratchet/prefixes/{prefix}").json()
    assert activity["spans"] == 2 and activity["roots"] == 1 and activity["idle_s"] >= 0
    # A run read for its roots only is collected once its answered requests' roots are in, without waiting
    # out the target's settle.
    waited: list[str] = []
    note = asyncio.run(
        wait_for_run_spans(trace_receiver, prefix, settle_s=60, max_wait_s=60, on_wait=waited.append, roots_expected=1)
    )
    assert (note, waited) == ("", [])
    stored_spans(settings)  # flushed

    out = tmp_path / "run.parquet"
    count = collect_run_spans(settings.home / "spans" / "incoming", prefix, out, ["orders", "product"])
    assert count == 2
    rows = duckdb.sql(f"SELECT span_id, endpoint FROM read_parquet('{out}') ORDER BY span_id").fetchall()
    assert rows == [("a" * 16, "orders"), ("b" * 16, "product")]
    # A run with a 2 s warm-up marks the traces that began in it: the analyses leave them out.
    assert collect_run_spans(settings.home / "spans" / "incoming", prefix, out, ["orders", "product"], 2.0) == 2
    marked = duckdb.sql(f"SELECT span_id, warmup FROM read_parquet('{out}') ORDER BY span_id").fetchall()
    assert marked == [("a" * 16, True), ("b" * 16, False)]
    assert json.loads(httpx.get(f"{trace_receiver}/health").text)["spans_received"] == 3


def test_a_receiver_with_a_token_takes_spans_only_from_those_who_carry_it(settings: Settings, tmp_path: Path) -> None:
    """RATCHET_OTLP_TOKEN: exporters and Ratchet's own calls carry it as a bearer token; /health stays open."""
    from tests.conftest import ROOT

    token = "s3cret-token"
    env = os.environ | {
        "RATCHET_HOME": str(settings.home),
        "RATCHET_OTLP_PORT": str(settings.otlp_port),
        "RATCHET_OTLP_TOKEN": token,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ratchet.cli", "traces", "serve"], stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    try:
        assert process.stdout is not None and READY_LINE in process.stdout.readline()
        url = settings.otlp_url
        assert httpx.get(f"{url}/health", timeout=30).status_code == 200
        refused = httpx.post(f"{url}/v1/traces", content=b"", headers=PROTOBUF, timeout=30)
        assert refused.status_code == 401 and "bearer token" in refused.json()["error"]
        wrong = httpx.get(f"{url}/ratchet/prefixes/abc", headers={"Authorization": "Bearer guess"}, timeout=30)
        assert wrong.status_code == 401
        export_with_sdk(url)  # the exporter without the token: nothing stored
        assert stored_spans(settings, token) == []
        export_with_sdk(url, headers=receiver_headers(token))
        note = asyncio.run(wait_for_run_spans(url, "abc", settle_s=0, max_wait_s=5, on_wait=print, token=token))
        assert "not reachable" not in note
        assert len(stored_spans(settings, token)) == 3
    finally:
        process.terminate()
        process.wait(timeout=10)
