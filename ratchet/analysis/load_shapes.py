"""The load tests a playbook asks the assessment for, after the baseline: peak, stress and soak (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.config.playbook import LoadProfile, Playbook
from ratchet.config.target import Target
from ratchet.contracts import LoadTestRequest, StressPlan

# Without an SLO p95 a stress run still needs a latency at which it stops by itself.
_DEFAULT_ABORT_P95_MS = 1000.0
_ABORT_P95_FACTOR = 4.0

SOAK = "soak"  # the label of the endurance run (and of its run again after the changes: soak-after)


@dataclass(frozen=True)
class ShapeRun:
    """One extra load test: its label, rate and length; a stress plan or the soak's bounded memory."""

    label: str
    rate: float
    duration_s: float
    warmup_s: float
    stress: StressPlan | None = None
    bounded_memory: bool = False

    def describe(self) -> str:
        if self.stress is not None:
            rates = self.stress.rates
            return f"{len(rates)} steps of {self.stress.step_s:g}s from {rates[0]:g} to {rates[-1]:g} req/s"
        return f"{self.rate:g} req/s for {self.duration_s:g}s"


def load_request(
    campaign_id: str,
    label: str,
    target: Target,
    load: LoadProfile,
    shape: ShapeRun,
    focus: dict[str, float] | None = None,
    *,
    roots_only: bool = False,
) -> LoadTestRequest:
    """The load test of ``shape`` against ``target``, with the playbook's VU cap and request timeout
    (``roots_only``: see ``LoadTestRequest``)."""
    return LoadTestRequest(
        campaign_id=campaign_id,
        label=label,
        target=target,
        rate=shape.rate,
        duration_s=shape.duration_s,
        warmup_s=shape.warmup_s,
        max_vus=load.max_vus,
        request_timeout_s=load.request_timeout.total_seconds(),
        stress=shape.stress,
        bounded_memory=shape.bounded_memory,
        focus=focus or {},
        roots_only=roots_only,
    )


def stress_plan(playbook: Playbook) -> StressPlan:
    """The steps and breaking conditions of the playbook's stress run."""
    load = playbook.load
    assert load.stress is not None
    slo_p95 = playbook.slo.default.p95_ms
    abort_p95 = load.stress.max_p95_ms
    if abort_p95 is None:
        abort_p95 = slo_p95 * _ABORT_P95_FACTOR if slo_p95 is not None else _DEFAULT_ABORT_P95_MS
    return StressPlan(
        rates=load.stress_rates(),
        step_s=load.stress.step.total_seconds(),
        abort_error_rate=load.stress.max_error_rate,
        abort_p95_ms=abort_p95,
        slo_p95_ms=slo_p95,
        max_error_rate=playbook.slo.default.max_error_rate,
    )


def extra_shapes(playbook: Playbook) -> list[ShapeRun]:
    """Peak, stress and soak runs, in that order, for those the playbook sets."""
    load = playbook.load
    warmup = load.warmup.total_seconds()
    runs = []
    if load.peak is not None:
        duration = load.peak.duration or load.duration
        runs.append(ShapeRun("peak", load.rps * load.peak.factor, duration.total_seconds(), warmup))
    if load.stress is not None:
        plan = stress_plan(playbook)
        # No warm-up: the first step is the gentlest, and every step is judged on its own.
        runs.append(ShapeRun("stress", plan.rates[0], plan.step_s * len(plan.rates), 0.0, stress=plan))
    if load.soak is not None:
        rate = load.soak.rate if load.soak.rate is not None else load.rps
        runs.append(ShapeRun(SOAK, rate, load.soak.duration.total_seconds(), warmup, bounded_memory=True))
    return runs
