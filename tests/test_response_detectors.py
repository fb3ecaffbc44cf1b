"""The detectors over what the probe saw: web vitals measured in Chromium."""

from __future__ import annotations

from ratchet.analysis.responses import (
    EndpointProbe,
    ProbeReport,
    ResponseSample,
    cacheable_findings,
    web_vitals_findings,
)
from ratchet.analysis.traces.detectors import Traffic
from ratchet.config.common import FindingType
from ratchet.config.playbook import Detection
from ratchet.contracts import PageVitals


def test_a_page_with_poor_vitals_is_a_finding_and_a_good_one_is_not() -> None:
    good = PageVitals(endpoint="home", url="http://x/", visits=3, fcp_ms=300, lcp_ms=900, cls=0.02, inp_ms=40,
                      ttfb_ms=50, requests=4, bytes=100_000)  # fmt: skip
    shifting = good.model_copy(update={"endpoint": "script", "lcp_ms": 5200.0, "cls": 0.31})
    [finding] = web_vitals_findings(ProbeReport(pages=[good, shifting]), Traffic({"home": 5, "script": 5}), Detection())
    assert finding.type == FindingType.WEB_VITALS and finding.endpoint == "script"
    assert finding.evidence["poor"] == ["lcp", "cls"] and finding.evidence["lcp_ms"] == 5200
    assert "LCP 5,200 ms (limit 4000), CLS 0.310 (limit 0.25)" in finding.summary
    assert finding.estimated_gain_ms == 1200


def _probe_of(elapsed_ms: float) -> ProbeReport:
    answer = {"status": 200, "wire_bytes": 900, "body_bytes": 900, "body_sha256": "same", "elapsed_ms": elapsed_ms}
    repeats = [ResponseSample(**answer) for _ in range(3)]
    return ProbeReport(
        endpoints=[EndpointProbe(endpoint="picks", method="GET", accept_encoding="gzip", by_example=[repeats] * 2)]
    )


def test_own_work_under_load_is_capped_by_the_request_asked_alone() -> None:
    """25 ms of self time under load, on an answer that takes 4 ms when the probe asks for it alone: the rest
    was waiting for a busy host, and a cache (there already, maybe) would save none of it. At 90 ms alone, the
    work is real, and a cache is found."""
    own_work = {"picks": (25.0, 1.0, ["t1"])}
    mix, rules = Traffic({"picks": 10}), Detection()
    assert cacheable_findings(_probe_of(4.0), own_work, {"picks": 0.6}, mix, rules) == []
    [finding] = cacheable_findings(_probe_of(90.0), own_work, {"picks": 0.6}, mix, rules)
    assert finding.type == FindingType.CACHEABLE and finding.evidence["self_ms"] == 25.0


def test_a_cache_that_would_serve_none_of_the_load_is_not_severe() -> None:
    """The whole request is the service's own work and its answer repeats, but no request of the load repeats
    another: a cache would have served 0% of it. Real, and low; with most requests repeating, critical."""
    own_work = {"picks": (25.0, 1.0, ["t1"])}
    mix, rules = Traffic({"picks": 10}), Detection()
    [unrepeated] = cacheable_findings(_probe_of(90.0), own_work, {"picks": 0.0}, mix, rules)
    assert unrepeated.severity == "low" and "served 0% of the load" in unrepeated.summary
    [repeated] = cacheable_findings(_probe_of(90.0), own_work, {"picks": 0.9}, mix, rules)
    assert repeated.severity == "critical"
