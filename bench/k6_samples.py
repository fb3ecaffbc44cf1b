"""Ingest k6's raw output for 1,000,000 requests: Ratchet's stream into Parquet vs a json.loads line loop.

    python -m bench.k6_samples fixture PATH REQUESTS   write a k6 output file (the lines k6 writes per request)
    python -m bench.k6_samples warm PATH               compile Ratchet's line scan (numba), or load it from its cache
    python -m bench.k6_samples ours PATH               stream it into Parquet, then exact percentiles (DuckDB)
    python -m bench.k6_samples naive PATH              json.loads every line, percentiles with numpy

The fixture repeats the 13 lines that k6 1.x writes for each request with Ratchet's system tags (copied from
a real run), with log-normal latencies, 1% errors and one request per millisecond.

Ratchet's scan for the kept lines is compiled by numba once per install into a cache on disk: ``warm`` runs
before the timed step, in its own process, as a load test does before k6 starts (see SampleStream.start).
Each step reports ``work_s``, from the first line read to the percentiles, after the process has started
(imports; for Ratchet, the scan loaded from the cache, as SampleStream.start does before k6 starts). The
whole process, start-up included, is timed by ``bench.measure`` as well.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.measure import step_main

ENDPOINTS = ("orders-by-email", "product", "customer", "health")
# The Point lines k6 writes for one request (k6 1.1, --system-tags status,scenario,expected_response,error_code).
_REQUEST_TAGS = '{{"endpoint":"{ep}","expected_response":"{ok}","scenario":"{ep}","status":"{status}"}}'
_SCENARIO_TAGS = '{{"scenario":"{ep}"}}'
_TREND_METRICS = (
    "http_req_blocked",
    "http_req_connecting",
    "http_req_tls_handshaking",
    "http_req_sending",
    "http_req_waiting",
    "http_req_receiving",
)


def _request_lines(when: str, ep: str, ms: float, status: int) -> str:
    ok = "true" if status < 400 else "false"
    tags = _REQUEST_TAGS.format(ep=ep, ok=ok, status=status)
    scenario = _SCENARIO_TAGS.format(ep=ep)

    def point(metric: str, value: float | int, point_tags: str) -> str:
        return (
            f'{{"metric":"{metric}","type":"Point","data":{{"time":"{when}","value":{value},"tags":{point_tags}}}}}\n'
        )

    lines = [point("http_reqs", 1, tags), point("http_req_duration", ms, tags)]
    lines += [point(m, round(ms * 0.01, 6), tags) for m in _TREND_METRICS]
    lines += [
        point("http_req_failed", 0 if status < 400 else 1, tags),
        point("data_sent", 98, scenario),
        point("data_received", 1834, scenario),
        point("iteration_duration", round(ms * 1.02, 6), scenario),
        point("iterations", 1, scenario),
    ]
    return "".join(lines)


def write_fixture(path: Path, requests: int) -> None:
    """A k6 NDJSON output for ``requests`` requests (deterministic: the same file every time)."""
    rng = np.random.default_rng(20261122)
    latencies = np.round(rng.lognormal(mean=2.5, sigma=0.6, size=requests), 6)
    endpoints = rng.integers(0, len(ENDPOINTS), size=requests)
    errors = rng.random(size=requests) < 0.01
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="ascii") as out:
        out.write(
            '{"type":"Metric","data":{"name":"http_req_duration","type":"trend","contains":"time",'
            '"thresholds":[],"submetrics":null},"metric":"http_req_duration"}\n'
        )
        batch: list[str] = []
        for i in range(requests):
            seconds, millis = divmod(i, 1000)
            minutes, seconds = divmod(seconds, 60)
            when = f"2026-11-22T{10 + minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}.{millis:03d}123456Z"
            status = 500 if errors[i] else 200
            batch.append(_request_lines(when, ENDPOINTS[endpoints[i]], float(latencies[i]), status))
            if len(batch) == 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))
    tmp.replace(path)


def ours(path: Path) -> dict[str, object]:
    """Ratchet's path: the k6 output stream → Parquet parts → one samples file → exact percentiles."""
    from ratchet.store.kept_lines import warm_up
    from ratchet.store.sample_stream import SampleStream
    from ratchet.store.samples import endpoint_stats, finalize_run_samples

    warm_up()  # as SampleStream.start does before k6 starts: start-up, not ingest
    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "parts"
        started = time.perf_counter()
        with path.open("rb") as source:
            SampleStream(parts).feed_file(source)
        samples = Path(tmp) / "samples.parquet"
        finalize_run_samples(parts, samples, warmup_s=0)
        ingested = time.perf_counter()
        stats = endpoint_stats(samples)
        done = time.perf_counter()
    return {
        "check": {"requests": sum(s.requests for s in stats), "p95": {s.endpoint: s.p95 for s in stats}},
        "ingest_s": round(ingested - started, 2),
        "percentiles_s": round(done - ingested, 3),
        "work_s": done - started,
    }


def warm(path: Path) -> dict[str, object]:
    """Compile the line scan or load it from numba's cache."""
    from ratchet.store.kept_lines import warm_up

    return {"warm_s": round(warm_up(), 2)}


def naive(path: Path) -> dict[str, object]:
    """The baseline anyone would write first: json.loads per line, lists per endpoint, numpy percentiles."""
    started = time.perf_counter()
    durations: dict[str, list[float]] = defaultdict(list)
    with path.open(encoding="ascii") as lines:
        for line in lines:
            record = json.loads(line)
            if record.get("type") == "Point" and record.get("metric") == "http_req_duration":
                durations[record["data"]["tags"]["endpoint"]].append(record["data"]["value"])
    p95 = {ep: round(float(np.percentile(values, 95)), 3) for ep, values in sorted(durations.items())}
    check = {"requests": sum(len(v) for v in durations.values()), "p95": p95}
    return {"check": check, "work_s": time.perf_counter() - started}


def main(argv: list[str]) -> None:
    step_main(argv, write_fixture, {"warm": warm, "ours": ours, "naive": naive})


if __name__ == "__main__":
    main(sys.argv[1:])
