"""Ingest 1,000,000 spans as OpenTelemetry SDKs export them: Ratchet's receiver path vs a json.loads line loop.

    python -m bench.spans fixture PATH SPANS   write PATH (OTLP protobuf exports) and its OTLP/JSON twin
    python -m bench.spans warm PATH            make Ratchet's decoder ready (compiled at install, else numba's)
    python -m bench.spans ours PATH            each export into the receiver's SpanSink (Parquet parts), a check
    python -m bench.spans naive JSON_PATH      json.loads every export, loop over its spans building dicts

PATH holds ExportTraceServiceRequest messages, each preceded by its length (4 bytes, big-endian): the bodies
the SDK's BatchSpanProcessor POSTs, 512 spans at most each, grouped by resource and instrumentation scope as
its OTLP encoder groups them. ``json_path(PATH)`` holds the same exports in the OTLP/HTTP JSON encoding (ids in
hex, enums as integers), one per line. The traces are the demo shop's: a FastAPI server span (the k6 script's
``traceparent`` makes it a child of a remote span, with the run's trace-id prefix), SQLite statements, and for
some products an httpx call to a pricing service that is traced too (with the newer HTTP semantic conventions).
1% of requests fail with an exception event. The result check is the number of spans per name and their
total duration, which both paths must agree on (Ratchet's read back from the Parquet it wrote; the naive loop
writes nothing, so it is timed for less work).

Ratchet's decoder is compiled once per install (and after a change of its sources): ahead of time into an
extension module, and by numba into a cache on disk (the fallback; RATCHET_SPAN_DECODER=numba picks it).
``warm`` runs before the timed step, in its own process, and its time is reported apart. Each step reports
``work_s``, the ingest itself: from the first export to the check, after the process has started (imports;
the compiled decoder loaded, which the receiver does once, before it announces itself). The whole process,
start-up included, is timed by ``bench.measure`` as well.
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.measure import step_main

BATCH_SPANS = 512  # BatchSpanProcessor's default max_export_batch_size
_LENGTH = struct.Struct(">I")
_SHOP = "127.0.0.1:8800"
_PRICING = "127.0.0.1:8810"
_STACKTRACE = "".join(
    f'  File "/srv/shop/.venv/lib/python3.11/site-packages/starlette/routing.py", line {70 + i}, in app\n'
    "    response = await f(request)\n"
    for i in range(12)
)


def json_path(path: Path) -> Path:
    """Where the OTLP/JSON twin of a protobuf fixture is kept."""
    return path.with_suffix(".jsonl")


def _read_exports(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while header := source.read(_LENGTH.size):
            (size,) = _LENGTH.unpack(header)
            yield source.read(size)


# --- the fixture -------------------------------------------------------------------------------------------


class _Fixture:
    """Builds the traces of a load test on the demo shop, span by span, and batches them as the SDK would."""

    def __init__(self, total: int) -> None:
        from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope, KeyValue
        from opentelemetry.proto.resource.v1.resource_pb2 import Resource

        from ratchet.traces.store import run_trace_prefix

        self.total = total
        self.made = 0
        self.rng = np.random.default_rng(20261123)
        self.prefix = bytes.fromhex(run_trace_prefix("bench-campaign-baseline"))
        self.KeyValue = KeyValue

        def resource(service: str, pid: int) -> Resource:
            return Resource(
                attributes=self._attributes(
                    {
                        "telemetry.sdk.language": "python",
                        "telemetry.sdk.name": "opentelemetry",
                        "telemetry.sdk.version": "1.45.1",
                        "service.name": service,
                        "host.name": "perf-lab-1",
                        "process.pid": pid,
                        "process.runtime.name": "cpython",
                        "process.runtime.version": "3.11.7",
                    }
                )
            )

        def scope(name: str, schema: str) -> tuple[InstrumentationScope, str]:
            return InstrumentationScope(name=f"opentelemetry.instrumentation.{name}", version="0.66b1"), schema

        old, new = "https://opentelemetry.io/schemas/1.11.0", "https://opentelemetry.io/schemas/1.21.0"
        self.resources = {"demo-shop": resource("demo-shop", 4242), "pricing": resource("pricing", 4343)}
        self.scopes = {
            "fastapi": scope("fastapi", old),
            "sqlite3": scope("sqlite3", old),
            "httpx": scope("httpx", old),
            "pricing-fastapi": scope("fastapi", new),
        }
        # Per service: spans finished and not yet exported, in the order they ended (as the SDK queues them).
        self.queues: dict[str, list[tuple[str, Any]]] = {"demo-shop": [], "pricing": []}

    def _attributes(self, values: dict[str, Any]) -> list[Any]:
        from opentelemetry.proto.common.v1.common_pb2 import AnyValue

        pairs = []
        for key, value in values.items():
            if isinstance(value, bool):
                any_value = AnyValue(bool_value=value)
            elif isinstance(value, int):
                any_value = AnyValue(int_value=value)
            elif isinstance(value, float):
                any_value = AnyValue(double_value=value)
            else:
                any_value = AnyValue(string_value=str(value))
            pairs.append(self.KeyValue(key=key, value=any_value))
        return pairs

    def _span(
        self,
        trace_id: bytes,
        parent: bytes,
        name: str,
        kind: int,
        start: int,
        end: int,
        attributes: dict[str, Any],
        *,
        span_id: bytes | None = None,
        remote_parent: bool = False,
        error: str | None = None,
    ) -> tuple[Any, bytes]:
        from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

        span_id = span_id or self.rng.bytes(8)
        span = Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent,
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=start,
            end_time_unix_nano=end,
            attributes=self._attributes(attributes),
            status=Status(code=2, message=error) if error else Status(),  # type: ignore[arg-type]
            flags=0x300 if remote_parent else 0x100,
        )
        if error:
            span.events.append(
                Span.Event(
                    time_unix_nano=end - 1000,
                    name="exception",
                    attributes=self._attributes(
                        {
                            "exception.type": "sqlite3.OperationalError",
                            "exception.message": error,
                            "exception.stacktrace": "Traceback (most recent call last):\n" + _STACKTRACE + error,
                            "exception.escaped": "False",
                        }
                    ),
                )
            )
        return span, span_id

    def _finish(self, service: str, scope: str, span: Any) -> Iterator[bytes]:
        if self.made == self.total:
            return
        self.made += 1
        queue = self.queues[service]
        queue.append((scope, span))
        if len(queue) == BATCH_SPANS:
            yield self._export(service)

    def _export(self, service: str) -> bytes:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
        from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans

        by_scope: dict[str, list[Any]] = {}
        for scope, span in self.queues[service]:
            by_scope.setdefault(scope, []).append(span)
        self.queues[service] = []
        scope_spans = [
            ScopeSpans(scope=self.scopes[s][0], spans=spans, schema_url=self.scopes[s][1])
            for s, spans in by_scope.items()
        ]
        request = ExportTraceServiceRequest(
            resource_spans=[ResourceSpans(resource=self.resources[service], scope_spans=scope_spans)]
        )
        return request.SerializeToString()

    def exports(self) -> Iterator[bytes]:
        """Every export of the load test, in the order the services send them."""
        request = 0
        base_ns = 1_795_860_000_000_000_000  # 2026-11-28T10:00:00Z
        while self.made < self.total:
            yield from self._request(request, base_ns + request * 1_000_000)
            request += 1
        for service, queue in self.queues.items():
            if queue:
                yield self._export(service)

    def _request(self, number: int, start: int) -> Iterator[bytes]:
        rng = self.rng
        endpoint = int(rng.integers(0, 4))
        trace_id = self.prefix + bytes([endpoint]) + rng.bytes(8)
        failed = rng.random() < 0.01
        client_port = 40000 + number % 20000
        # What each endpoint runs (the demo shop's handlers), and how long its statements take, in ns.
        if endpoint == 0:
            route, target = "/orders", f"/orders?email=customer{number % 50000}%40example.com"
            statements = [
                (
                    "SELECT id, product_id, quantity, total_cents, status, created_at FROM orders "
                    "WHERE customer_email = ? ORDER BY created_at DESC LIMIT 50",
                    40e6,
                )
            ]
        elif endpoint == 1:
            route, target = "/products/{product_id}", f"/products/{number % 5000}"
            statements = [("SELECT * FROM products WHERE id = ?", 0.3e6)]
        elif endpoint == 2:
            route, target = "/customers/{customer_id}", f"/customers/{number % 50000}"
            statements = [
                ("SELECT * FROM customers WHERE id = ?", 0.3e6),
                ("SELECT count(*) FROM orders WHERE customer_id = ?", 2e6),
            ]
        else:
            route, target = "/health", "/health"
            statements = [("SELECT 1", 0.05e6)]
        status = 500 if failed else 200
        error = "database is locked" if failed else None
        server_id = rng.bytes(8)  # the server span's id, known before its children start
        clock = start + int(rng.integers(50_000, 200_000))
        children: list[tuple[str, Any]] = []
        for position, (statement, typical_ns) in enumerate(statements):
            took = int(rng.lognormal(np.log(typical_ns), 0.5))
            span, _ = self._span(
                trace_id,
                server_id,
                statement.split()[0],
                3,
                clock,
                clock + took,
                {"db.system": "sqlite", "db.name": "shop.db", "db.statement": statement},
                error=error if failed and position == len(statements) - 1 else None,
            )
            children.append(("sqlite3", span))
            clock += took + int(rng.integers(10_000, 50_000))
        pricing: list[tuple[str, Any]] = []
        if endpoint == 1 and not failed and rng.random() < 0.3:
            sku = number % 5000
            took = int(rng.lognormal(np.log(4e6), 0.4))
            call, call_id = self._span(
                trace_id,
                server_id,
                "GET",
                3,
                clock,
                clock + took,
                {"http.method": "GET", "http.url": f"http://{_PRICING}/prices/{sku}", "http.status_code": 200},
            )
            served = clock + 300_000
            query_ns = int(rng.lognormal(np.log(0.5e6), 0.3))
            priced, priced_id = self._span(
                trace_id,
                call_id,
                "GET /prices/{sku}",
                2,
                served,
                served + query_ns + 400_000,
                {
                    "http.request.method": "GET",
                    "url.scheme": "http",
                    "url.path": f"/prices/{sku}",
                    "http.route": "/prices/{sku}",
                    "server.address": "127.0.0.1",
                    "server.port": 8810,
                    "network.protocol.version": "1.1",
                    "client.address": "127.0.0.1",
                    "client.port": client_port,
                    "user_agent.original": "python-httpx/0.28.1",
                    "http.response.status_code": 200,
                    "http.response.body.size": 64,
                },
                remote_parent=True,
            )
            lookup, _ = self._span(
                trace_id,
                priced_id,
                "SELECT",
                3,
                served + 100_000,
                served + 100_000 + query_ns,
                {
                    "db.system": "sqlite",
                    "db.name": "pricing.db",
                    "db.statement": "SELECT cents FROM prices WHERE sku = ?",
                },
            )
            pricing = [("sqlite3", lookup), ("pricing-fastapi", priced)]
            children.append(("httpx", call))
            clock += took
        end = clock + int(rng.integers(100_000, 400_000))
        server, _ = self._span(
            trace_id,
            rng.bytes(8),
            f"GET {route}",
            2,
            start,
            end,
            {
                "http.scheme": "http",
                "http.host": _SHOP,
                "net.host.port": 8800,
                "http.flavor": "1.1",
                "http.target": target,
                "http.url": f"http://{_SHOP}{target}",
                "http.method": "GET",
                "http.server_name": _SHOP,
                "http.user_agent": "k6/1.1.0 (https://k6.io/)",
                "net.peer.ip": "127.0.0.1",
                "net.peer.port": client_port,
                "http.route": route,
                "http.status_code": status,
            }
            | ({"http.response_content_length": int(rng.integers(200, 20_000))} if not failed else {}),
            span_id=server_id,
            remote_parent=True,
            error=error,
        )
        for scope, span in pricing:
            yield from self._finish("pricing", scope, span)
        for scope, span in children:
            yield from self._finish("demo-shop", scope, span)
        yield from self._finish("demo-shop", "fastapi", server)


def _as_otlp_json(body: bytes) -> str:
    """One export in the OTLP/JSON encoding: protobuf's JSON mapping, but hex ids and integer enums."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body), use_integers_for_enums=True)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = _base64_to_hex(span[key])
    return json.dumps(document, separators=(",", ":"))


