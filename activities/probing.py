"""Probe the target's answers: each GET endpoint asked the same thing a few times (sizes, encodings, cache
headers, whether the answer repeats), a page's blocking assets, and a short burst of concurrent requests per
endpoint whose traces show what waits for what under concurrency. Only GETs: a probe never changes data."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import statistics
import time
from html.parser import HTMLParser
from urllib.parse import quote, urljoin

import httpx
from temporalio import activity

from ratchet.analysis.page_load import page_load_checks, page_load_verdicts, unjudged_page_metrics
from ratchet.analysis.responses import EndpointProbe, PageAsset, ProbeReport, ResponseSample, freshness_s
from ratchet.config.playbook import PageLoadSlo
from ratchet.config.target import _PLACEHOLDER, Endpoint, Target
from ratchet.contracts import (
    PageLoadRequest,
    PageLoadResult,
    PageVitals,
    ProbeRequest,
    ProbeSummary,
    WireBytesRequest,
    WireBytesResult,
)
from ratchet.errors import MeasurementError
from ratchet.k6.browser import find_chromium, measure_page
from ratchet.settings import Settings
from ratchet.simultaneous import get_at_once
from ratchet.traces.collect import collect_spans_of_run
from ratchet.traces.store import ENDPOINT_HEX, RUN_PREFIX_HEX, run_trace_prefix

ACCEPT_ENCODING = "gzip, deflate"
_PROBE_HEADERS = {"accept-encoding": ACCEPT_ENCODING, "user-agent": "ratchet-probe"}
_REPEATS = 3
_EXAMPLES = 3
# Requests sent at once per endpoint in the traced burst (`get_at_once`: they arrive together). What a limit on
# concurrency (a pool) makes wait shows only when many more arrive than it admits: against a pool of one
# connection per worker in two workers, 8 left 2-5 requests waiting long, at the edge of the 3 a pattern needs
# (`min_traces`); 16 leave 11-14.
_BURST = 16
_BURST_TIMEOUT_S = 60


# A page's visits must end well within the probe's heartbeat timeout (60 s): measure_page runs in one go.
_PAGE_TIMEOUT_S = 40
# A throttled device's visit takes seconds (a megabyte on slow 4G is five): these visits heartbeat as they go.
_PROFILED_VISIT_S = 30
_HEARTBEAT_S = 10
_NO_CHROMIUM = "no Chromium found (Debian package chromium, or RATCHET_CHROMIUM)"


def fill(path: str, example: dict[str, str | int | float]) -> str:
    """The endpoint's path with its placeholders filled, as the k6 script fills them (URI-encoded)."""
    return _PLACEHOLDER.sub(lambda m: quote(str(example[m.group(1)]), safe=""), path)


def _sample(response: httpx.Response, elapsed_ms: float) -> ResponseSample:
    headers = response.headers
    return ResponseSample(
        status=response.status_code,
        wire_bytes=response.num_bytes_downloaded,
        body_bytes=len(response.content),
        body_sha256=hashlib.sha256(response.content).hexdigest(),
        content_type=headers.get("content-type", "").split(";")[0].strip().lower(),
        content_encoding=headers.get("content-encoding", ""),
        cache_control=headers.get("cache-control", ""),
        etag=headers.get("etag", ""),
        elapsed_ms=elapsed_ms,
    )


async def _get(client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None) -> ResponseSample:
    started = time.perf_counter()
    response = await client.get(url, headers=headers)
    return _sample(response, (time.perf_counter() - started) * 1000)


class _HeadAssets(HTMLParser):
    """Scripts and style sheets in a page's <head> (outside <noscript>), and whether they block the paint."""

    def __init__(self) -> None:
        super().__init__()
        self.in_head = self.in_noscript = False
        self.assets: list[tuple[str, str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "noscript"):
            setattr(self, f"in_{tag}", True)
            return
        if not self.in_head or self.in_noscript:
            return
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            blocking = "defer" not in found and "async" not in found and found.get("type") != "module"
            self.assets.append((str(found["src"]), "script", blocking))
        elif tag == "link" and found.get("href") and (found.get("rel") or "").lower() == "stylesheet":
            blocking = (found.get("media") or "all") in ("all", "screen")
            self.assets.append((str(found["href"]), "style", blocking))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "noscript"):
            setattr(self, f"in_{tag}", False)


def head_assets(page: str) -> list[tuple[str, str, bool]]:
    """(url, kind, blocking) of every script and style sheet the page's head loads."""
    parser = _HeadAssets()
    parser.feed(page)
    return parser.assets


def _light(pages: list[PageVitals]) -> list[PageVitals]:
    """Pages as a payload carries them: without the bytes of every resource (the report file keeps those)."""
    return [page.model_copy(update={"resources": {}}) for page in pages]


