"""Bottlenecks read from traces: the critical path of every request, then the detectors over it."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from ratchet.analysis.traces.critical_path import annotate, self_time
from ratchet.analysis.traces.detectors import (
    Dependency,
    StatementCandidate,
    Traffic,
    dominant_statements,
    n_plus_one,
    n_plus_one_api,
    pool_waits,
    queueing,
    repeated_query_groups,
    self_time_of_roots,
    sequential_calls,
    slowest_dependency,
    traffic,
)
from ratchet.config.playbook import Detection
from ratchet.contracts import Finding


@dataclass
class TraceAnalysis:
    """What the spans of a run showed."""

    findings: list[Finding] = field(default_factory=list)
    statements: list[StatementCandidate] = field(default_factory=list)
    own_work: dict[str, tuple[float, float, list[str]]] = field(default_factory=dict)
    mix: Traffic = field(default_factory=lambda: Traffic({}))
    server_p95_ms: dict[str, float] = field(default_factory=dict)
    """Per endpoint, the p95 of its server spans: the time spent inside the service."""
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    """Per endpoint, the outbound calls its requests wait on most."""
    server_mean_ms: dict[str, float] = field(default_factory=dict)
    """Per endpoint, the mean of its server spans: what a statement's share of the request is taken of."""


def analyze_run(con: duckdb.DuckDBPyConnection, source: str, rules: Detection) -> TraceAnalysis:
    """Every span detector over the spans in ``source`` (a run's requests at a steady load)."""
    annotate(con, source)
    self_time(con)
    mix = traffic(con)
    groups = repeated_query_groups(con, mix, rules)
    # A statement of a repeated group is that group's N+1, not one of its own.
    grouped = {(f.endpoint, statement) for f in groups for statement in f.evidence["statements"]}
    findings = [f for f in n_plus_one(con, mix, rules) if (f.endpoint, f.evidence["statement"]) not in grouped]
    findings += groups + sequential_calls(con, mix, rules) + n_plus_one_api(con, mix, rules)
    findings += queueing(con, mix, rules)
    inside = con.execute("SELECT endpoint, quantile_cont(root_ms, 0.95), avg(root_ms) FROM req GROUP BY endpoint")
    server = inside.fetchall()
    return TraceAnalysis(
        findings,
        dominant_statements(con, mix, rules),
        self_time_of_roots(con),
        mix,
        {endpoint: p95 for endpoint, p95, _ in server},
        slowest_dependency(con),
        {endpoint: mean for endpoint, _, mean in server},
    )


def analyze_burst(con: duckdb.DuckDBPyConnection, source: str, rules: Detection, mix: Traffic) -> list[Finding]:
    """What only shows under concurrency (queueing for a dependency or a database connection), from the spans
    of a burst of simultaneous requests; impact is weighed by the steady run's traffic ``mix``."""
    annotate(con, source)
    return queueing(con, mix, rules) + pool_waits(con, mix, rules)
