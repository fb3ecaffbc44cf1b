"""The OTLP/HTTP trace receiver: ``POST /v1/traces`` in protobuf or JSON, optionally gzip-compressed.

Any OpenTelemetry SDK sends here once ``OTEL_EXPORTER_OTLP_ENDPOINT`` points at it. Bad payloads get 400,
unknown media types 415, oversized bodies 413 (before decompression and after: a small gzip body can expand
a thousandfold), and none of them can stop the receiver. A protobuf export is checked down to where each
span lies before it is answered; its spans are decoded with other exports in a batch (see SpanSink), and a
span whose own bytes turn out broken then is dropped and counted (``spans_dropped`` in ``/health``). Besides
OTLP, two routes serve Ratchet's run collector: how many spans arrived for a trace-id prefix (and how many of
them are requests' roots) and how long ago the last did, and a flush to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ratchet.traces.columnar import warm_up
from ratchet.traces.otlp import OtlpPayloadError, decode_json, span_columns
from ratchet.traces.store import SpanSink

MAX_BODY_BYTES = 16 << 20
MAX_DECODED_BYTES = 128 << 20
FLUSH_INTERVAL_S = 1.0
_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"


class _Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Rejected(413, f"body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise _Rejected(413, f"body is over the limit of {limit} bytes")
    return bytes(body)


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise _Rejected(415, f"Content-Encoding {encoding!r} is not supported (gzip, deflate or none)")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # 32: gzip or zlib header, detected
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _Rejected(400, f"body is not valid {encoding}: {exc}") from None
    if len(data) > limit:
        raise _Rejected(413, f"decompressed body is over the limit of {limit} bytes")
    return data


def create_receiver_app(
    spans_dir: Path,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
    token: str | None = None,
) -> Starlette:
    """The receiver, storing spans under ``spans_dir/incoming``; with a ``token``, every route but /health asks
    for it as a bearer token."""
    sink = SpanSink(spans_dir / "incoming")
    expected = f"Bearer {token}".encode() if token else None

    def refused(request: Request) -> Response | None:
        """401 when a token is asked for and this request does not carry it."""
        if expected is None:
            return None
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        return JSONResponse(
            {
                "error": "this receiver asks for a bearer token (Authorization: Bearer ...; the exporter's "
                "OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN)"
            },
            status_code=401,
        )

    async def export(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in (_PROTOBUF, _JSON):
            return JSONResponse({"error": f"Content-Type must be {_PROTOBUF} or {_JSON}"}, status_code=415)
        try:
            body = await _read_body(request, max_body_bytes)
            body = _decompress(body, request.headers.get("content-encoding", ""), max_decoded_bytes)
            # Decoding is CPU work: off the event loop, so other exporters are still answered.
            if media_type == _PROTOBUF:
                await asyncio.to_thread(sink.add_protobuf, body)
            else:
                columns = await asyncio.to_thread(lambda: span_columns(decode_json(body)))
                await asyncio.to_thread(sink.add, columns)
        except _Rejected as rejected:
            return JSONResponse({"error": rejected.message}, status_code=rejected.status)
        except OtlpPayloadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except RecursionError:  # a protobuf body nested deeper than any export
            return JSONResponse({"error": "not an OTLP export: nested too deeply"}, status_code=400)
        if media_type == _PROTOBUF:
            return Response(ExportTraceServiceResponse().SerializeToString(), media_type=_PROTOBUF)
        return JSONResponse({})

    async def prefix_activity(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        prefix = request.path_params["prefix"].lower()
        if sink.pending:  # protobuf exports are decoded in batches: count what has arrived so far
            await asyncio.to_thread(sink.flush)
        seen = sink.by_prefix.get(prefix)
        idle = None if seen is None else round(time.monotonic() - seen.last_received, 3)
        counts = {"spans": seen.spans, "roots": seen.roots} if seen else {"spans": 0, "roots": 0}
        return JSONResponse({"prefix": prefix, **counts, "idle_s": idle})

    async def flush(request: Request) -> Response:
        if (refusal := refused(request)) is not None:
            return refusal
        part = await asyncio.to_thread(sink.flush)
        return JSONResponse({"written": str(part) if part else None})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "spans_received": sink.received, "spans_dropped": sink.dropped})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Before accepting spans (uvicorn announces the receiver once this returns): the first export would
        # otherwise wait for the decoder to compile, past an SDK's export timeout on a fresh install.
        await asyncio.to_thread(warm_up)
        # What start-up made (numba's compiler among it, a million objects) is left out of the garbage collector's
        # passes while spans arrive: they cost a fifth of the ingest otherwise.
        gc.freeze()

        async def flush_every_second() -> None:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                await asyncio.to_thread(sink.flush)

        flusher = asyncio.create_task(flush_every_second())
        try:
            yield
        finally:
            flusher.cancel()
            await asyncio.to_thread(sink.flush)  # nothing received is lost on a clean stop
            gc.unfreeze()  # collected on the way out, as extension modules expect (duckdb's reports leaks else)

    return Starlette(
        routes=[
            Route("/v1/traces", export, methods=["POST"]),
            Route("/ratchet/prefixes/{prefix}", prefix_activity, methods=["GET"]),
            Route("/ratchet/flush", flush, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
