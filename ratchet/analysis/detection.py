"""Detectors of the first version: slow endpoints, and full scans behind them that an index would fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from ratchet.analysis.plans import FullScan
from ratchet.analysis.traces.detectors import Dependency
from ratchet.config.common import FindingType
from ratchet.config.playbook import Detection, Playbook
from ratchet.contracts import EndpointStats, Finding, LoadTestResult


@dataclass(frozen=True)
class StatementEvidence:
    """What the assessment learned about one statement of a slow endpoint (gathered by an activity)."""

    endpoint: str
    sql: str
    plan: list[str]
    full_scans: list[FullScan]
    table_rows: dict[str, int]
    filtered_columns: dict[str, list[str]]
    existing_indexes: dict[str, list[str]] = field(default_factory=dict)
    median_ms: float = 0.0


@dataclass(frozen=True)
class SlowEndpoint:
    """An endpoint worth inspecting: above its latency threshold, or carrying a large share of all latency."""

    stats: EndpointStats
    threshold_ms: float
    latency_share: float
    traffic_share: float
    over_threshold: bool


def slow_threshold_ms(endpoint: str, playbook: Playbook) -> float:
    """Above this p95 an endpoint is slow: the playbook's ``slow_p95_ms``, else its SLO p95 (else never)."""
    return playbook.detection.slow_p95_ms or playbook.slo.for_endpoint(endpoint).p95_ms or float("inf")


def slow_endpoints(stats: list[EndpointStats], playbook: Playbook) -> set[str]:
    """Endpoints whose p95 is over their threshold, whatever their share of the load."""
    return {s.endpoint for s in stats if s.requests and s.p95 > slow_threshold_ms(s.endpoint, playbook)}


def endpoints_to_inspect(stats: list[EndpointStats], playbook: Playbook) -> list[SlowEndpoint]:
    """Endpoints whose statements deserve a plan: over their p95 threshold (or SLO), or dominant.

    Dominant means carrying ``dominant_latency_share`` of the time spent serving all requests at a p50 of
    at least ``min_inspect_p50_ms``: the place a performance engineer looks first even when the SLO holds.
    """
    rules = playbook.detection
    chosen = [
        s
        for s in served_endpoints(stats, playbook)
        if s.latency_share >= rules.min_latency_share
        and (
            s.over_threshold
            or (s.latency_share >= rules.dominant_latency_share and s.stats.p50 >= rules.min_inspect_p50_ms)
        )
    ]
    return sorted(chosen, key=lambda s: s.latency_share, reverse=True)


def served_endpoints(stats: list[EndpointStats], playbook: Playbook) -> list[SlowEndpoint]:
    """Every endpoint the run measured, as a candidate for plans: a full scan of a large table on a filtered
    column is worth a finding whatever the endpoint's p95 today (it grows with the table, and a lighter load
    hides it), judged by its share of the endpoint's time."""
    total_time = sum(s.mean * s.requests for s in stats) or 1.0
    total_requests = sum(s.requests for s in stats) or 1
    served = []
    for endpoint in stats:
        if not endpoint.requests:
            continue
        threshold = slow_threshold_ms(endpoint.endpoint, playbook)
        latency_share = endpoint.mean * endpoint.requests / total_time
        traffic_share = endpoint.requests / total_requests
        served.append(SlowEndpoint(endpoint, threshold, latency_share, traffic_share, endpoint.p95 > threshold))
    return served


def overload_note(stats: list[EndpointStats], playbook: Playbook, server_p95_ms: dict[str, float] | None) -> str:
    """Said when every endpoint with a target is over it, the one doing least work too: then the load is more
    than the service serves here, and its latencies describe the queue, not the endpoints ("" otherwise)."""
    measured = [s for s in stats if s.requests and slow_threshold_ms(s.endpoint, playbook) != float("inf")]
    if len(measured) < 3 or any(s.p95 <= slow_threshold_ms(s.endpoint, playbook) for s in measured):
        return ""
    lightest = min(measured, key=lambda s: s.p50)
    inside = (server_p95_ms or {}).get(lightest.endpoint)
    where = (
        f"; inside the service its p95 is {inside:.1f} ms, the rest is the wait to be served"
        if inside is not None
        else ""
    )
    return (
        f"every endpoint is over its p95 target at {playbook.load.rps:g} req/s, even {lightest.endpoint}, the one "
        f"doing least (median {lightest.p50:.1f} ms, p95 {lightest.p95:.1f} ms){where}: the load is more than the "
        "service serves on this machine, so the findings describe an overloaded service; set load.rate "
        "to 'auto' (a ramp finds the rate it sustains) or lower it to what it serves, and assess again"
    )


def _severity(p95: float, threshold: float) -> str:
    if threshold == float("inf"):
        return "medium"
    ratio = p95 / threshold
    if ratio >= 4:
        return "critical"
    if ratio >= 2:
        return "high"
    return "medium" if ratio >= 1 else "low"


