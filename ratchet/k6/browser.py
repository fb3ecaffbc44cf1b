"""Web vitals of a target's pages, measured in a real Chromium driven by k6's browser module.

One k6 run per page (k6 does not tag a page's requests with the page that made them, so a run holds one
page's visits), each visit in a fresh browser context: a first view. The run's samples (``--out json``) give,
per visit, FCP, LCP, CLS, INP and TTFB, and every request the page made with its bytes; the medians over
the visits describe the page. LCP and FCP are the script's own (``ratchet_lcp``, ``ratchet_fcp``): k6's are
reported by the page as it closes, and a busy host loses some.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from collections import defaultdict
from importlib.resources import files
from pathlib import Path

from ratchet.contracts import PageVitals
from ratchet.errors import MeasurementError
from ratchet.k6.page_profiles import EMULATIONS, PageProfile
from ratchet.k6.runner import k6_binary

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(configured: str | None = None) -> str | None:
    """The Chromium to drive: the configured one, k6's own variable, else the first on PATH."""
    for candidate in (configured, os.environ.get("K6_BROWSER_EXECUTABLE_PATH")):
        if candidate:
            return candidate if Path(candidate).exists() else None
    return next((found for name in _CHROMIUM_NAMES if (found := shutil.which(name))), None)


def measure_page(
    endpoint: str,
    url: str,
    chromium: str,
    out_dir: Path,
    *,
    visits: int = 3,
    timeout_s: float = 180,
    profile: PageProfile | None = None,
) -> PageVitals:
    """Visit ``url`` ``visits`` times in Chromium, as the ``profile``'s device would (unset: the browser as it
    is); MeasurementError says why when k6 could not."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples = out_dir / f"{endpoint}{'.' + profile.value if profile else ''}.browser.json"
    script = files("ratchet.k6").joinpath("templates/page_vitals.js")
    env = os.environ | {
        "K6_BROWSER_EXECUTABLE_PATH": chromium,
        "K6_BROWSER_HEADLESS": "true",
        "RATCHET_PAGES": json.dumps([url]),
        "RATCHET_VISITS": str(visits),
        "RATCHET_MAX_DURATION": f"{int(timeout_s)}s",
        "RATCHET_EMULATION": EMULATIONS[profile].model_dump_json() if profile else "",
    }
    if os.geteuid() == 0:  # Chromium refuses to run as root inside its sandbox
        env["K6_BROWSER_ARGS"] = "no-sandbox"
    command = [
        k6_binary(),
        "run",
        "--quiet",
        "--no-summary",
        "--no-usage-report",
        "--out",
        f"json={samples}",
        str(script),
    ]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout_s + 10)
    except subprocess.TimeoutExpired:
        raise MeasurementError(f"k6 browser on {url}: no result within {timeout_s + 10:.0f}s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise MeasurementError(f"k6 browser on {url} exited {done.returncode}: {' | '.join(tail)}")
    return _read(endpoint, url, samples, visits, profile)


def _read(endpoint: str, url: str, samples: Path, visits: int, profile: PageProfile | None = None) -> PageVitals:
    vitals: dict[str, list[float]] = defaultdict(list)
    own: dict[str, list[float]] = defaultdict(list)
    requests, failed = 0, 0
    received = 0.0
    resources: dict[str, int] = {}
    failed_urls: dict[str, str] = {}
    with samples.open() as lines:
        for line in lines:
            point = json.loads(line)
            if point.get("type") != "Point":
                continue
            metric, data = point["metric"], point["data"]
            tags = data.get("tags") or {}
            if metric.startswith("browser_web_vital_"):
                vitals[metric.removeprefix("browser_web_vital_")].append(float(data["value"]))
            elif metric.startswith("ratchet_"):  # the script's own LCP and FCP, never lost with the page
                own[metric.removeprefix("ratchet_")].append(float(data["value"]))
            elif metric == "browser_http_req_duration":
                requests += 1
            elif metric == "browser_http_req_failed":
                failed += bool(data["value"])
                if data["value"]:  # named in the report: a browser's own /favicon.ico 404 counts too
                    failed_urls[str(tags.get("url", "?"))] = str(tags.get("status", "0"))
            elif metric == "browser_data_received":
                received += float(data["value"])
                resources.setdefault(str(tags.get("url", "?")), int(data["value"]))
    vitals |= own
    if not vitals:
        raise MeasurementError(f"k6 browser on {url}: the page reported no web vitals (did it load?)")

    def median(name: str) -> float | None:
        return round(statistics.median(vitals[name]), 4) if vitals.get(name) else None

    return PageVitals(
        endpoint=endpoint,
        url=url,
        visits=visits,
        profile=profile.value if profile else "",
        lcp_samples=vitals.get("lcp", []),
        fcp_samples=vitals.get("fcp", []),
        fcp_ms=median("fcp"),
        lcp_ms=median("lcp"),
        cls=median("cls"),
        inp_ms=median("inp"),
        ttfb_ms=median("ttfb"),
        requests=requests / visits,
        bytes=received / visits,
        failed_requests=failed / visits,
        failed_urls=failed_urls,
        resources=resources,
    )
