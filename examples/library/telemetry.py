"""OpenTelemetry for the library, per gunicorn worker: Flask server spans, a span per SQL statement from the
database driver (psycopg, under SQLAlchemy), httpx client spans, exported over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``. Untraced without it.

Standard SDK and instrumentations only. Statements are traced at the driver: the SQLAlchemy instrumentation
(0.66b1) declines SQLAlchemy 2.1 and traces nothing. Set up after the fork (``create_app`` runs in each worker): the
batch exporter's thread does not survive a fork.
"""

from __future__ import annotations

import os

from flask import Flask
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def instrument(app: Flask, service_name: str) -> None:
    """Trace ``app``, the psycopg connections opened after this call, and httpx clients."""
    if not (os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    delay_ms = int(os.environ.get("OTEL_BSP_SCHEDULE_DELAY", "500"))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=delay_ms))
    trace.set_tracer_provider(provider)
    PsycopgInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
