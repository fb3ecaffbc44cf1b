"""The suite's own order: the longest tests first, each worker's share starting with its longest."""

from __future__ import annotations

from tests.slowest_first import dealt_slowest_first


def test_two_workers_each_start_with_a_long_test_and_the_unmeasured_come_last_in_their_order() -> None:
    durations = {"a": 10.0, "b": 200.0, "c": 50.0, "d": 120.0}
    order = dealt_slowest_first(["x", "a", "b", "y", "c", "d"], durations, workers=2)
    assert order == ["b", "c", "x", "d", "a", "y"]  # shares [b c x] and [d a y]: 200 and 120 start
    assert dealt_slowest_first(["x", "a", "b"], durations, workers=1) == ["b", "a", "x"]