def burst_trace_id(prefix: str, endpoint_index: int) -> str:
    """A trace id the run's span collection assigns to the endpoint (see ratchet.traces.store)."""
    return prefix + f"{endpoint_index:0{ENDPOINT_HEX}x}" + secrets.token_hex((32 - RUN_PREFIX_HEX - ENDPOINT_HEX) // 2)


class ProbeActivities:
    """probe_endpoints and measure_wire_bytes, served by the perf-optimizer role."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def _probe_endpoint(self, client: httpx.AsyncClient, endpoint: Endpoint) -> EndpointProbe:
        examples = endpoint.examples[:_EXAMPLES] or [{}]
        probe = EndpointProbe(endpoint=endpoint.name, method=endpoint.method, accept_encoding=ACCEPT_ENCODING)
        for example in examples:
            path = fill(endpoint.http_path, example)
            probe.by_example.append([await _get(client, path) for _ in range(_REPEATS)])
        first = probe.by_example[0][0]
        if first.status == 200 and first.content_type == "text/html":
            page = await client.get(fill(endpoint.http_path, examples[0]))
            for url, kind, blocking in head_assets(page.text):
                absolute = urljoin(str(page.url), url)
                response = await _get(client, absolute) if absolute.startswith(str(client.base_url)) else None
                probe.assets.append(PageAsset(url=url, kind=kind, blocking=blocking, response=response))
        return probe

    async def _burst(self, target: Target, run_id: str) -> None:
        """``_BURST`` requests at once per GET endpoint, each starting a trace of the burst's run."""
        prefix = run_trace_prefix(run_id)
        for index, endpoint in enumerate(target.endpoints):
            if endpoint.method != "GET":
                continue
            examples = endpoint.examples or [{}]
            requests = [
                (
                    fill(endpoint.http_path, examples[n % len(examples)]),
                    _PROBE_HEADERS | {"traceparent": f"00-{burst_trace_id(prefix, index)}-{secrets.token_hex(8)}-01"},
                )
                for n in range(_BURST)
            ]
            await get_at_once(target.base, requests, timeout_s=_BURST_TIMEOUT_S)
            activity.heartbeat({"progress": f"burst of {_BURST} concurrent requests sent to {endpoint.name}"})

    async def _page_vitals(self, request: ProbeRequest, report: ProbeReport) -> None:
        """Web vitals of every page (a GET endpoint answering HTML) from first visits in Chromium."""
        pages = [
            (probe.endpoint, request.target.endpoint(probe.endpoint))
            for probe in report.endpoints
            if probe.by_example
            and probe.by_example[0][0].status == 200
            and probe.by_example[0][0].content_type == "text/html"
        ]
        if not pages:
            return
        chromium = find_chromium(self.settings.chromium)
        if chromium is None:
            report.notes.append(f"web vitals not measured: {_NO_CHROMIUM}")
            return
        for name, endpoint in pages:
            url = request.target.base + fill(endpoint.http_path, (endpoint.examples or [{}])[0])
            activity.heartbeat({"progress": f"measuring the web vitals of {name} in Chromium"})
            try:
                report.pages.append(
                    await asyncio.to_thread(
                        measure_page,
                        name,
                        url,
                        chromium,
                        self.settings.probe_dir(request.campaign_id),
                        visits=request.playbook.detection.page_visits,
                        timeout_s=_PAGE_TIMEOUT_S,
                    )
                )
            except MeasurementError as exc:
                report.notes.append(f"{name}: web vitals not measured: {exc}")
        wanted = request.playbook.slo.page_load
        if wanted is not None:
            report.page_loads, notes = await self._page_loads(
                request.target, wanted, [name for name, _ in pages], request.campaign_id, "before"
            )
            report.notes += notes

    async def _page_loads(
        self, target: Target, wanted: PageLoadSlo, pages: list[str], campaign_id: str, label: str
    ) -> tuple[list[PageVitals], list[str]]:
        """Each page on each of the playbook's device profiles, ``wanted.visits`` first visits each."""
        chromium = find_chromium(self.settings.chromium)
        if chromium is None:
            return [], [f"page load targets not checked: {_NO_CHROMIUM}"]
        measured: list[PageVitals] = []
        notes: list[str] = []
        out_dir = self.settings.probe_dir(campaign_id) / f"page-load-{label}"
        for name in pages:
            endpoint = target.endpoint(name)
            url = target.base + fill(endpoint.http_path, (endpoint.examples or [{}])[0])
            for profile in wanted.profiles:
                progress = f"measuring the page load of {name} on {profile.value} ({wanted.visits} first visits)"
                visits = asyncio.create_task(
                    asyncio.to_thread(
                        measure_page,
                        name,
                        url,
                        chromium,
                        out_dir,
                        visits=wanted.visits,
                        timeout_s=_PROFILED_VISIT_S * wanted.visits,
                        profile=profile,
                    )
                )
                while not visits.done():
                    activity.heartbeat({"progress": progress})
                    await asyncio.wait({visits}, timeout=_HEARTBEAT_S)
                try:
                    measured.append(visits.result())
                except MeasurementError as exc:
                    notes.append(f"{name} ({profile.value}): page load not measured: {exc}")
        return measured, notes

    @activity.defn(name="measure_page_loads")
    async def measure_page_loads(self, request: PageLoadRequest) -> PageLoadResult:
        """The named pages on the playbook's page_load profiles, as the probe measured them before the changes."""
        wanted = request.playbook.slo.page_load
        if wanted is None or not request.pages:
            return PageLoadResult()
        pages, notes = await self._page_loads(request.target, wanted, request.pages, request.campaign_id, request.label)
        return PageLoadResult(
            pages=_light(pages),
            checks=page_load_checks(pages, request.playbook),
            verdicts=page_load_verdicts(request.before, pages, request.playbook),
            notes=notes + unjudged_page_metrics(request.before, pages, request.playbook),
        )

    @activity.defn(name="measure_wire_bytes")
    async def measure_wire_bytes(self, request: WireBytesRequest) -> WireBytesResult:
        """The bytes on the wire of each named endpoint's answers to a client that accepts gzip: the median over
        its examples (three at most), each asked once. What a payload change (compression, a smaller answer)
        claims to save, measured directly."""
        target = request.target
        measured: dict[str, float] = {}
        fresh: dict[str, int] = {}
        async with httpx.AsyncClient(base_url=target.base, headers=_PROBE_HEADERS, timeout=60) as client:
            for name in request.endpoints:
                endpoint = target.endpoint(name)
                activity.heartbeat({"progress": f"measuring the wire bytes of {name}"})
                samples = [
                    await _get(client, fill(endpoint.http_path, e)) for e in endpoint.examples[:_EXAMPLES] or [{}]
                ]
                failed = [s.status for s in samples if s.status >= 400]
                if failed:
                    raise MeasurementError(f"{name} answered {failed[0]} while its wire bytes were measured")
                measured[name] = float(statistics.median(s.wire_bytes for s in samples))
                fresh[name] = min(freshness_s(s.cache_control) for s in samples)
        return WireBytesResult(bytes=measured, freshness_s=fresh)

    @activity.defn(name="probe_endpoints")
    async def probe_endpoints(self, request: ProbeRequest) -> ProbeSummary:
        """Ask every GET endpoint the same things a few times, read its page's assets, then send a traced burst."""
        target = request.target
        report = ProbeReport()
        async with httpx.AsyncClient(base_url=target.base, headers=_PROBE_HEADERS, timeout=60) as client:
            for endpoint in target.http_endpoints:
                if endpoint.method != "GET":
                    continue
                activity.heartbeat({"progress": f"probing {endpoint.name}"})
                try:
                    report.endpoints.append(await self._probe_endpoint(client, endpoint))
                except httpx.HTTPError as exc:
                    report.notes.append(f"{endpoint.name}: not probed ({exc.__class__.__name__}: {exc})")
            await self._page_vitals(request, report)
            spans = 0
            traces = target.traces
            if traces is not None and traces.propagate and target.load_script is None:
                run_id = f"{request.campaign_id}-probe"
                report.burst_run_id = run_id
                await self._burst(target, run_id)
                collected = await collect_spans_of_run(
                    receiver_url=self.settings.otlp_url,
                    token=self.settings.otlp_token,
                    spans_dir=self.settings.spans_dir,
                    run_id=run_id,
                    endpoints=[e.name for e in target.endpoints],
                    out_file=self.settings.spans_file(run_id),
                    settle_s=traces.settle.total_seconds(),
                    max_wait_s=max(self.settings.trace_settle_max, traces.settle.total_seconds() * 2),
                    on_wait=lambda text: activity.heartbeat({"progress": text}),
                )
                spans = collected.spans
                if collected.note:
                    report.notes.append(collected.note)
        out = self.settings.probe_file(request.campaign_id)
        out.write_text(report.model_dump_json())
        return ProbeSummary(
            file=str(out),
            endpoints=len(report.endpoints),
            pages=_light(report.pages),
            page_loads=_light(report.page_loads),
            burst_run_id=report.burst_run_id,
            burst_spans=spans,
            notes=report.notes,
        )