def _base64_to_hex(value: str) -> str:
    import base64

    return base64.b64decode(value).hex()


def write_fixture(path: Path, spans: int) -> None:
    """``spans`` spans as protobuf exports in ``path`` and as OTLP/JSON lines beside it (deterministic)."""
    tmp, json_tmp = path.with_suffix(".tmp"), json_path(path).with_suffix(".jsonl.tmp")
    with tmp.open("wb") as out, json_tmp.open("w", encoding="utf-8") as json_out:
        for body in _Fixture(spans).exports():
            out.write(_LENGTH.pack(len(body)) + body)
            json_out.write(_as_otlp_json(body) + "\n")
    json_tmp.replace(json_path(path))
    tmp.replace(path)  # last: the protobuf file's presence says both are complete


# --- the two paths -------------------------------------------------------------------------------------------


def ours(path: Path) -> dict[str, object]:
    """Ratchet's path, as the receiver runs it for each POST (``SpanSink.add_protobuf``: framed on arrival,
    decoded in batches into Parquet parts), then the check with DuckDB over the parts."""
    import gc

    import duckdb

    from ratchet.traces.columnar import warm_up
    from ratchet.traces.store import SpanSink

    # As the receiver starts: the compiled decoder loaded from numba's cache (in the time), then what start-up
    # made kept out of the garbage collector's passes until the end.
    warm_up()
    gc.freeze()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        sink = SpanSink(Path(tmp) / "incoming")
        for body in _read_exports(path):
            sink.add_protobuf(body)
        sink.flush()
        spans = f"read_parquet('{sink.incoming_dir}/*.parquet')"
        with duckdb.connect() as con:
            by_name = con.execute(f"SELECT name, count(*) FROM {spans} GROUP BY name ORDER BY name").fetchall()
            total = con.execute(f"SELECT count(*), sum(end_ns - start_ns) FROM {spans}").fetchone()
        assert total is not None
        check = {"spans": int(total[0]), "by_name": dict(by_name), "duration_ms": int(total[1]) / 1e6}
        parts_written = len(list(sink.incoming_dir.glob("*.parquet")))
        work_s = time.perf_counter() - started
    gc.unfreeze()
    return {"check": check, "parquet_parts": parts_written, "work_s": work_s}


