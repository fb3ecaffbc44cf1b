"""Checking measured endpoints against the playbook's service-level targets."""

from __future__ import annotations

from ratchet.config.playbook import Playbook
from ratchet.contracts import EndpointStats, SloCheck


def check_slos(stats: list[EndpointStats], playbook: Playbook) -> list[SloCheck]:
    """One check per endpoint and target (p95, p99, error rate) that the playbook sets."""
    checks = []
    for endpoint in stats:
        slo = playbook.slo.for_endpoint(endpoint.endpoint)
        if slo.p95_ms is not None:
            checks.append(_check(endpoint.endpoint, "p95_ms", slo.p95_ms, endpoint.p95))
        if slo.p99_ms is not None:
            checks.append(_check(endpoint.endpoint, "p99_ms", slo.p99_ms, endpoint.p99))
        checks.append(_check(endpoint.endpoint, "error_rate", slo.max_error_rate, endpoint.error_rate))
    return checks


def _check(endpoint: str, metric: str, limit: float, value: float) -> SloCheck:
    met = value <= limit if metric == "error_rate" else value < limit
    return SloCheck(endpoint=endpoint, metric=metric, limit=limit, value=round(value, 4), met=met)


def share_met(checks: list[SloCheck]) -> float:
    """The share of checks that are met (1.0 when there is nothing to check)."""
    return sum(c.met for c in checks) / len(checks) if checks else 1.0
