"""The detectors over what the probe saw: web vitals measured in Chromium."""

from __future__ import annotations

from ratchet.analysis.responses import ProbeReport, web_vitals_findings
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
