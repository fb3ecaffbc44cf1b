"""OpenTelemetry for the shop: server spans per request, a span per SQL statement (with its text), client
spans for outbound HTTP calls, exported over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``.

Standard SDK and instrumentation libraries only: the shop is traced the way any Python service would be.
Without an endpoint in the environment the shop runs untraced.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def tracing_configured() -> bool:
    """True when the environment names an OTLP endpoint (the standard variables)."""
    return any(os.environ.get(name) for name in _ENDPOINT_VARIABLES)


def instrument(app: FastAPI, service_name: str) -> TracerProvider | None:
    """Trace ``app``, its SQL statements (SQLite or PostgreSQL) and its outbound httpx calls; None when tracing
    is not configured.

    Call before the first database connection is opened: the sqlite3 and psycopg instrumentations wrap
    ``connect``.
    """
    if not tracing_configured():
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    # The SDK's defaults (OTEL_BSP_* variables) apply; the shop only shortens the default delay so a load
    # test's last spans arrive within a second of its last request.
    delay_ms = int(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=delay_ms))
    trace.set_tracer_provider(provider)
    SQLite3Instrumentor().instrument(tracer_provider=provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    # The ASGI "receive"/"send" sub-spans say nothing about where time goes and triple the span count.
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    return provider


def trace_service(app: FastAPI, service_name: str) -> TracerProvider | None:
    """Trace one of the shop's downstream services under its own name; None when tracing is not configured.

    A provider of its own rather than the global one: several services share a process, and each must show
    up in traces as the separate service it stands for.
    """
    if not tracing_configured():
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    delay_ms = int(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=delay_ms))
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=["receive", "send"])
    return provider
