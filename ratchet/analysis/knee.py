"""The knee of a stress run: the highest arrival rate that still met the targets, and where it broke.

Pure: per-step figures in, a report out. A step meets the targets when it was measured at all, its p95 is
under the SLO p95, its error rate at most the allowed one, and the load generator kept up (no dropped
iterations, most of the asked-for rate achieved). The knee is the last step of the unbroken run of met steps
from the start: a rate that passes again after a failure is luck, not capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from ratchet.contracts import StressPlan, StressReport, StressStep

# Below this share of the asked-for rate the target (or the generator) did not keep up, dropped or not.
MIN_ACHIEVED_SHARE = 0.9


@dataclass(frozen=True)
class StepSample:
    """What the samples of one step hold (the step's settling second left out)."""

    step: int
    requests: int
    seconds: float
    p95: float | None
    errors: int
    dropped: int
    mean_ms: float | None = None  # mean of the step's latencies


def _judge(rate: float, sample: StepSample, plan: StressPlan, reference_ms: float | None) -> StressStep:
    achieved = sample.requests / sample.seconds if sample.seconds > 0 else 0.0
    error_rate = sample.errors / sample.requests if sample.requests else 0.0
    reasons = []
    if sample.requests == 0:
        reasons.append("not reached (the run stopped before)")
    else:
        if plan.slo_p95_ms is not None and sample.p95 is not None and sample.p95 > plan.slo_p95_ms:
            reasons.append(f"p95 {sample.p95:.1f} ms > {plan.slo_p95_ms:g} ms")
        if error_rate > plan.max_error_rate:
            reasons.append(f"errors {error_rate:.1%} > {plan.max_error_rate:.1%}")
        if sample.dropped > plan.max_dropped_share * rate * sample.seconds:
            reasons.append(f"{sample.dropped} dropped iterations (out of VUs: requests queue)")
        if achieved < rate * MIN_ACHIEVED_SHARE:
            reasons.append(f"achieved {achieved:.1f}/s of {rate:g}/s")
        growth, mean = plan.max_latency_growth, sample.mean_ms
        if (
            growth is not None
            and reference_ms
            and mean is not None
            and mean > reference_ms * growth
            and mean - reference_ms >= plan.min_latency_growth_ms
        ):
            reasons.append(
                f"mean latency {mean:.1f} ms, x{mean / reference_ms:.1f} the first step's "
                f"{reference_ms:.1f} ms (limit x{growth:g}): requests wait to be served"
            )
    return StressStep(
        rate=rate,
        achieved_rate=round(achieved, 2),
        requests=sample.requests,
        p95=None if sample.p95 is None else round(sample.p95, 3),
        mean_ms=None if sample.mean_ms is None else round(sample.mean_ms, 3),
        error_rate=round(error_rate, 4),
        dropped=sample.dropped,
        met=not reasons,
        why_not="; ".join(reasons),
    )


def stress_report(samples: list[StepSample], plan: StressPlan, *, ended_by_itself: bool) -> StressReport:
    """Judge every step and find the knee, the first broken step and the first step with dropped iterations."""
    # A capacity ramp judges each step's mean latency against the first (the lightest) step's.
    reference = samples[0].mean_ms if samples else None
    steps = [_judge(rate, sample, plan, reference) for rate, sample in zip(plan.rates, samples, strict=True)]
    knee = None
    broke: StressStep | None = None
    for step in steps:
        if not step.met:
            broke = step
            break
        knee = step.rate
    dropped_from = next((s.rate for s in steps if s.dropped), None)
    # k6's abortOnFail ends the run early: the last steps then have (almost) no requests.
    aborted = ended_by_itself and any(s.requests == 0 for s in steps)
    return StressReport(
        steps=steps,
        knee_rate=knee,
        broke_at_rate=broke.rate if broke else None,
        break_reason=broke.why_not if broke else "",
        dropped_from_rate=dropped_from,
        aborted=aborted,
    )


def knee_summary(report: StressReport) -> str:
    """One line for people: the knee, where it broke and why, where dropped iterations began."""
    text = "no step met the targets" if report.knee_rate is None else f"knee at {report.knee_rate:g} req/s"
    if report.broke_at_rate is not None:
        text += f"; broke at {report.broke_at_rate:g} req/s ({report.break_reason})"
    else:
        text += "; every step met the targets"
    if report.dropped_from_rate is not None:
        text += f"; dropped iterations from {report.dropped_from_rate:g} req/s"
    if report.aborted:
        text += "; k6 stopped the run at its breaking condition"
    return text
