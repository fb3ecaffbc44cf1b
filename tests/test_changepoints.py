"""Change points of a baseline series (E-divisive means, permutation test) and the drift flag: pure, on plain
numbers."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratchet.analysis.changepoints import (
    ChangePoint,
    baseline_drift,
    detect_change_points,
    split_statistics,
)


def noisy(level: float, size: int, rng: np.random.Generator, spread: float = 0.05) -> np.ndarray:
    return level * rng.lognormal(0.0, spread, size)


def brute_force_statistics(values: np.ndarray, min_size: int) -> np.ndarray:
    """Q of every split, from the definition (every pair summed in a loop)."""
    out = []
    for tau in range(min_size, values.size - min_size + 1):
        left, right = values[:tau], values[tau:]
        m, k = left.size, right.size
        between = np.abs(left[:, None] - right[None, :]).mean()
        within_left = np.mean([abs(a - b) for a, b in itertools.combinations(left, 2)])
        within_right = np.mean([abs(a - b) for a, b in itertools.combinations(right, 2)])
        out.append(m * k / (m + k) * (2 * between - within_left - within_right))
    return np.array(out)


def test_split_statistics_match_the_definition_for_one_series_and_a_batch() -> None:
    rng = np.random.default_rng(3)
    series = rng.normal(size=19)
    assert np.allclose(split_statistics(series, 4), brute_force_statistics(series, 4))
    batch = rng.normal(size=(3, 12))
    assert np.allclose(split_statistics(batch, 3), np.stack([brute_force_statistics(row, 3) for row in batch]))


def test_a_30_percent_step_is_found_at_its_index_with_its_levels() -> None:
    rng = np.random.default_rng(7)
    series = np.r_[noisy(100, 20, rng), noisy(130, 15, rng)]
    [change] = detect_change_points(series)
    assert change.index == 20
    assert change.mean_before == pytest.approx(series[:20].mean())
    assert change.mean_after == pytest.approx(series[20:].mean())
    assert change.relative_shift == pytest.approx(0.3, abs=0.05)
    assert change.p_value <= 0.001
    assert change.direction == "rose"


def test_two_steps_are_both_found_each_with_its_neighbouring_levels() -> None:
    rng = np.random.default_rng(11)
    series = np.r_[noisy(100, 15, rng), noisy(140, 15, rng), noisy(90, 15, rng)]
    changes = detect_change_points(series)
    assert [c.index for c in changes] == [15, 30]
    assert changes[0].mean_after == pytest.approx(changes[1].mean_before)
    assert [c.direction for c in changes] == ["rose", "fell"]


def test_times_and_labels_name_the_first_value_of_the_new_level() -> None:
    rng = np.random.default_rng(5)
    series = np.r_[noisy(50, 12, rng), noisy(65, 12, rng)]
    start = datetime(2026, 11, 1)
    times = [start + timedelta(days=i) for i in range(series.size)]
    labels = [f"c{i}" for i in range(series.size)]
    [change] = detect_change_points(series, times=times, labels=labels)
    assert (change.label, change.at) == ("c12", datetime(2026, 11, 13))


def test_a_series_shorter_than_two_minimum_segments_has_no_change_point() -> None:
    # A huge step, but 9 values cannot hold two segments of 5.
    assert detect_change_points([1, 1, 1, 1, 100, 100, 100, 100, 100], min_size=5) == []
    assert detect_change_points([], min_size=5) == []
    assert detect_change_points([7.0] * 40) == []  # constant: nothing to split


def test_the_same_series_and_seed_give_the_same_answer() -> None:
    rng = np.random.default_rng(2)
    series = np.r_[noisy(100, 9, rng, 0.15), noisy(125, 9, rng, 0.15)]  # near the edge of significance
    first = detect_change_points(series, seed=4)
    assert all(detect_change_points(series, seed=4) == first for _ in range(3))


def test_bad_parameters_say_what_is_valid() -> None:
    with pytest.raises(ValueError, match="min_size: at least 2"):
        detect_change_points([1.0] * 10, min_size=1)
    with pytest.raises(ValueError, match="permutations: at least 999"):
        detect_change_points([1.0] * 10, permutations=100)
    with pytest.raises(ValueError, match="finite"):
        detect_change_points([1.0, float("nan")] * 10)
    with pytest.raises(ValueError, match="labels: one per value"):
        detect_change_points([1.0] * 10, labels=["a"])


def test_flat_noisy_series_rarely_show_a_change_point() -> None:
    """At p <= 0.001 a flat series should almost never get a change point: 0.3 expected in 300 series."""
    false_positives = 0
    for seed in range(300):
        rng = np.random.default_rng(1000 + seed)
        # Skewed noise, as p95s are: a p95 of 100 ms jittering by about 10%.
        series = noisy(100, int(rng.integers(10, 41)), rng, spread=0.1)
        false_positives += bool(detect_change_points(series, seed=seed))
    assert false_positives <= 3


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    before=st.integers(min_value=10, max_value=30),
    after=st.integers(min_value=10, max_value=30),
    level=st.floats(min_value=1.0, max_value=5000.0),
    noise=st.floats(min_value=0.0, max_value=0.05),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    rises=st.booleans(),
)
def test_property_a_30_percent_step_within_bounded_noise_is_found_exactly(
    before: int, after: int, level: float, noise: float, seed: int, rises: bool
) -> None:
    rng = np.random.default_rng(seed)
    step = 1.3 if rises else 1 / 1.3
    series = np.r_[
        level * (1 + rng.uniform(-noise, noise, before)), level * step * (1 + rng.uniform(-noise, noise, after))
    ]
    changes = detect_change_points(series, seed=seed)
    assert [c.index for c in changes] == [before]
    assert changes[0].relative_shift == pytest.approx(step - 1, abs=0.1)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    size=st.integers(min_value=0, max_value=9),
    min_size=st.integers(min_value=2, max_value=5),
    data=st.data(),
)
def test_property_too_short_series_never_have_a_change_point(size: int, min_size: int, data: st.DataObject) -> None:
    size = min(size, 2 * min_size - 1)
    values = data.draw(st.lists(st.floats(min_value=0, max_value=1e6), min_size=size, max_size=size))
    assert detect_change_points(values, min_size=min_size) == []


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    pieces=st.lists(
        st.tuples(st.floats(min_value=1, max_value=1000), st.integers(min_value=1, max_value=20)), max_size=5
    ),
    min_size=st.integers(min_value=2, max_value=8),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_property_change_points_are_ordered_significant_and_leave_min_size_values_in_every_segment(
    pieces: list[tuple[float, int]], min_size: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = np.concatenate([noisy(level, size, rng) for level, size in pieces]) if pieces else np.array([])
    changes = detect_change_points(values, min_size=min_size, permutations=999, seed=seed)
    bounds = [0, *(c.index for c in changes), values.size]
    if changes:
        assert all(b - a >= min_size for a, b in itertools.pairwise(bounds))
    assert all(c.p_value <= 0.001 for c in changes)
    for before, after, c in zip(bounds, bounds[2:], changes, strict=False):
        assert c.mean_before == pytest.approx(values[before : c.index].mean())
        assert c.mean_after == pytest.approx(values[c.index : after].mean())


# ------------------------------------------------------------------ drift


def change(index: int, before: float, after: float, *, label: str = "c-12", day: int = 20) -> ChangePoint:
    return ChangePoint(
        index=index,
        mean_before=before,
        mean_after=after,
        relative_shift=after / before - 1,
        p_value=0.0004,
        at=datetime(2026, 11, day),
        label=label,
    )


def test_a_change_among_the_latest_values_is_drift_and_says_so_in_a_sentence() -> None:
    drift = baseline_drift("orders-by-email", [change(15, 100, 134)], 20, latest=10)
    assert drift.drifting and drift.change_point is not None and drift.change_point.index == 15
    assert drift.sentence == "orders-by-email: baseline p95 rose 34% at campaign c-12 (2026-11-20), p=0.0004"


def test_an_older_change_is_not_drift_but_is_mentioned() -> None:
    drift = baseline_drift("orders", [change(3, 100, 80, label="c-4", day=2)], 20, latest=10)
    assert not drift.drifting and drift.change_point is None
    assert drift.sentence == (
        "orders: baseline p95 steady over the latest 10 campaigns (last change: fell 20% at campaign c-4 "
        "(2026-11-02), p=0.0004)"
    )


def test_no_change_point_is_no_drift() -> None:
    drift = baseline_drift("orders", [], 7, latest=10)
    assert not drift.drifting
    assert drift.sentence == "orders: baseline p95 steady, no change point in 7 campaigns"


def test_drift_end_to_end_on_a_series_that_just_rose() -> None:
    rng = np.random.default_rng(21)
    series = np.r_[noisy(100, 20, rng, 0.03), noisy(135, 8, rng, 0.03)]
    changes = detect_change_points(series)
    assert baseline_drift("e", changes, series.size, latest=10).drifting
    assert not baseline_drift("e", changes, series.size, latest=5).drifting
