"""Observability gaps: what of a target Ratchet could not see in a run, what that hides, and how to open it.

A detector that saw nothing is silent, and silence reads as "nothing wrong". So every gap is said, at the top
of the status, the planning events and the report: a target without traces, a run whose spans never came, a
database whose statements are not traced, spans whose parents never arrived, requests mostly untraced.
"""

from __future__ import annotations

from ratchet.analysis.traces.coverage import SpanCoverage
from ratchet.config.target import Target
from ratchet.contracts import BlindSpot, EndpointStats

# A few lost parents are exports cut at the run's edges; past this share the context is lost in the service.
ORPHAN_SHARE = 0.05
MIN_ORPHANS = 20
# Below this share of an endpoint's requests traced, counts across traces (an N+1 "in 3 traces") mislead.
SAMPLED_COVERAGE = 0.5
MIN_REQUESTS = 20

_INSIDE = ["N+1 queries and calls", "statement shares", "sequential calls", "the critical path of a request"]
_OUTSIDE_ONLY = [*_INSIDE, "time inside the service (verdicts use the client's clock)"]
_TRACING = (
    "Instrument it with OpenTelemetry (e.g. `opentelemetry-instrument` with the framework's and the database "
    "driver's instrumentations), export OTLP/HTTP to `ratchet traces serve` (port RATCHET_OTLP_PORT, same "
    "RATCHET_HOME as the workers) and declare `traces:` in the target."
)


def blind_spots(
    target: Target, baseline: list[EndpointStats], coverage: SpanCoverage | None, *, spans_expected: bool
) -> list[BlindSpot]:
    """The gaps of one run. ``coverage`` is None when no span of the run was kept; ``spans_expected`` says
    whether the target declares traces."""
    if not spans_expected:
        return [
            BlindSpot(
                kind="untraced",
                blind_to=_OUTSIDE_ONLY,
                summary="the target declares no traces: Ratchet sees its answers and latency from outside only",
                advice=_TRACING,
            )
        ]
    if coverage is None or coverage.spans == 0:
        return [
            BlindSpot(
                kind="no-spans",
                blind_to=_OUTSIDE_ONLY,
                summary="no span of the run arrived although the target declares traces",
                advice="Check that the service exports OTLP/HTTP to the receiver's address (OTEL_EXPORTER_OTLP_"
                "ENDPOINT) and that `ratchet traces serve` runs with the workers' RATCHET_HOME.",
            )
        ]
    gaps: list[BlindSpot] = []
    if target.database is not None and coverage.database_spans == 0:
        gaps.append(
            BlindSpot(
                kind="no-database-spans",
                blind_to=["N+1 queries", "statement shares", "plans of unlisted statements"],
                summary="the traces hold no database span although the target has a database",
                advice="Instrument the database driver (opentelemetry-instrumentation-sqlite3, -psycopg, -sqlalchemy); "
                "sqlite3's Connection.execute shortcut is not traced, a cursor's execute is; statements run in a "
                "thread pool need the request's context carried into it. Until then only the target's declared "
                "`queries:` are planned.",
                evidence={"spans": coverage.spans},
            )
        )
    share = coverage.orphans / coverage.children if coverage.children else 0.0
    if coverage.orphans >= MIN_ORPHANS and share >= ORPHAN_SHARE:
        hidden = ["N+1 queries and calls", "statement shares"] if coverage.orphan_database_spans else []
        gaps.append(
            BlindSpot(
                kind="orphan-spans",
                blind_to=[*hidden, "the critical path of the requests they belong to"],
                summary=f"{share:.0%} of the spans inside requests ({coverage.orphans} of {coverage.children}) arrived "
                "without their parent: their work is not counted in any request",
                advice="Carry the trace context into thread pools and executors (opentelemetry-instrumentation-"
                "threading, or contextvars.copy_context().run for each submitted task), and export the parents' "
                "service too.",
                evidence={
                    "orphans": coverage.orphans,
                    "children": coverage.children,
                    "orphan_database_spans": coverage.orphan_database_spans,
                },
            )
        )
    sampled = {
        stats.endpoint: coverage.traced_requests.get(stats.endpoint, 0) / stats.requests
        for stats in baseline
        if stats.requests >= MIN_REQUESTS
    }
    thin = sorted(e for e, traced in sampled.items() if traced < SAMPLED_COVERAGE)
    if thin:
        gaps.append(
            BlindSpot(
                kind="sampled",
                endpoints=thin,
                blind_to=["repeats counted across traces", "time inside the service"],
                summary="fewer than half of these endpoints' requests arrived as traces (sampling, or spans lost)",
                advice="Trace every request while Ratchet measures (OTEL_TRACES_SAMPLER=parentbased_always_on); "
                "until then their verdicts use the client's clock.",
                evidence={"traced_share": {e: round(sampled[e], 3) for e in thin}},
            )
        )
    return gaps
