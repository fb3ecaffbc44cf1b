"""Verdicts on the service's own time: each request's root server span, where the traces cover the requests.

The load generator's clock measures the service plus what the host adds around it (k6's own scheduling on a
busy machine, connection setup, the socket); on a shared two-core host that part varies from run to run by
more than the gains a campaign looks for, and it dilutes a change of the handler's time. The service's root
spans measure the handler alone. They are used for an endpoint when every run of both arms traced nearly
all of its requests (``COVERAGE``), and the endpoint is not one whose gain is expected outside the handler:
a capacity fix (more workers, a bigger pool in front) shortens the wait before the handler starts, which
only the client sees.
"""

from __future__ import annotations

import numpy as np

from ratchet.analysis.significance import ArmsOfEndpoint
from ratchet.contracts import EndpointStats

# Share of an endpoint's requests (per run) whose root span must have arrived to judge it on the server side.
COVERAGE = 0.9
CLIENT, SERVER = "client", "server"


def server_side_arms(
    client: dict[str, ArmsOfEndpoint],
    before: list[dict[str, np.ndarray]],
    after: list[dict[str, np.ndarray]],
    client_side: set[str] | frozenset[str] = frozenset(),
) -> tuple[dict[str, ArmsOfEndpoint], dict[str, str]]:
    """The arms to judge, per endpoint, and where each is measured (``SERVER`` or ``CLIENT``).

    ``client`` holds the arms from the load generator's samples; ``before``/``after`` the root-span durations
    per endpoint of each run of each arm (the same runs, in the same order); endpoints in ``client_side``
    stay on the client's numbers whatever the traces cover.
    """
    arms: dict[str, ArmsOfEndpoint] = {}
    measured_at: dict[str, str] = {}
    for endpoint, (before_stats, after_stats, before_runs, after_runs) in client.items():
        server_before = [run.get(endpoint, np.empty(0)) for run in before]
        server_after = [run.get(endpoint, np.empty(0)) for run in after]
        # Each arm has requests (``client`` holds only endpoints both arms measured), so coverage means spans.
        if endpoint in client_side or not _covers(server_before, before_runs) or not _covers(server_after, after_runs):
            arms[endpoint], measured_at[endpoint] = client[endpoint], CLIENT
            continue
        arms[endpoint] = (
            _stats(server_before, before_stats),
            _stats(server_after, after_stats),
            server_before,
            server_after,
        )
        measured_at[endpoint] = SERVER
    return arms, measured_at


def _covers(server_runs: list[np.ndarray], client_runs: list[np.ndarray]) -> bool:
    """Every run traced at least ``COVERAGE`` of the requests the client measured (and not more than it sent:
    more roots than requests would mean the spans are not one per request)."""
    if len(server_runs) != len(client_runs):
        return False
    return all(
        COVERAGE * c.size <= s.size <= c.size + max(1, round((1 - COVERAGE) * c.size))
        for s, c in zip(server_runs, client_runs, strict=True)
    )


def _stats(runs: list[np.ndarray], client: EndpointStats) -> EndpointStats:
    """An arm's pooled stats of the server's times; errors as the client counted them (an answer the client
    never got is an error the service may not know of)."""
    return pooled_stats(
        client.endpoint, runs, errors=client.errors, error_rate=client.error_rate, unanswered=client.unanswered
    )


def pooled_stats(
    name: str, runs: list[np.ndarray], *, errors: int = 0, error_rate: float = 0.0, unanswered: int = 0
) -> EndpointStats:
    """An arm's stats of times measured elsewhere than at the load generator (spans, histories), its runs
    pooled; the errors as given."""
    pooled = np.concatenate(runs)
    p50, p95, p99 = np.percentile(pooled, [50, 95, 99])
    return EndpointStats(
        endpoint=name,
        requests=int(pooled.size),
        errors=errors,
        error_rate=error_rate,
        unanswered=unanswered,
        p50=round(float(p50), 3),
        p95=round(float(p95), 3),
        p99=round(float(p99), 3),
        mean=round(float(pooled.mean()), 3),
    )