def _scan_severity(p95: float, endpoint: SlowEndpoint, playbook: Playbook) -> str:
    """As far over its threshold as the endpoint is; at least medium where the service spends a dominant share
    of its time (a scan there costs capacity even within the target)."""
    severity = _severity(p95, endpoint.threshold_ms)
    dominant = endpoint.latency_share >= playbook.detection.dominant_latency_share
    return "medium" if dominant and severity == "low" else severity


def missing_index_findings(
    slow: list[SlowEndpoint],
    evidence: list[StatementEvidence],
    playbook: Playbook,
    server_mean_ms: dict[str, float] | None = None,
) -> list[Finding]:
    """A finding per (table, columns) scanned in full under an endpoint of ``slow`` (``served_endpoints``: any
    endpoint), on a large enough table, where the statement is a large enough share of the endpoint's time.

        The statement's share is of the request's time inside the service when the traces measured it
        (``server_mean_ms``): under a load that queues requests, the client's time is mostly the wait, and a scan
        that is nearly all of the handler's work would read as a small part of it."""
    by_endpoint = {s.stats.endpoint: s for s in slow}
    findings: dict[tuple[str, str, tuple[str, ...]], Finding] = {}
    for item in evidence:
        endpoint = by_endpoint.get(item.endpoint)
        if endpoint is None:
            continue
        for scan in item.full_scans:
            rows = item.table_rows.get(scan.table, 0)
            columns = item.filtered_columns.get(scan.table, [])
            stats = endpoint.stats
            request_ms = (server_mean_ms or {}).get(item.endpoint) or stats.mean
            statement_share = min(1.0, item.median_ms / request_ms) if request_ms else 0.0
            if rows < playbook.detection.min_table_rows or not columns:
                continue
            if statement_share < playbook.detection.min_statement_share:
                continue  # the scan is there but is not what makes this endpoint slow
            key = (item.endpoint, scan.table, tuple(columns))
            if key in findings:
                continue
            gain = min(item.median_ms, stats.p50)
            findings[key] = Finding(
                id=f"F{len(findings) + 1}",
                type=FindingType.MISSING_INDEX,
                endpoint=item.endpoint,
                severity=_scan_severity(stats.p95, endpoint, playbook),  # type: ignore[arg-type]
                impact=round(statement_share * endpoint.traffic_share, 4),
                estimated_gain_ms=round(gain, 2),
                summary=(
                    f"{item.endpoint}: p95 {stats.p95:.1f} ms"
                    + ("" if endpoint.over_threshold else " (within its target today)")
                    + f", {endpoint.latency_share:.0%} of all serving time; its query scans all {rows:,} rows of "
                    f"{scan.table} filtering on {', '.join(columns)} ({item.median_ms:.1f} ms per run)"
                ),
                evidence={
                    # One index serves every statement of the endpoint that scans these columns: one finding.
                    "fingerprint": f"missing-index|{item.endpoint}|{scan.table}({','.join(columns)})",
                    "table": scan.table,
                    "columns": columns,
                    "table_rows": rows,
                    "statement": " ".join(item.sql.split()),
                    "plan": item.plan,
                    "plan_line": scan.plan_line,
                    "statement_median_ms": round(item.median_ms, 3),
                    "existing_indexes": item.existing_indexes.get(scan.table, []),
                    "endpoint_p50_ms": stats.p50,
                    "endpoint_p95_ms": stats.p95,
                    "endpoint_p99_ms": stats.p99,
                    "endpoint_requests": stats.requests,
                    "latency_share": round(endpoint.latency_share, 4),
                    "statement_share_of_endpoint": round(statement_share, 4),
                },
            )
    return list(findings.values())


# A p95 above a threshold: more than this share of the requests above it.
TAIL_SHARE = 0.05


def share_exceeds(count: int, requests: int, share: float, significance: float) -> bool:
    """Whether ``count`` of ``requests`` above a line shows that more than ``share`` of all requests are
    (one-sided exact binomial test)."""
    from scipy.stats import binomtest  # imported here: scipy adds a second to every importer's start

    return requests > 0 and binomtest(count, requests, share, alternative="greater").pvalue < significance


def requests_to_show(requests: int, share: float, significance: float) -> str:
    """How many of ``requests`` must be above a line to show more than ``share`` are, as words."""
    needed = next((k for k in range(requests + 1) if share_exceeds(k, requests, share, significance)), None)
    return f"{needed} of {requests}" if needed is not None else f"more than {requests} requests"


