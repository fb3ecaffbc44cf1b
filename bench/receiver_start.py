"""A trace receiver's cold start and its memory at rest: `ratchet traces serve` started afresh, timed until it
answers, its resident memory read once it has started and again after it stored one export.

    python -m bench.receiver_start compiled|numba

``compiled``: the span decoder compiled at install (ratchet.traces.wire_aot); ``numba``: numba's, loaded from
its disk cache (RATCHET_SPAN_DECODER=numba), as where the first could not be built.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import httpx
import psutil
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.measure import print_json
from ratchet.traces.serve import READY_LINE

SETTLE_S = 1.0  # what an idle receiver does in its first second (its flush timer) is in the reading


def _export() -> bytes:
    spans = [Span(trace_id=bytes([i % 256]) * 16, span_id=bytes(8), name=f"GET /{i}") for i in range(1000)]
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    ).SerializeToString()


def measure(decoder: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as home:
        env = os.environ | {"RATCHET_HOME": home, "RATCHET_SPAN_DECODER": decoder}
        started = time.perf_counter()
        receiver = subprocess.Popen(
            [sys.executable, "-m", "ratchet.cli", "traces", "serve", "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = receiver.stdout.readline() if receiver.stdout else ""
            if READY_LINE not in line:
                raise SystemExit(f"the receiver did not start: {line!r}")
            url = line.split()[-1]
            httpx.get(f"{url}/health", timeout=30).raise_for_status()
            answered_s = time.perf_counter() - started
            process = psutil.Process(receiver.pid)
            time.sleep(SETTLE_S)
            at_rest = process.memory_info().rss / 2**20
            sent = httpx.post(
                f"{url}/v1/traces",
                content=_export(),
                headers={"content-type": "application/x-protobuf"},
                timeout=30,
            )
            sent.raise_for_status()
            httpx.post(f"{url}/ratchet/flush", timeout=30).raise_for_status()
            time.sleep(SETTLE_S)
            after = process.memory_info().rss / 2**20
        finally:
            receiver.terminate()
            receiver.wait(timeout=30)
    return {"answered_s": round(answered_s, 2), "at_rest_mb": round(at_rest, 1), "after_export_mb": round(after, 1)}


if __name__ == "__main__":
    print_json(measure(sys.argv[1]))
