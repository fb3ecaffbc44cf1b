"""The detectors over what the probe saw: web vitals measured in Chromium, caches, caching headers."""

from __future__ import annotations

from ratchet.analysis.advice import advice
from ratchet.analysis.decisions import bytes_verdict, with_caching_verdict
from ratchet.analysis.responses import (
    EndpointProbe,
    PageAsset,
    ProbeReport,
    ResponseSample,
    cacheable_findings,
    freshness_s,
    http_caching_findings,
    web_vitals_findings,
)
from ratchet.analysis.traces.detectors import Traffic
from ratchet.config.common import FindingType
from ratchet.config.playbook import Detection, Playbook
from ratchet.contracts import PageVitals, Verdict


def test_a_page_with_poor_vitals_is_a_finding_and_a_good_one_is_not() -> None:
    good = PageVitals(
        endpoint="home",
        url="http://x/",
        visits=3,
        fcp_ms=300,
        lcp_ms=900,
        cls=0.02,
        inp_ms=40,
        ttfb_ms=50,
        requests=4,
        bytes=100_000,
    )
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


def _asset(sha: str, content_type: str, cache_control: str = "", wire_bytes: int = 300_000) -> ResponseSample:
    return ResponseSample(
        status=200,
        wire_bytes=wire_bytes,
        body_bytes=wire_bytes,
        body_sha256=sha,
        content_type=content_type,
        cache_control=cache_control,
        elapsed_ms=3.0,
    )


def test_static_assets_without_a_cache_lifetime_are_a_finding_judged_by_headers() -> None:
    """A script served by a declared endpoint with no Cache-Control, and a page whose undeclared style sheet has
    none: two findings (the script on its endpoint, the style sheet on the page); JSON answers and assets with
    max-age are not findings, and no-cache gives no lifetime."""
    script = [_asset("js", "application/javascript")] * 2
    page = EndpointProbe(
        endpoint="home",
        method="GET",
        accept_encoding="gzip",
        by_example=[[_asset("html", "text/html")] * 2],
        assets=[
            PageAsset(url="/app.js", kind="script", blocking=True, response=script[0]),  # declared: on its endpoint
            PageAsset(url="/app.css", kind="style", blocking=True, response=_asset("css", "text/css", "no-cache")),
            PageAsset(
                url="/logo.svg",
                kind="style",
                blocking=False,
                response=_asset("svg", "image/svg+xml", "public, max-age=86400"),
            ),
        ],
    )
    probe = ProbeReport(
        endpoints=[
            page,
            EndpointProbe(endpoint="script", method="GET", accept_encoding="gzip", by_example=[script]),
            EndpointProbe(
                endpoint="api",
                method="GET",
                accept_encoding="gzip",
                by_example=[[_asset("json", "application/json")] * 2],
            ),
        ]
    )
    findings = {f.endpoint: f for f in http_caching_findings(probe, Traffic({"home": 5, "script": 5}), Detection())}
    assert set(findings) == {"script", "home"}
    assert findings["script"].type == FindingType.HTTP_CACHING and findings["script"].severity == "medium"
    assert findings["script"].evidence["served_by"] == "the endpoint"
    assert [a["url"] for a in findings["home"].evidence["assets"]] == ["/app.css"]
    assert findings["home"].evidence["served_by"] == "the page's assets"
    assert "a load test cannot show this" in findings["home"].summary
    assert findings["home"].summary.startswith("home: 300,000 bytes of its assets (/app.css), which browsers")
    assert findings["script"].summary.startswith("script: its 300,000-byte application/javascript answers, which")
    assert "max-age=31536000, immutable" in advice(findings["script"])


def test_a_change_that_lets_caches_keep_an_asset_is_improved_by_its_headers() -> None:
    rules = Playbook(name="p", approvers=["a"]).validation
    same_bytes = bytes_verdict("script", 300_000, 300_000, rules)
    assert same_bytes.verdict == Verdict.NOT_WORSE
    cached = with_caching_verdict(same_bytes, 0, 31_536_000)
    assert cached.verdict == Verdict.IMPROVED
    assert cached.explanation.startswith("kept by caches for 31,536,000 s with it (Cache-Control max-age)")
    assert with_caching_verdict(same_bytes, 3600, 3600).verdict == Verdict.NOT_WORSE
    assert with_caching_verdict(same_bytes, 0, 0).verdict == Verdict.NOT_WORSE
    assert freshness_s("public, max-age=60, s-maxage=600") == 600
    assert freshness_s("no-store") == freshness_s("max-age=60, no-cache") == 0
