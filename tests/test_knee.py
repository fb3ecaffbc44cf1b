"""The knee of a stress run and the extra load shapes a playbook asks for (pure, on plain data)."""

from __future__ import annotations

from ratchet.analysis.knee import StepSample, knee_summary, stress_report
from ratchet.analysis.load_shapes import extra_shapes
from ratchet.config.playbook import Playbook
from ratchet.contracts import StressPlan

PLAN = StressPlan(
    rates=[10, 20, 40, 80], step_s=10, abort_error_rate=0.05, abort_p95_ms=400, slo_p95_ms=100, max_error_rate=0.01
)


def step(i: int, rate: float, p95: float, *, errors: int = 0, dropped: int = 0, share: float = 1.0) -> StepSample:
    requests = int(rate * 9 * share)
    return StepSample(
        step=i, requests=requests, seconds=9, p95=p95 if requests else None, errors=errors, dropped=dropped
    )


def test_the_knee_is_the_last_met_step_before_the_first_failure() -> None:
    samples = [step(0, 10, 20), step(1, 20, 30), step(2, 40, 180), step(3, 80, 90)]
    report = stress_report(samples, PLAN, ended_by_itself=True)
    assert [s.met for s in report.steps] == [True, True, False, True]
    # The last step passing again after a failure is luck, not capacity.
    assert report.knee_rate == 20 and report.broke_at_rate == 40
    assert "p95 180.0 ms > 100 ms" in report.break_reason
    assert report.dropped_from_rate is None and not report.aborted
    assert knee_summary(report) == "knee at 20 req/s; broke at 40 req/s (p95 180.0 ms > 100 ms)"


def test_dropped_iterations_and_a_rate_not_achieved_break_a_step_even_with_a_good_p95() -> None:
    samples = [step(0, 10, 20), step(1, 20, 25, dropped=7), step(2, 40, 25, share=0.5), step(3, 80, 25)]
    report = stress_report(samples, PLAN, ended_by_itself=True)
    assert report.knee_rate == 10 and report.broke_at_rate == 20 and report.dropped_from_rate == 20
    assert "7 dropped iterations" in report.break_reason
    assert "achieved 20.0/s of 40/s" in report.steps[2].why_not


def test_an_aborted_run_leaves_its_last_steps_unreached() -> None:
    samples = [step(0, 10, 20, errors=40), step(1, 20, 20), step(2, 40, 0, share=0), step(3, 80, 0, share=0)]
    report = stress_report(samples, PLAN, ended_by_itself=True)
    assert report.aborted and report.knee_rate is None and report.broke_at_rate == 10
    assert "errors 44.4% > 1.0%" in report.break_reason
    assert report.steps[3].why_not == "not reached (the run stopped before)"
    assert knee_summary(report).startswith("no step met the targets; broke at 10 req/s")


def test_extra_shapes_follow_the_playbook_in_order_with_defaults_from_the_baseline() -> None:
    playbook = Playbook.model_validate(
        {
            "name": "p",
            "approvers": ["a"],
            "slo": {"default": {"p95_ms": 80}},
            "load": {
                "rate": 40,
                "duration": "20s",
                "warmup": "3s",
                "peak": {},
                "stress": {"steps": 3},
                "soak": {"duration": "1h"},
            },
        }
    )
    peak, stress, soak = extra_shapes(playbook)
    assert (peak.label, peak.rate, peak.duration_s, peak.warmup_s) == ("peak", 80, 20, 3)
    assert stress.stress is not None and stress.stress.rates == [20, 170, 320]  # half to 8x the baseline rate
    assert stress.duration_s == 30 and stress.warmup_s == 0
    assert stress.stress.abort_p95_ms == 320 and stress.stress.slo_p95_ms == 80  # 4x the SLO p95
    assert (soak.rate, soak.duration_s, soak.bounded_memory) == (40, 3600, True)
    assert extra_shapes(Playbook(name="p", approvers=["a"])) == []
