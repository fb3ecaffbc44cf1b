"""`load.rate: auto` (pure): the capacity ramp's steps, how each is judged, and the rate it chooses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ratchet.analysis.capacity import auto_rate, capacity_shape
from ratchet.analysis.knee import StepSample, stress_report
from ratchet.config.playbook import LoadProfile, Playbook
from ratchet.contracts import StressReport

AUTO = LoadProfile.model_validate({"rate": "auto", "auto": {"max_rate": 40}})


def ramp(means: list[float], *, achieved: list[float] | None = None) -> list[StepSample]:
    """One step per rate of the auto ramp (5, 10, 20, 40 req/s) with the given mean latencies."""
    shape = capacity_shape(AUTO, 0.01)
    assert shape.stress is not None
    seconds = shape.stress.step_s - 1
    shares = achieved or [1.0] * len(means)
    return [
        StepSample(i, int(rate * seconds * share), seconds, mean * 3, 0, 0, mean)
        for i, (rate, mean, share) in enumerate(zip(shape.stress.rates, means, shares, strict=True))
    ]


def judged(samples: list[StepSample]) -> StressReport:
    shape = capacity_shape(AUTO, 0.01)
    assert shape.stress is not None
    return stress_report(samples, shape.stress, ended_by_itself=True)


def test_the_ramp_doubles_up_to_the_maximum_and_its_first_step_holds_enough_requests() -> None:
    shape = capacity_shape(AUTO, 0.01)
    assert shape.stress is not None
    assert shape.stress.rates == [5, 10, 20, 40]
    # 30 requests at 5 req/s after the settling second: the first step is the reference of all others.
    assert (shape.stress.step_s - 1) * 5 >= 30
    assert shape.stress.slo_p95_ms is None  # a slow endpoint is a finding, not a capacity limit


def test_a_healthy_target_runs_at_the_most_asked_for() -> None:
    chosen = auto_rate(judged(ramp([20, 21, 22, 26])), AUTO)
    assert chosen.rate == 40 and not chosen.saturated_below_max
    assert "the most asked for" in chosen.summary


def test_requests_that_start_to_wait_back_the_rate_off_and_say_why() -> None:
    """A single worker: the mean doubles at 20 req/s (every request waits about as long as it works)."""
    report = judged(ramp([20, 24, 55, 900], achieved=[1, 1, 1, 0.8]))
    assert report.knee_rate == 10 and report.broke_at_rate == 20
    assert "mean latency 55.0 ms, x2.8 the first step's 20.0 ms (limit x2): requests wait to be served" in (
        report.break_reason
    )
    chosen = auto_rate(report, AUTO)
    assert chosen.rate == 10 and chosen.saturated_below_max
    assert "backed off from 40: the target did not sustain 20 req/s" in chosen.summary


def test_an_iteration_dropped_as_k6_starts_vus_is_not_the_targets_limit() -> None:
    """One dropped iteration at 40 req/s (of 240 asked): k6 starting VUs as the rate jumped; dozens: a limit."""
    *lower, last = ramp([20, 20, 21, 22])
    for dropped, rate in ((1, 40), (30, 20)):
        step = StepSample(3, last.requests, last.seconds, last.p95, 0, dropped, last.mean_ms)
        assert auto_rate(judged([*lower, step]), AUTO).rate == rate


def test_a_fast_target_on_a_busy_host_is_not_backed_off_for_a_few_milliseconds() -> None:
    """2 ms at 5 req/s, 5 ms at 40: x2.5, but 3 ms is the host's noise, not a queue (under the 5 ms minimum)."""
    chosen = auto_rate(judged(ramp([2, 2.2, 2.5, 5])), AUTO)
    assert chosen.rate == 40 and not chosen.saturated_below_max


def test_a_target_that_does_not_keep_up_even_at_the_first_step_runs_below_what_it_answered() -> None:
    chosen = auto_rate(judged(ramp([20, 200, 900, 900], achieved=[0.5, 0.4, 0.2, 0.1])), AUTO)
    assert chosen.rate == 1.8 and chosen.saturated_below_max  # 70% of the 2.5 req/s it answered at 5
    assert "did not sustain even 5 req/s; 70% of the 2.5 req/s it answered when asked for 5" in chosen.summary


def test_where_the_target_fell_behind_what_it_answered_bounds_the_rate() -> None:
    """k6 spaces arrivals evenly: a worker busy nine tenths of the time at 20 req/s does not queue yet, and at
    40 it answers 22 req/s. The last sustained step (20) would keep it nearly always busy: 70% of 22 it is."""
    chosen = auto_rate(judged(ramp([20, 20, 21, 900], achieved=[1, 1, 1, 0.55])), AUTO)
    assert chosen.rate == 15.4
    assert "did not sustain 40 req/s; 70% of the 22 req/s it answered when asked for 40" in chosen.summary
    # Where it answered more than the last sustained step needs, that step is the rate.
    assert auto_rate(judged(ramp([20, 20, 21, 900], achieved=[1, 1, 1, 0.8])), AUTO).rate == 20


def test_auto_is_a_rate_everywhere_a_rate_is_read_only_once_resolved() -> None:
    with pytest.raises(ValueError, match="resolved by the capacity ramp"):
        _ = AUTO.rps
    assert AUTO.with_rate(10).rps == 10


@pytest.mark.parametrize(
    ("rate", "message"),
    [("fast", "'auto'"), (0, "above 0 and at most 10000"), (20_000, "above 0 and at most 10000")],
)
def test_a_bad_rate_names_what_is_valid(rate: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Playbook.model_validate({"name": "p", "approvers": ["a"], "load": {"rate": rate}})


def test_a_stress_run_beside_auto_is_checked_at_every_rate_auto_may_choose() -> None:
    """stress.start_rate 30 without a maximum: 8x a resolved rate of 5 is 40, above it; fine. At 3, not."""
    Playbook.model_validate({"name": "p", "approvers": ["a"], "load": {"rate": "auto", "stress": {"start_rate": 30}}})
    with pytest.raises(ValidationError, match="max_rate 24 must be above the start rate 30"):
        Playbook.model_validate(
            {
                "name": "p",
                "approvers": ["a"],
                "load": {"rate": "auto", "auto": {"max_rate": 24}, "stress": {"start_rate": 30}},
            }
        )
