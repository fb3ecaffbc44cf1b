"""The tuning optimizer on plain data: where it starts, that it finds a good value of a pool size within a
small budget on a curve like a saturating pool's, and that a tunable lever must say its baseline."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ratchet.analysis.decisions import best_trial
from ratchet.analysis.tuning import suggest
from ratchet.config.target import LeverParameter
from ratchet.contracts import Trial
from ratchet.templating import render_tree

POOL = LeverParameter(kind="range", minimum=1, maximum=32, baseline=1, default=16, integer=True)


def queueing_p95(pool: float) -> float:
    """A pool too small for 8 concurrent calls queues them; beyond 8 each connection costs a little."""
    return 35 + max(0.0, 8 - pool) * 20 + 0.3 * pool


def run(budget: int, objective=queueing_p95, fails_below: float = 0) -> list[Trial]:  # type: ignore[no-untyped-def]
    trials: list[Trial] = []
    for _ in range(budget):
        value, why = suggest(POOL, trials)
        assert why
        failed = value < fails_below
        trials.append(Trial(value=value, p95_ms=None if failed else objective(value), failed=failed))
    return trials


def test_the_first_trials_measure_the_baseline_then_the_default() -> None:
    first, second, *_ = run(3)
    assert (first.value, second.value) == (1, 16)


def test_within_six_trials_it_finds_a_pool_near_the_best() -> None:
    trials = run(6)
    values = [t.value for t in trials]
    assert len(set(values)) == 6 and all(v == int(v) and 1 <= v <= 32 for v in values)
    best = best_trial(trials)
    optimum = min(queueing_p95(v) for v in range(1, 33))
    assert best is not None and best.p95_ms is not None and best.p95_ms <= optimum * 1.1, values


def test_the_smallest_value_as_fast_as_the_best_is_kept() -> None:
    trials = [
        Trial(value=1, p95_ms=900),
        Trial(value=16, p95_ms=41.0),
        Trial(value=8, p95_ms=42.5),
        Trial(value=4, p95_ms=60),
        Trial(value=2, failed=True),
    ]
    assert best_trial(trials).value == 8  # type: ignore[union-attr]  # within 5% of 41 ms, half the connections


def test_failed_trials_push_the_search_away() -> None:
    trials = run(5, fails_below=4)
    assert trials[0].failed  # the baseline (1) fails: nothing below 4 answers in time
    assert all(t.value >= 4 for t in trials[2:]), [t.value for t in trials]
    assert best_trial(trials) is not None and not best_trial(trials).failed  # type: ignore[union-attr]


def test_a_range_parameter_must_say_its_baseline() -> None:
    with pytest.raises(ValidationError, match="a range parameter needs baseline"):
        LeverParameter(kind="range", minimum=1, maximum=8, default=4)
    with pytest.raises(ValidationError, match="need minimum <= baseline <= maximum"):
        LeverParameter(kind="range", minimum=1, maximum=8, default=4, baseline=0)
    assert POOL.value(6.4) == 6 and POOL.value(99) == 32


def test_a_template_that_is_one_expression_keeps_its_type() -> None:
    body = {"pool": "{{ parameter }}", "label": "pool of {{ parameter }}", "on": "{{ parameter > 1 }}"}
    assert render_tree(body, {"parameter": 8}, where="t") == {"pool": 8, "label": "pool of 8", "on": True}
