"""What a person should do about a finding no lever addresses: concrete, from the finding's own evidence."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ratchet.config.common import FindingType
from ratchet.contracts import Finding


def _traces(ev: dict[str, Any]) -> str:
    ids = ev.get("trace_ids") or []
    return f" Trace {ids[0]} shows it." if ids else ""


def _ms(value: Any) -> str:
    return f"{float(value):.1f} ms" if isinstance(value, int | float) else "?"


def _n_plus_one(f: Finding, ev: dict[str, Any]) -> str:
    group = ev.get("statements") or []
    if len(group) > 1:
        listed = "; ".join(f"`{statement}`" for statement in group)
        return (
            f"The group {listed} runs {ev.get('calls_per_request', 'many')} times per request in {f.endpoint}, "
            f"once per item: load each with one query (IN (...) or a join) before the loop.{_traces(ev)}"
        )
    return (
        f"The {ev.get('calls_per_request', 'many')} runs of `{ev.get('statement', 'one statement')}` per request "
        f"in {f.endpoint} can become one query with IN (...) or a join, loaded before the loop.{_traces(ev)}"
    )


def _sequential(f: Finding, ev: dict[str, Any]) -> str:
    targets = ev.get("targets") or []
    listed = "; ".join(targets) if targets else "its independent steps"
    return (
        f"{f.endpoint} runs {listed} one after another though none needs another's result: issue them at "
        f"once (asyncio.gather, a thread pool, or one batched request), saving about "
        f"{_ms(ev.get('saved_ms'))} per request.{_traces(ev)}"
    )


def _n_plus_one_api(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{f.endpoint} calls {ev.get('destination', 'one resource')} {ev.get('calls_per_request', 'many')} "
        f"times per request: ask for all items in one batched call, or cache the answers.{_traces(ev)}"
    )


def _cacheable(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{f.endpoint} recomputes the same answer ({_ms(ev.get('self_ms'))} of its own work): keep answers "
        f"per request parameters for about {ev.get('suggested_ttl_s', 60)} s (an in-process or shared cache, "
        f"or Cache-Control: max-age for clients); the load's repeats suggest a hit ratio of "
        f"{float(ev.get('estimated_hit_ratio', 0)):.0%}. Make sure writes invalidate what they change."
    )


def _uncompressed(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"Compress {f.endpoint}'s {ev.get('content_type', 'text')} answers for clients that send "
        "Accept-Encoding (gzip or brotli in the service, its framework's middleware or the proxy in front)."
    )


def _large_payload(f: Finding, ev: dict[str, Any]) -> str:
    size = ev.get("body_bytes")
    sent = f"{size:,} bytes" if isinstance(size, int) else "a large body"
    return (
        f"{f.endpoint} sends {sent} per answer: page it, let clients pick fields, or serve it compressed and "
        "cached; a feed can be a file built once."
    )


def _render_blocking(f: Finding, ev: dict[str, Any]) -> str:
    assets = ", ".join(a.get("url", "?") if isinstance(a, dict) else str(a) for a in ev.get("assets", [])) or "them"
    return (
        f"On {f.endpoint}, load {assets} without blocking the first paint: `defer` or `async` on scripts, critical CSS "
        "inline and the rest preloaded; minify and compress, and version the URLs to cache them for long."
    )


def _http_caching(f: Finding, ev: dict[str, Any]) -> str:
    assets = ", ".join(a.get("url", "?") if isinstance(a, dict) else str(a) for a in ev.get("assets", [])) or "them"
    return (
        f"On {f.endpoint}, let browsers and proxies keep {assets}: put a version (a hash of the content) in the asset URLs and send "
        "`Cache-Control: public, max-age=31536000, immutable`; where the URL cannot change, a shorter max-age with "
        "an ETag lets clients revalidate instead of downloading again."
    )


def _saturation(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"Calls from {f.endpoint} to {ev.get('destination', 'a dependency')} wait {_ms(ev.get('median_wait_ms'))} "
        f"for a connection or worker ({ev.get('max_called_at_once', '?')} made at once, "
        f"{ev.get('max_served_at_once', '?')} served): raise the client's pool or the service's workers, "
        f"then confirm with the stress run.{_traces(ev)}"
    )


def _resource_use(f: Finding, ev: dict[str, Any]) -> str:
    missed = ev.get("checks") or []
    said = ", ".join(
        f"{c.get('metric', '?')} {float(c.get('value', 0)):.0f}% (target {c.get('limit', '?')}%)" for c in missed
    )
    cpu = any(str(c.get("metric", "")).startswith("cpu") for c in missed)
    where = (
        "the endpoints with the most time of their own in the other findings are where the CPU goes: fix those "
        "first, then give the service more cores or workers if it stays over"
        if cpu
        else "look for what grows with the load (caches without a bound, buffers, connection pools) with a heap "
        "profile under the same load, then give the service more memory if it stays over"
    )
    return f"{f.endpoint} under the baseline's load: {said or 'over its targets'}. No lever is sure to help: {where}."


def _capacity(f: Finding, ev: dict[str, Any]) -> str:
    broke = ev.get("broke_at_rate")
    where = f" (it broke at {broke} req/s{', where ' + ev['break_reason'] if ev.get('break_reason') else ''})"
    said = f"{f.endpoint} sustains {ev.get('knee_rate', '?')} req/s of the {ev.get('asked_rate', '?')} asked"
    said += where if broke is not None else ""
    if f.severity == "high":
        return (
            f"{said}: a gap this wide is an architecture question, not a lever's. Scale out (more instances "
            "behind a balancer, more workers), take work off the request path (queues, precomputed answers), "
            "or split what saturates first; the other findings say which endpoint's work to cut first."
        )
    return f"{said}: the other findings' fixes, or more workers, may close it; run the stress load again after."


def _db_latency(f: Finding, ev: dict[str, Any]) -> str:
    slowest = ev.get("statements") or []
    named = "; ".join(f"`{s.get('statement', '?')}` (p95 {_ms(s.get('p95_ms'))})" for s in slowest[:3])
    return (
        f"{f.endpoint}: statements at p95 {_ms(ev.get('p95_ms'))} against {_ms(ev.get('limit_ms'))}. Start with the "
        f"slowest{': ' + named if named else ''}: read their plans (the database inspection), index what they "
        "filter and join on, read fewer rows, and keep long reports off the request path."
    )


def _page_load(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{f.summary}. On a slow device the bytes before the first paint decide it: defer or split the scripts, "
        "inline the critical styles and load the rest without blocking, compress and cache the assets, size "
        "the largest image for the screen and preload it; the page's render-blocking and payload findings name "
        "which assets."
    )


def _cache_hit_rate(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{f.endpoint} served {float(ev.get('hit_rate', 0)):.0%} of its lookups ({ev.get('hits', 0):.0f} hits, "
        f"{ev.get('misses', 0):.0f} misses) against a {float(ev.get('limit', 0)):.0%} target. Check in this "
        "order: is it switched on and its time to live long enough for the answers' freshness; is it large "
        "enough for the load's keys (evictions); does its key hold something that changes on every request "
        "(a time, a session, the whole query string); is it warmed after a deploy."
    )


def _missing_index(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"Create an index on {ev.get('table', '?')}({', '.join(ev.get('columns', []))}); the plan shows: "
        f"{ev.get('plan_line', '?')}"
    )


def _error_hotspot(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{f.endpoint} fails more under load ({float(ev.get('error_rate', 0)):.1%} against "
        f"{float(ev.get('baseline_error_rate', 0)):.1%} at the baseline): look for timeouts, pool exhaustion "
        "or locks in its errors and raise the limit that is hit."
    )


def _slow(f: Finding, ev: dict[str, Any]) -> str:
    if ev.get("dependency"):
        return (
            f"{f.endpoint} mostly waits on {ev['dependency']} ({_ms(ev.get('dependency_ms'))} per request): "
            "ask its owners for a faster answer, cache it, call it less, or set a target that allows for it."
        )
    return (
        f"Profile {f.endpoint}: its p95 is {_ms(ev.get('endpoint_p95_ms'))} and no span or plan explains it; "
        "have it export spans (db and HTTP client instrumentation) or declare its queries in the target."
    )


def _workflow_ids(ev: dict[str, Any]) -> str:
    ids = ev.get("workflow_ids") or []
    return f" Execution {ids[0]} shows it." if ids else ""


def _slow_step(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"Most of {f.endpoint}'s critical path is {ev.get('step', 'one step')} "
        f"({float(ev.get('share_of_critical_path', 0)):.0%}): profile its activity, give it a faster backend, or "
        f"split it so that parts run at once.{_workflow_ids(ev)}"
    )


def _resource_exhaustion(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"Steps of {f.endpoint} wait in task queue {ev.get('task_queue', '?')} (p95 {_ms(ev.get('wait_p95_ms'))}, "
        f"{_ms(ev.get('lone_wait_ms'))} alone): raise the workers' max_concurrent_activities or pollers, or add "
        f"workers on that queue.{_workflow_ids(ev)}"
    )


def _api_limit(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{ev.get('step', 'A step')} of {f.endpoint} is refused for a rate limit ({ev.get('limited_calls', '?')} of "
        f"{ev.get('calls', '?')} calls: {ev.get('reason', '')}): raise the quota, spread the calls, or move to a "
        f"provider without the limit.{_workflow_ids(ev)}"
    )


def _sequential_dependency(f: Finding, ev: dict[str, Any]) -> str:
    first, second = (ev.get("steps") or ["the first step", "the second"])[:2]
    return (
        f"In {f.endpoint}, start {second} together with {first} (asyncio.gather in the workflow): its input uses "
        f"nothing of {first}'s result. Check first that it relies on no side effect of {first}.{_workflow_ids(ev)}"
    )


def _cache_miss(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{ev.get('step', 'A step')} of {f.endpoint} repeats the same input for the same result (hit ratio "
        f"{float(ev.get('hit_ratio', 0)):.0%}): keep its results keyed by input, if it only computes or looks up."
        f"{_workflow_ids(ev)}"
    )


def _inefficient_algorithm(f: Finding, ev: dict[str, Any]) -> str:
    return (
        f"{ev.get('step', 'A step')} of {f.endpoint} grows as input size^{ev.get('exponent', '?')}: look for "
        f"pairwise or nested work in its activity (an index, a hash or sorting makes it near-linear).{_workflow_ids(ev)}"
    )


_ADVICE: dict[FindingType, Callable[[Finding, dict[str, Any]], str]] = {
    FindingType.SLOW_STEP: _slow_step,
    FindingType.RESOURCE_EXHAUSTION: _resource_exhaustion,
    FindingType.API_LIMIT: _api_limit,
    FindingType.SEQUENTIAL_DEPENDENCY: _sequential_dependency,
    FindingType.CACHE_MISS: _cache_miss,
    FindingType.INEFFICIENT_ALGORITHM: _inefficient_algorithm,
    FindingType.N_PLUS_ONE: _n_plus_one,
    FindingType.SEQUENTIAL_CALLS: _sequential,
    FindingType.SEQUENTIAL_QUERIES: _sequential,
    FindingType.N_PLUS_ONE_API: _n_plus_one_api,
    FindingType.CACHEABLE: _cacheable,
    FindingType.UNCOMPRESSED: _uncompressed,
    FindingType.LARGE_PAYLOAD: _large_payload,
    FindingType.RENDER_BLOCKING: _render_blocking,
    FindingType.HTTP_CACHING: _http_caching,
    FindingType.SATURATION: _saturation,
    FindingType.MISSING_INDEX: _missing_index,
    FindingType.ERROR_HOTSPOT: _error_hotspot,
    FindingType.RESOURCE_USE: _resource_use,
    FindingType.CAPACITY: _capacity,
    FindingType.DB_LATENCY: _db_latency,
    FindingType.CACHE_HIT_RATE: _cache_hit_rate,
    FindingType.PAGE_LOAD: _page_load,
}


def advice(finding: Finding) -> str:
    """Concrete advice for one finding, quoting its evidence (statement, calls, traces, bytes, waits)."""
    return _ADVICE.get(finding.type, _slow)(finding, finding.evidence)
