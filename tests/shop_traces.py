"""Reading the demo shop's spans in tests: a real `ratchet traces serve`, requests that start known traces."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

from ratchet.analysis.traces.concurrency import max_concurrency as intervals_at_once

Span = dict[str, Any]
SHOP_SERVICE = "demo-shop"


def new_trace() -> tuple[str, dict[str, str]]:
    """A fresh trace id and the W3C ``traceparent`` header that makes a request start that trace."""
    trace_id = secrets.token_hex(16)
    return trace_id, {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}


@dataclass
class SpanReceiver:
    """A running OTLP receiver (`ratchet traces serve`) and the folder it writes spans to."""

    url: str
    incoming: Path

    def spans(self, trace_ids: Iterable[str], until: Callable[[list[Span]], bool], timeout_s: float = 60) -> list[Span]:
        """The spans of ``trace_ids`` (oldest first) once ``until(spans)`` holds; polls against a deadline.

        Spans arrive in batches whenever the exporters of the shop and of its services send them, so a test
        waits for the spans it knows must come (e.g. the shop's server span, which ends last).
        """
        wanted = sorted(set(trace_ids))
        deadline = time.monotonic() + timeout_s
        while True:
            httpx.post(f"{self.url}/ratchet/flush", timeout=30).raise_for_status()
            found: list[Span] = []
            if any(self.incoming.glob("*.parquet")):
                relation = duckdb.sql(
                    "SELECT * FROM read_parquet(?) WHERE list_contains(?, trace_id) ORDER BY start_ns, end_ns",
                    params=[str(self.incoming / "*.parquet"), wanted],
                )
                found = [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]
            if until(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"spans of {len(wanted)} trace(s) still incomplete after {timeout_s} s: {found}")
            time.sleep(0.1)


def shop_servers(spans: list[Span]) -> list[Span]:
    """The shop's own server spans (one per request it served)."""
    return [s for s in spans if s["kind"] == "server" and s["service"] == SHOP_SERVICE]


def service_servers(spans: list[Span], service: str) -> list[Span]:
    """The server spans of one downstream service."""
    return [s for s in spans if s["kind"] == "server" and s["service"] == service]


def children(spans: list[Span], parent: Span) -> list[Span]:
    """The spans directly under ``parent``, oldest first."""
    return [s for s in spans if s["parent_span_id"] == parent["span_id"]]


def statements(spans: list[Span]) -> list[str]:
    """The SQL text of every database span, in the order they started."""
    return [s["statement"] for s in spans if s["statement"]]


def max_concurrency(spans: list[Span]) -> int:
    """The largest number of ``spans`` in progress at one instant (one that ends as another starts: not both)."""
    return intervals_at_once([(s["start_ns"], s["end_ns"]) for s in spans])


@dataclass
class TracedShop:
    """A running shop whose spans go to ``receiver``."""

    url: str
    receiver: SpanReceiver

    def get(
        self, path: str, *, downstream: dict[str, int] | None = None, **kwargs: Any
    ) -> tuple[httpx.Response, list[Span]]:
        """``GET path`` in a trace of its own; returns the response and the trace's spans.

        ``downstream`` names the services whose server spans the trace must hold (service → count) before it
        is complete: they come from another process, on their own schedule.
        """
        trace_id, headers = new_trace()
        response = httpx.get(f"{self.url}{path}", headers=headers | kwargs.pop("headers", {}), timeout=60, **kwargs)
        spans = self.receiver.spans([trace_id], until=lambda found: _complete(found, 1, downstream or {}))
        return response, spans


def _complete(spans: list[Span], requests: int, downstream: dict[str, int]) -> bool:
    return len(shop_servers(spans)) >= requests and all(
        len(service_servers(spans, service)) >= count for service, count in downstream.items()
    )


def wait_complete(receiver: SpanReceiver, trace_ids: list[str], downstream: dict[str, int]) -> list[Span]:
    """The spans of several requests (one trace each), once every shop server span and ``downstream`` arrived."""
    return receiver.spans(trace_ids, until=lambda found: _complete(found, len(trace_ids), downstream))