def warm(path: Path) -> dict[str, object]:
    """Make the decoder ready, as the receiver does when it starts (the one compiled at install, else numba's)."""
    from ratchet.traces.columnar import decoder, warm_up

    return {"warm_s": round(warm_up(), 2), "decoder": decoder()}


def _naive_value(value: dict[str, Any]) -> Any:
    kind, content = next(iter(value.items()), (None, None))
    return int(content) if kind == "intValue" else content


def naive(path: Path) -> dict[str, object]:
    """The baseline anyone would write first: json.loads per export, a dict per span, counted as it goes."""
    started = time.perf_counter()
    by_name: Counter[str] = Counter()
    total_ns = 0
    spans = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            export = json.loads(line)
            for resource_spans in export.get("resourceSpans", []):
                resource = resource_spans.get("resource", {}).get("attributes", [])
                service = {a["key"]: _naive_value(a["value"]) for a in resource}.get("service.name", "")
                for scope_spans in resource_spans.get("scopeSpans", []):
                    for raw in scope_spans.get("spans", []):
                        span = {
                            "trace_id": raw["traceId"],
                            "span_id": raw["spanId"],
                            "parent_span_id": raw.get("parentSpanId"),
                            "name": raw["name"],
                            "kind": raw.get("kind", 0),
                            "service": service,
                            "start_ns": int(raw["startTimeUnixNano"]),
                            "end_ns": int(raw["endTimeUnixNano"]),
                            "status": raw.get("status", {}).get("code", 0),
                            "attributes": {a["key"]: _naive_value(a["value"]) for a in raw.get("attributes", [])},
                        }
                        spans += 1
                        by_name[span["name"]] += 1
                        total_ns += span["end_ns"] - span["start_ns"]
    check = {"spans": spans, "by_name": dict(sorted(by_name.items())), "duration_ms": total_ns / 1e6}
    return {"check": check, "work_s": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    step_main(argv, write_fixture, {"warm": warm, "ours": ours, "naive": naive})


if __name__ == "__main__":
    main(sys.argv[1:])
