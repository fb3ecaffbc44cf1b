"""A soak run's drift: whether its requests get slower, or the target's memory grows, from its start to its end
(the source material's endurance test: leaks and slow degradation that a short run does not show).

Requests within a run are not independent, so neither test takes them one by one: the run is cut into equal
windows and the trend is judged over the windows (Kendall's tau, one-sided), its size by Theil-Sen's slope
over them. A drift counts when both say so: beyond chance at the playbook's significance, and by at least a
fifth of the start's p95 (latency) or a twentieth of its memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from scipy import stats

from ratchet.contracts import SoakComparison, SoakDrift

WINDOWS = 8  # one-sided Kendall's tau over 8 windows reaches p = 1/40320: enough for any playbook significance
MIN_PER_WINDOW = 10  # requests in a window, for its p95
MIN_SAMPLES_PER_WINDOW = 4  # memory samples (1 Hz): a soak of 32 s or more
LATENCY_DRIFT = 1.2
MEMORY_GROWTH = 0.05


def _windows(
    times: np.ndarray, values: np.ndarray, statistic: Callable[[np.ndarray], float], per_window: int
) -> tuple[np.ndarray, np.ndarray] | None:
    if times.size < WINDOWS * per_window:
        return None
    edges = np.linspace(times.min(), times.max(), WINDOWS + 1)
    index = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, WINDOWS - 1)
    middles, readings = [], []
    for window in range(WINDOWS):
        inside = values[index == window]
        if inside.size < max(1, per_window // 2):
            return None  # a gap in the run: no trend to read
        middles.append((edges[window] + edges[window + 1]) / 2)
        readings.append(statistic(inside))
    return np.array(middles), np.array(readings)


def _trend(windows: tuple[np.ndarray, np.ndarray]) -> tuple[float, float, float, float]:
    """(fitted first, fitted last, slope per second, one-sided p of a rise) over the windows."""
    middles, readings = windows
    slope, intercept, _, _ = stats.theilslopes(readings, middles)
    p = float(stats.kendalltau(middles, readings, alternative="greater").pvalue)
    first, last = intercept + slope * middles[0], intercept + slope * middles[-1]
    return float(first), float(last), float(slope), p


def soak_drift(
    request_times: np.ndarray,
    durations_ms: np.ndarray,
    memory_times: np.ndarray,
    memory_mb: np.ndarray,
    significance: float,
) -> SoakDrift:
    drift = SoakDrift()
    latency = _windows(request_times, durations_ms, lambda v: float(np.quantile(v, 0.95)), MIN_PER_WINDOW)
    if latency is not None:
        first, last, _, p = _trend(latency)
        drift.latency_growth = round(last / first, 3) if first > 0 else None
        drift.latency_p = p
        drift.latency_drifts = p < significance and (drift.latency_growth or 0) >= LATENCY_DRIFT
    memory = (
        _windows(memory_times, memory_mb, lambda v: float(np.mean(v)), MIN_SAMPLES_PER_WINDOW)
        if memory_times.size
        else None
    )
    if memory is not None:
        first, last, slope, p = _trend(memory)
        drift.memory_growth = round((last - first) / first, 4) if first > 0 else None
        drift.memory_mb_per_min = round(slope * 60, 2)
        drift.memory_p = p
        drift.memory_grows = p < significance and (drift.memory_growth or 0) >= MEMORY_GROWTH
    return drift


def compare_soaks(before: SoakDrift, after: SoakDrift) -> SoakComparison:
    """Improved when a drift the soak showed before is gone; regressed when one appears; unchanged otherwise."""
    was = before.latency_drifts or before.memory_grows
    now = after.latency_drifts or after.memory_grows
    verdict: Literal["improved", "unchanged", "regressed"] = (
        "improved" if was and not now else "regressed" if now and not was else "unchanged"
    )
    sentence = f"over the soak, before: {before.said()}; after: {after.said()}"
    return SoakComparison(before=before, after=after, verdict=verdict, sentence=sentence)
