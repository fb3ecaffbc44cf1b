"""Reading k6 browser's samples of a page: its vitals, and which of its requests failed."""

from __future__ import annotations

import json
from pathlib import Path

from ratchet.k6.browser import _read


def _point(metric: str, value: float, **tags: str) -> str:
    return json.dumps(
        {"metric": metric, "type": "Point", "data": {"time": "2026-12-07T13:00:08Z", "value": value, "tags": tags}}
    )


def test_a_failed_request_is_named_with_its_status(tmp_path: Path) -> None:
    samples = tmp_path / "storefront.browser.json"
    page, icon = "http://127.0.0.1:8800/", "http://127.0.0.1:8800/favicon.ico"
    samples.write_text(
        "\n".join(
            [
                _point("browser_web_vital_lcp", 240.0),
                _point("browser_http_req_duration", 12.0, url=page, status="200"),
                _point("browser_http_req_failed", 0, url=page, status="200"),
                _point("browser_http_req_duration", 3.0, url=icon, status="404"),
                _point("browser_http_req_failed", 1, url=icon, status="404"),
            ]
        )
    )
    vitals = _read("storefront", page, samples, visits=1)
    assert vitals.lcp_ms == 240.0
    assert vitals.failed_requests == 1
    assert vitals.failed_urls == {icon: "404"}


def test_the_scripts_own_paint_times_are_kept_when_k6_lost_some(tmp_path: Path) -> None:
    """k6's web vitals are reported as the page closes, and a busy host loses some: of three visits, k6 kept
    one LCP; the script's own, returned by each visit's evaluate, has all three."""
    samples = tmp_path / "storefront.browser.json"
    page = "http://127.0.0.1:8800/"
    own = [_point("ratchet_lcp", ms, url=page) for ms in (2600.0, 2700.0, 2900.0)]
    samples.write_text(
        "\n".join([_point("browser_web_vital_lcp", 2650.0), *own, _point("ratchet_fcp", 900.0, url=page)])
    )
    vitals = _read("storefront", page, samples, visits=3)
    assert vitals.lcp_samples == [2600.0, 2700.0, 2900.0] and vitals.lcp_ms == 2700.0
    assert vitals.fcp_samples == [900.0]