def unexplained_slow_findings(
    slow: list[SlowEndpoint],
    explained: set[str],
    start: int,
    server_p95_ms: dict[str, float] | None = None,
    min_p50_ms: float = 0.0,
    dependencies: dict[str, Dependency] | None = None,
    over: dict[str, int] | None = None,
    significance: float = 0.01,
) -> tuple[list[Finding], list[str]]:
    """Endpoints over their threshold that nothing more precise explains: findings for a person to look at.

    With traces, an endpoint whose server spans stay under the threshold while its clients wait longer is not
    slow itself: its requests waited outside the handler (a busy CPU, a full worker pool). That is a note
    about the service's capacity (the stress run measures it), not a finding on the endpoint. So is a slow
    tail over a fast median (under ``min_p50_ms``): the typical request does little work. Where the traces
    show that most of a request waits on one outbound dependency, the finding says so. ``over`` counts, per
    endpoint, its requests slower than the threshold: a p95 above it means more than 5% of requests above it,
    which a handful of requests cannot show (one slow request of nine reads as a p95 over the line).
    """
    notes = []
    findings: list[Finding] = []
    for endpoint in slow:
        if endpoint.stats.endpoint in explained or not endpoint.over_threshold:
            continue
        stats = endpoint.stats
        inside = (server_p95_ms or {}).get(stats.endpoint)
        if inside is not None and inside <= endpoint.threshold_ms:
            notes.append(
                f"{stats.endpoint}: p95 {stats.p95:.1f} ms at the client but {inside:.1f} ms inside the service: "
                "its requests waited outside the handler (CPU or worker contention), not in its own work"
            )
            continue
        slower = (over or {}).get(stats.endpoint)
        if slower is not None and not share_exceeds(slower, stats.requests, TAIL_SHARE, significance):
            notes.append(
                f"{stats.endpoint}: p95 {stats.p95:.1f} ms over {endpoint.threshold_ms:g} ms, but only {slower} of "
                f"{stats.requests} requests were slower than that: too few to say more than {TAIL_SHARE:.0%} are "
                f"(p < {significance:g} needs {requests_to_show(stats.requests, TAIL_SHARE, significance)}); "
                "a longer baseline would decide"
            )
            continue
        if stats.p50 < min_p50_ms:
            notes.append(
                f"{stats.endpoint}: p95 {stats.p95:.1f} ms but a median of {stats.p50:.1f} ms: a tail of waits, not "
                "slow work (other requests hold the CPU or the workers; the peak and stress runs measure capacity)"
            )
            continue
        why, evidence = "and nothing in its traces or plans explains it", {}
        if server_p95_ms is None:  # no spans: Ratchet is blind inside the service and must not sound sure
            why = "and no spans of it arrived, so where its time goes is not seen (only its plans were read)"
        dependency = (dependencies or {}).get(stats.endpoint)
        if dependency is not None and dependency.share >= 0.5:
            why = (
                f"and {dependency.share:.0%} of a request (median {dependency.median_ms:.1f} ms) waits on "
                f"{dependency.dest}: the dependency's own latency, which no change to this service removes"
            )
            evidence = {
                "dependency": dependency.dest,
                "dependency_ms": round(dependency.median_ms, 3),
                "dependency_share": round(dependency.share, 4),
            }
        findings.append(
            Finding(
                id=f"F{start + len(findings)}",
                type=FindingType.SLOW_ENDPOINT,
                endpoint=stats.endpoint,
                severity=_severity(stats.p95, endpoint.threshold_ms),  # type: ignore[arg-type]
                impact=round(endpoint.traffic_share, 4),
                estimated_gain_ms=round(max(0.0, stats.p95 - endpoint.threshold_ms), 2),
                summary=f"{stats.endpoint}: p95 {stats.p95:.1f} ms above {endpoint.threshold_ms:g} ms, {why}",
                evidence={
                    "fingerprint": f"slow-endpoint|{stats.endpoint}",
                    "endpoint_p50_ms": stats.p50,
                    "endpoint_p95_ms": stats.p95,
                    "endpoint_p99_ms": stats.p99,
                    "endpoint_requests": stats.requests,
                    "latency_share": round(endpoint.latency_share, 4),
                    "server_p95_ms": inside,
                    **evidence,
                },
            )
        )
    return findings, notes


def error_hotspots(baseline: LoadTestResult, shapes: list[LoadTestResult], rules: Detection) -> list[Finding]:
    """Endpoints whose error rate under a heavier steady load (peak, soak) rises ``error_rate_rise`` above
    the baseline's. Stress runs are left out: they are meant to push the service until it fails."""
    before = {s.endpoint: s for s in baseline.endpoints}
    total = sum(s.requests for s in baseline.endpoints) or 1
    findings: dict[str, Finding] = {}
    for run in shapes:
        if run.stress is not None:
            continue
        for stats in run.endpoints:
            base = before.get(stats.endpoint)
            base_rate = base.error_rate if base is not None else 0.0
            rise = stats.error_rate - base_rate
            if stats.requests == 0 or rise < rules.error_rate_rise or stats.endpoint in findings:
                continue
            traffic_share = (base.requests if base is not None else 0) / total
            findings[stats.endpoint] = Finding(
                id="",
                type=FindingType.ERROR_HOTSPOT,
                endpoint=stats.endpoint,
                severity="critical" if stats.error_rate >= 0.2 else "high",
                impact=round(rise * traffic_share, 4),
                estimated_gain_ms=0.0,
                summary=(
                    f"{stats.endpoint}: {stats.error_rate:.1%} errors under the {run.label} load "
                    f"({stats.errors} of {stats.requests}) against {base_rate:.1%} at the baseline"
                ),
                evidence={
                    "fingerprint": f"error-hotspot|{stats.endpoint}",
                    "run": run.run_id,
                    "error_rate": stats.error_rate,
                    "baseline_error_rate": base_rate,
                    "errors": stats.errors,
                    "requests": stats.requests,
                },
            )
    return list(findings.values())
