"""Checking measured endpoints against the playbook's service-level targets."""

from __future__ import annotations

from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook
from ratchet.contracts import EndpointStats, EndpointVerdict, Finding, ResourceSummary, SloCheck, Verdict


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


TARGET_RESOURCES = "(target processes)"


def check_resource_slos(resources: ResourceSummary | None, playbook: Playbook) -> list[SloCheck]:
    """One check per resource target the playbook sets, on the target's processes during a run: CPU in percent
    of the host's cores, memory of its RAM. None where the run sampled nothing (or before the means were kept):
    nothing measured is nothing checked, and the assessment says so."""
    wanted = playbook.slo.resources
    if resources is None or not resources.samples:
        return []
    cores = max(resources.cores, 1)
    measured: dict[str, float | None] = {
        "cpu_percent": None if resources.cpu_percent_mean is None else resources.cpu_percent_mean / cores,
        "cpu_peak_percent": resources.cpu_percent_max / cores,
        "memory_percent": _share(resources.rss_mb_mean, resources.memory_total_mb),
        "memory_peak_percent": _share(resources.rss_mb_max, resources.memory_total_mb),
    }
    checks = []
    for metric, value in measured.items():
        limit = getattr(wanted, metric)
        if limit is not None and value is not None:
            checks.append(_check(TARGET_RESOURCES, metric, limit, value))
    return checks


def unchecked_resources_note(resources: ResourceSummary | None, playbook: Playbook) -> str | None:
    """What the assessment says when the playbook sets resource targets and the run sampled no process of the
    target's (it runs on another host, or the target names no `processes:` Ratchet can find)."""
    wanted = [metric for metric, limit in playbook.slo.resources.model_dump().items() if limit is not None]
    if not wanted or (resources is not None and resources.samples):
        return None
    return (
        f"resource targets ({', '.join(wanted)}) not checked: no process of the target's was sampled during the "
        "baseline (name them under the target's processes:, on the host the workers run on)"
    )


_RESOURCE_WORDS = {
    "cpu_percent": "mean CPU",
    "cpu_peak_percent": "peak CPU",
    "memory_percent": "mean memory",
    "memory_peak_percent": "peak memory",
}


def resource_findings(checks: list[SloCheck], resources: ResourceSummary | None) -> list[Finding]:
    """A finding for the resource targets the baseline missed: high when a peak target is, medium otherwise.
    No lever is implied: what uses the CPU or the memory is for the other findings (or a person) to say."""
    missed = [c for c in checks if c.endpoint == TARGET_RESOURCES and not c.met]
    if not missed or resources is None:
        return []
    said = "; ".join(f"{_RESOURCE_WORDS[c.metric]} {c.value:.0f}% over the {c.limit:g}% target" for c in missed)
    return [
        Finding(
            id="",
            type=FindingType.RESOURCE_USE,
            endpoint=TARGET_RESOURCES,
            severity="high" if any("peak" in c.metric for c in missed) else "medium",
            impact=0.0,
            estimated_gain_ms=0.0,
            summary=f"the target's {resources.processes} process(es) under the baseline load: {said} "
            f"(of {resources.cores} cores and {resources.memory_total_mb or 0:.0f} MB)",
            evidence={
                "fingerprint": f"{FindingType.RESOURCE_USE.value}|{TARGET_RESOURCES}|"
                + ",".join(c.metric for c in missed),
                "checks": [c.model_dump() for c in missed],
                "samples": resources.samples,
            },
        )
    ]


def _share(part_mb: float | None, total_mb: float | None) -> float | None:
    return None if part_mb is None or not total_mb else 100 * part_mb / total_mb


def _check(endpoint: str, metric: str, limit: float, value: float) -> SloCheck:
    met = value <= limit if metric == "error_rate" else value < limit
    return SloCheck(endpoint=endpoint, metric=metric, limit=limit, value=round(value, 4), met=met)


def projected_checks(before: list[SloCheck], verdicts: list[EndpointVerdict]) -> list[SloCheck]:
    """The baseline's checks with the gains the interleaved arms proved: the latency of an improved endpoint is
    scaled by the top of its ratio's interval (the smallest gain the evidence supports); the rest stay as the
    baseline measured them (not shown to have moved).

    The targets read at the baseline's conditions: the validation's own runs are slowed by whatever else the
    host runs then, in both arms alike, which the arms' ratios cancel and the targets' absolute limits do not."""
    scale = {
        v.endpoint: v.ratio_high
        for v in verdicts
        if v.verdict == Verdict.IMPROVED and v.ratio_high is not None and v.ratio_high < 1
    }
    return [
        _check(c.endpoint, c.metric, c.limit, c.value * scale[c.endpoint])
        if c.endpoint in scale and c.metric.endswith("_ms")
        else c
        for c in before
    ]


def share_met(checks: list[SloCheck]) -> float:
    """The share of checks that are met (1.0 when there is nothing to check)."""
    return sum(c.met for c in checks) / len(checks) if checks else 1.0


# Latency patterns: what they cost shows in the endpoint's own latency, which the SLO judges. Payload, page and
# error findings are not in that number (transfer on a slow link, a browser's paint, failures), nor is
# saturation (it is about more load than this run's).
_LATENCY_FINDINGS = frozenset(
    {
        FindingType.MISSING_INDEX,
        FindingType.N_PLUS_ONE,
        FindingType.SEQUENTIAL_CALLS,
        FindingType.CACHEABLE,
        FindingType.SEQUENTIAL_QUERIES,
        FindingType.N_PLUS_ONE_API,
        FindingType.SLOW_STATEMENT,
    }
)
# "Meets with margin": the p95 at most this share of its target.
SLO_MARGIN = 0.8


def judged_by_slo(findings: list[Finding], stats: list[EndpointStats], playbook: Playbook) -> list[Finding]:
    """Latency findings on endpoints that meet their p95 target with margin are at most ``low``: real, worth a
    look, never "critical" on an endpoint nobody waits for. The summary says why. Not on an endpoint where the
    service spends a dominant share of its time (``dominant_latency_share``): that costs capacity whatever its
    latency."""
    p95 = {s.endpoint: s.p95 for s in stats}
    total_time = sum(s.mean * s.requests for s in stats) or 1.0
    time_share = {s.endpoint: s.mean * s.requests / total_time for s in stats}
    judged = []
    for finding in findings:
        limit = playbook.slo.for_endpoint(finding.endpoint).p95_ms
        measured = p95.get(finding.endpoint)
        if (
            finding.type in _LATENCY_FINDINGS
            and finding.severity != "low"
            and limit is not None
            and measured is not None
            and measured <= SLO_MARGIN * limit
            and time_share.get(finding.endpoint, 0.0) < playbook.detection.dominant_latency_share
        ):
            finding = finding.model_copy(
                update={
                    "severity": "low",
                    "summary": f"{finding.summary} (low: the endpoint meets its p95 target, {measured:.1f} ms "
                    f"against {limit:g} ms, with margin; was {finding.severity})",
                }
            )
        judged.append(finding)
    return judged
