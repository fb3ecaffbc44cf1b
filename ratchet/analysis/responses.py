"""What the target answers, probed request by request: sizes, encodings, cache headers, repeats, page assets;
and the detectors that read it (large and uncompressed responses, render-blocking assets, cacheable work)."""

from __future__ import annotations

import statistics

from pydantic import BaseModel, Field

from ratchet.analysis.traces.detectors import Traffic, severity
from ratchet.config.common import FindingType
from ratchet.config.playbook import Detection
from ratchet.contracts import Finding, PageVitals

_TEXT_TYPES = ("text/", "application/json", "application/javascript", "application/xml", "image/svg")


class ResponseSample(BaseModel):
    """One answer, as the client received it."""

    status: int
    wire_bytes: int = Field(description="Bytes on the wire (compressed when it was).")
    body_bytes: int = Field(description="Bytes of the decoded body.")
    body_sha256: str
    content_type: str = ""
    content_encoding: str = ""
    cache_control: str = ""
    etag: str = ""
    elapsed_ms: float


class PageAsset(BaseModel):
    """A script or style sheet a page's head loads."""

    url: str
    kind: str = Field(description="script or style")
    blocking: bool = Field(description="Loaded before the first paint: no defer/async, a stylesheet link.")
    response: ResponseSample | None = None


class EndpointProbe(BaseModel):
    """Repeated identical requests to one endpoint (per example), and the assets of a page."""

    endpoint: str
    method: str
    accept_encoding: str
    by_example: list[list[ResponseSample]] = Field(default_factory=list)
    assets: list[PageAsset] = Field(default_factory=list)

    @property
    def samples(self) -> list[ResponseSample]:
        return [s for repeats in self.by_example for s in repeats]

    @property
    def identical_repeats(self) -> bool:
        """Every example answered 200 with the same body on every repeat."""
        return bool(self.by_example) and all(
            len(repeats) >= 2 and len({(s.status, s.body_sha256) for s in repeats}) == 1 and repeats[0].status == 200
            for repeats in self.by_example
        )


class ProbeReport(BaseModel):
    """Everything the probe learned; stored as JSON beside the campaign's runs."""

    endpoints: list[EndpointProbe] = Field(default_factory=list)
    pages: list[PageVitals] = Field(default_factory=list)
    page_loads: list[PageVitals] = Field(
        default_factory=list, description="The pages on each of slo.page_load's device profiles."
    )
    burst_run_id: str = ""
    notes: list[str] = Field(default_factory=list)


def _is_text(content_type: str) -> bool:
    return content_type.startswith(_TEXT_TYPES) or "+json" in content_type or "+xml" in content_type


