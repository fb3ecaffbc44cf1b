"""Live progress of a load test, as heartbeats and the live view show it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Progress:
    """What a load test has done so far: from k6's REST API, or from the sample stream (soak runs)."""

    requests: int = 0
    rate: float = 0.0
    p95_ms: float | None = None
    error_rate: float = 0.0
    elapsed_s: float = 0.0

    def describe(self) -> str:
        p95 = f"{self.p95_ms:.1f} ms" if self.p95_ms is not None else "-"
        return f"{self.requests} requests, {self.rate:.1f}/s, p95 {p95}, errors {self.error_rate:.1%}"
