"""`load.rate: auto`: the capacity ramp before the baseline and the rate it chooses (pure).

Why a ramp: a fixed rate that is more than the target serves measures a queue, not the endpoints (a single
event loop at 40 req/s answered /health in 1.3 s), and every finding of such a baseline is wrong. The ramp
doubles the rate step by step up to the playbook's maximum; the baseline runs at the highest step the target
sustained, judged by what the target does (it kept up, and its requests did not start to wait), not by the
playbook's SLO: a slow endpoint is a finding, not a capacity limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.analysis.knee import MIN_ACHIEVED_SHARE, knee_summary
from ratchet.analysis.load_shapes import ShapeRun
from ratchet.config.playbook import LoadProfile
from ratchet.contracts import StressPlan, StressReport

# The first step must hold enough requests for its mean latency to be the reference of all others.
_REFERENCE_REQUESTS = 30
# A step's first second settles (see ratchet.store.samples) and is left out.
_SETTLE_S = 1.0
# The ramp stops by itself only where nothing is left to learn: most requests failing, or the p95 at the
# request timeout. A slow endpoint must not end it (its latency is what the baseline is for).
_ABORT_ERROR_RATE = 0.5
# k6 drops an iteration or two while it starts VUs as the rate jumps: a generator's hiccup, not the target's
# limit (a target that falls behind drops dozens, and misses its rate).
_DROPPED_SHARE = 0.01
# The baseline asks at most this share of what the target answered per second where it fell behind: room for
# the bursts of real traffic and for the validation's focused load.
_SAFE_SHARE = 0.7


@dataclass(frozen=True)
class ChosenRate:
    """The rate the baseline runs at and why, in one sentence for the events and the report."""

    rate: float
    saturated_below_max: bool
    summary: str


def capacity_shape(load: LoadProfile, max_error_rate: float) -> ShapeRun:
    """The capacity ramp: the auto rates, each step long enough that the first holds its reference requests."""
    rates = load.auto.rates()
    step_s = max(load.auto.step.total_seconds(), _SETTLE_S + _REFERENCE_REQUESTS / rates[0])
    plan = StressPlan(
        rates=rates,
        step_s=round(step_s, 3),
        abort_error_rate=_ABORT_ERROR_RATE,
        abort_p95_ms=load.request_timeout.total_seconds() * 1000,
        slo_p95_ms=None,
        max_error_rate=max_error_rate,
        max_latency_growth=load.auto.max_latency_growth,
        min_latency_growth_ms=load.auto.min_growth_ms,
        max_dropped_share=_DROPPED_SHARE,
    )
    return ShapeRun("capacity", rates[0], step_s * len(rates), 0.0, stress=plan)


def auto_rate(report: StressReport, load: LoadProfile) -> ChosenRate:
    """The highest step sustained without a break before it (the lowest step when none was), and at most
    ``_SAFE_SHARE`` of what the target served at the step where it fell behind.

    Why the second bound: k6 spaces its arrivals evenly, so a queue forms only once the rate passes what the
    target serves, and the last sustained step may keep it nearly always busy; where it fell behind, the
    requests it answered per second are its capacity, measured."""
    rates = load.auto.rates()
    ramp = f"capacity ramp {rates[0]:g}-{rates[-1]:g} req/s: {knee_summary(report)}"
    behind = next((s for s in report.steps if s.requests and s.achieved_rate < s.rate * MIN_ACHIEVED_SHARE), None)
    cap = round(behind.achieved_rate * _SAFE_SHARE, 1) if behind is not None else None
    capped = (
        f"; {_SAFE_SHARE:.0%} of the {behind.achieved_rate:g} req/s it answered when asked for {behind.rate:g}"
        if behind is not None
        else ""
    )
    if report.knee_rate is None:
        rate = min(rates[0], cap) if cap else rates[0]
        return ChosenRate(
            rate,
            True,
            f"load.rate auto: {rate:g} req/s, although the target did not sustain even {rates[0]:g} req/s{capped}; "
            f"the baseline describes a service under more load than it serves ({ramp})",
        )
    if report.knee_rate >= rates[-1]:
        return ChosenRate(
            report.knee_rate, False, f"load.rate auto: {report.knee_rate:g} req/s, the most asked for ({ramp})"
        )
    rate = min(report.knee_rate, cap) if cap else report.knee_rate
    return ChosenRate(
        rate,
        True,
        f"load.rate auto: {rate:g} req/s, backed off from {rates[-1]:g}: the target did not sustain "
        f"{report.broke_at_rate:g} req/s{capped if rate < report.knee_rate else ''} ({ramp})",
    )