def payload_findings(probe: ProbeReport, slow: set[str], mix: Traffic, rules: Detection) -> list[Finding]:
    """Text responses sent uncompressed to a client that accepts gzip; large responses of ``slow`` endpoints."""
    findings = []
    for endpoint in probe.endpoints:
        ok = [s for s in endpoint.samples if s.status == 200]
        if not ok:
            continue
        biggest = max(ok, key=lambda s: s.wire_bytes)
        median_ms = sorted(s.elapsed_ms for s in ok)[len(ok) // 2]
        evidence = {
            "wire_bytes": biggest.wire_bytes,
            "body_bytes": biggest.body_bytes,
            "content_type": biggest.content_type,
            "content_encoding": biggest.content_encoding or "none",
            "accept_encoding": endpoint.accept_encoding,
            "probe_median_ms": round(median_ms, 3),
            "probes": len(ok),
        }
        uncompressed = not biggest.content_encoding and _is_text(biggest.content_type)
        if uncompressed and biggest.wire_bytes >= rules.uncompressed_min_bytes:
            findings.append(
                Finding(
                    id="",
                    type=FindingType.UNCOMPRESSED,
                    endpoint=endpoint.endpoint,
                    severity=severity(0.5),
                    impact=round(0.5 * mix.share(endpoint.endpoint), 4),  # type: ignore[arg-type]
                    estimated_gain_ms=0.0,
                    summary=(
                        f"{endpoint.endpoint}: {biggest.wire_bytes:,} bytes of {biggest.content_type or 'text'} "
                        f"sent without compression to a client that accepts {endpoint.accept_encoding}"
                    ),
                    evidence=evidence | {"key": "", "fingerprint": f"uncompressed|{endpoint.endpoint}"},
                )
            )
        if biggest.body_bytes >= rules.large_payload_bytes and endpoint.endpoint in slow:
            findings.append(
                Finding(
                    id="",
                    type=FindingType.LARGE_PAYLOAD,
                    endpoint=endpoint.endpoint,
                    severity="medium",
                    impact=round(0.3 * mix.share(endpoint.endpoint), 4),
                    estimated_gain_ms=0.0,
                    summary=(
                        f"{endpoint.endpoint}: a {biggest.body_bytes:,}-byte response "
                        f"({biggest.wire_bytes:,} on the wire), {median_ms:.0f} ms to fetch"
                    ),
                    evidence=evidence | {"key": "", "fingerprint": f"large-payload|{endpoint.endpoint}"},
                )
            )
    return findings


def render_blocking_findings(probe: ProbeReport, mix: Traffic, rules: Detection) -> list[Finding]:
    """Pages whose head makes the browser fetch large scripts or style sheets before it can paint."""
    findings = []
    for endpoint in probe.endpoints:
        heavy = [
            a
            for a in endpoint.assets
            if a.blocking and a.response is not None and a.response.wire_bytes >= rules.render_blocking_min_bytes
        ]
        if not heavy:
            continue
        total = sum(a.response.wire_bytes for a in heavy if a.response)
        page_bytes = total + max((s.wire_bytes for s in endpoint.samples), default=0)
        findings.append(
            Finding(
                id="",
                type=FindingType.RENDER_BLOCKING,
                endpoint=endpoint.endpoint,
                severity="high",
                impact=round(0.8 * mix.share(endpoint.endpoint), 4),
                estimated_gain_ms=0.0,
                summary=(
                    f"{endpoint.endpoint}: the page waits for {len(heavy)} blocking asset(s) of {total:,} bytes "
                    f"before its first paint ({', '.join(a.url for a in heavy)})"
                ),
                evidence={
                    "key": "",
                    "fingerprint": f"render-blocking|{endpoint.endpoint}",
                    "blocking_bytes": total,
                    "page_weight_bytes": page_bytes,
                    **{k: v for k, v in vitals_of(probe, endpoint.endpoint).items() if k != "page_weight_bytes"},
                    "assets": [
                        {
                            "url": a.url,
                            "kind": a.kind,
                            "wire_bytes": a.response.wire_bytes if a.response else 0,
                            "content_encoding": (a.response.content_encoding if a.response else "") or "none",
                            "cache_control": (a.response.cache_control if a.response else "") or "none",
                        }
                        for a in endpoint.assets
                    ],
                },
            )
        )
    return findings


def freshness_s(cache_control: str) -> int:
    """How long a Cache-Control header lets browsers or proxies keep the answer without asking again (the
    longest of max-age and s-maxage, in seconds; 0 with no-store or no-cache, or without either)."""
    longest = 0
    for directive in cache_control.lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0
        seconds = value.strip().strip('"')
        if name in ("max-age", "s-maxage") and seconds.isdigit():
            longest = max(longest, int(seconds))
    return longest


def _kept_by_http_caches(cache_control: str) -> bool:
    """Whether a Cache-Control header lets shared or private caches keep the answer for a while."""
    return freshness_s(cache_control) > 0


# What browsers fetch for a page and keep best: scripts, styles, images, fonts.
_STATIC_TYPES = ("application/javascript", "text/javascript", "text/css", "image/", "font/", "application/font")


def _is_static(content_type: str) -> bool:
    return content_type.startswith(_STATIC_TYPES)


def http_caching_findings(probe: ProbeReport, mix: Traffic, rules: Detection) -> list[Finding]:
    """Static assets (scripts, styles, images, fonts) answered the same on every repeat without a lifetime for
    caches (Cache-Control max-age): every visit downloads them again, or at best asks whether they changed.

    Judged by the headers alone: a load test has no browser cache, so no latency shows this; the cost falls on
    visitors (bytes, round trips before the first paint). A declared endpoint that serves such an asset is
    the finding's endpoint; a page's assets that no endpoint declares are listed on the page. Heavier than
    ``render_blocking_min_bytes``: medium, else low."""
    findings = []
    reported: set[str] = set()  # bodies (sha256) of the assets already named by an endpoint's finding
    for endpoint in probe.endpoints:
        uncached = [s for s in endpoint.samples if _uncached_static(s)]
        if endpoint.method == "GET" and uncached and endpoint.identical_repeats:
            findings.append(_http_caching(endpoint.endpoint, [(endpoint.endpoint, uncached[0])], mix, rules, own=True))
            reported |= {s.body_sha256 for s in uncached}
    for page in probe.endpoints:
        # The page's own assets that no declared endpoint serves (the same bytes): listed on the page.
        assets = [
            (a.url, a.response)
            for a in page.assets
            if a.response is not None and _uncached_static(a.response) and a.response.body_sha256 not in reported
        ]
        if assets:
            findings.append(_http_caching(page.endpoint, assets, mix, rules, own=False))
    return findings


def _uncached_static(sample: ResponseSample) -> bool:
    return sample.status == 200 and _is_static(sample.content_type) and not _kept_by_http_caches(sample.cache_control)


def _http_caching(
    endpoint: str, assets: list[tuple[str, ResponseSample]], mix: Traffic, rules: Detection, *, own: bool
) -> Finding:
    """``own``: the endpoint's answer is the asset (a change is then judged on its headers), else the page's."""
    total = sum(sample.wire_bytes for _, sample in assets)
    heavy = total >= rules.render_blocking_min_bytes
    names = ", ".join(name for name, _ in assets)
    what = (
        f"its {total:,}-byte {assets[0][1].content_type} answers" if own else f"{total:,} bytes of its assets ({names})"
    )
    return Finding(
        id="",
        type=FindingType.HTTP_CACHING,
        endpoint=endpoint,
        severity="medium" if heavy else "low",
        impact=round((0.3 if heavy else 0.1) * mix.share(endpoint), 4),
        estimated_gain_ms=0.0,
        summary=(
            f"{endpoint}: {what}, which browsers and proxies may not keep (no Cache-Control max-age): every "
            "visit fetches them again; a load test cannot show this"
        ),
        evidence={
            "key": "",
            "fingerprint": f"http-caching|{endpoint}",
            "wire_bytes": total,
            "served_by": "the endpoint" if own else "the page's assets",
            "assets": [
                {
                    "url": name,
                    "content_type": sample.content_type,
                    "wire_bytes": sample.wire_bytes,
                    "cache_control": sample.cache_control or "none",
                    "etag": sample.etag or "none",
                }
                for name, sample in assets
            ],
        },
    )


def cacheable_findings(
    probe: ProbeReport,
    own_work: dict[str, tuple[float, float, list[str]]],
    repeat_ratio: dict[str, float],
    mix: Traffic,
    rules: Detection,
) -> list[Finding]:
    """Idempotent GETs that answer the same on every repeat while the service does costly work of its own.

    ``own_work``: per endpoint, the median self time of its server span on the critical path (ms), its share
    of the request, example traces. ``repeat_ratio``: the share of the load's requests that repeated an
    earlier one (the hit ratio a cache would have had).
    """
    findings = []
    for endpoint in probe.endpoints:
        if endpoint.method != "GET" or not endpoint.identical_repeats or endpoint.endpoint not in own_work:
            continue
        self_ms, share, traces = own_work[endpoint.endpoint]
        # Under load a span's self time also holds the waits for an event loop or a CPU busy with the other
        # requests; asked alone, by the probe, the whole request took this long, so its own work took no longer
        # (an answer already served from a cache is quick alone, however slow a busy host makes it under load).
        alone = statistics.median(s.elapsed_ms for s in endpoint.samples) if endpoint.samples else self_ms
        self_ms = min(self_ms, alone)
        if self_ms < rules.cacheable_min_self_ms or share < rules.cacheable_min_self_share:
            continue
        if any("no-store" in s.cache_control or "private" in s.cache_control for s in endpoint.samples):
            continue  # the service says its answers must not be kept
        if endpoint.samples and all(_kept_by_http_caches(s.cache_control) for s in endpoint.samples):
            continue  # already cacheable by browsers and proxies: what is left is sending the bytes
        hits = repeat_ratio.get(endpoint.endpoint, 0.0)
        # As severe as what a cache would take off: the work's share of the request times the share of the load
        # it would serve (a cache no request repeats for removes nothing, however costly the work).
        findings.append(
            Finding(
                id="",
                type=FindingType.CACHEABLE,
                endpoint=endpoint.endpoint,
                severity=severity(share * hits),  # type: ignore[arg-type]
                impact=round(share * hits * mix.share(endpoint.endpoint), 4),
                estimated_gain_ms=round(self_ms * hits, 2),
                summary=(
                    f"{endpoint.endpoint}: {self_ms:.1f} ms of its own work per request ({share:.0%}), and "
                    f"the same answer on every repeat; a cache would have served {hits:.0%} of the load"
                ),
                evidence={
                    "key": "",
                    "fingerprint": f"cacheable|{endpoint.endpoint}",
                    "self_ms": round(self_ms, 3),
                    "share_of_request": round(share, 4),
                    "estimated_hit_ratio": round(hits, 4),
                    "suggested_ttl_s": rules.cache_ttl_s,
                    "repeats_per_example": len(endpoint.by_example[0]),
                    "examples": len(endpoint.by_example),
                    "trace_ids": traces,
                },
            )
        )
    return findings


# (vital, unit, the playbook's limit for it): what a page's visitors wait for or see move.
_VITALS = (
    ("lcp", "ms", "vitals_lcp_ms"),
    ("fcp", "ms", "vitals_fcp_ms"),
    ("cls", "", "vitals_cls"),
    ("inp", "ms", "vitals_inp_ms"),
    ("ttfb", "ms", "vitals_ttfb_ms"),
)


def vitals_of(probe: ProbeReport, endpoint: str) -> dict[str, float | int | None]:
    """The endpoint's page vitals as evidence, or nothing when its page was not measured in a browser."""
    page = next((p for p in probe.pages if p.endpoint == endpoint), None)
    return vitals_evidence(page) if page is not None else {}


def vitals_evidence(page: PageVitals) -> dict[str, float | int | None]:
    return {
        "fcp_ms": page.fcp_ms,
        "lcp_ms": page.lcp_ms,
        "cls": page.cls,
        "inp_ms": page.inp_ms,
        "ttfb_ms": page.ttfb_ms,
        "requests_per_visit": page.requests,
        "page_weight_bytes": int(page.bytes),
        "visits": page.visits,
    }


def web_vitals_findings(probe: ProbeReport, mix: Traffic, rules: Detection) -> list[Finding]:
    """Pages whose web vitals, measured in Chromium, are worse than the playbook's limits (by default the
    boundaries of Google's "poor" rating)."""
    findings = []
    for page in probe.pages:
        worse = [
            (name, unit, value, getattr(rules, limit))
            for name, unit, limit in _VITALS
            if (value := page.vital(name)) is not None and value > getattr(rules, limit)
        ]
        if not worse:
            continue
        # The share of the limit exceeded, capped: how bad it is for the visitor.
        share = min(1.0, max(value / limit - 1 for _, _, value, limit in worse))
        listed = ", ".join(
            f"{name.upper()} {value:,.{0 if unit else 3}f}{' ms' if unit else ''} (limit {limit:g})"
            for name, unit, value, limit in worse
        )
        lcp_gain = max(0.0, (page.lcp_ms or 0.0) - rules.vitals_lcp_ms)
        findings.append(
            Finding(
                id="",
                type=FindingType.WEB_VITALS,
                endpoint=page.endpoint,
                severity=severity(share),  # type: ignore[arg-type]
                impact=round(share * mix.share(page.endpoint), 4),
                estimated_gain_ms=round(lcp_gain, 2),
                summary=f"{page.endpoint}: {listed}, in Chromium over {page.visits} first visits",
                evidence={
                    "key": "",
                    "fingerprint": f"web-vitals|{page.endpoint}",
                    "url": page.url,
                    "poor": [name for name, *_ in worse],
                    **vitals_evidence(page),
                },
            )
        )
    return findings
