"""The standing watch's judgement: which endpoints' p95 moved to a level past the playbook's degradation within
its window, and has stayed there for enough probes to be sure (E-divisive change points, permutation test)."""

from __future__ import annotations

from datetime import datetime

import numpy as np

from ratchet.analysis.changepoints import detect_change_points
from ratchet.config.playbook import Watch
from ratchet.contracts import WatchDrift, WatchPoint


def kept_points(rules: Watch) -> int:
    """How many probes the watch keeps: its window and twice as much before it for the level to compare with
    (bounded, so the workflow's state stays small whatever the watch's age)."""
    per_window = max(int(rules.window / rules.interval), rules.min_points)
    return 3 * per_window + 1


def degradations(points: list[WatchPoint], rules: Watch, now: datetime) -> list[WatchDrift]:
    """Per endpoint, the newest change point when it lies within the window, is a rise of at least the
    degradation and has at least ``min_points`` probes after it (and before it)."""
    drifts = []
    endpoints = sorted({endpoint for point in points for endpoint in point.p95})
    for endpoint in endpoints:
        series = [(p.at, p.p95[endpoint]) for p in points if endpoint in p.p95]
        if len(series) < 2 * rules.min_points:
            continue
        times, values = [at for at, _ in series], [value for _, value in series]
        changes = detect_change_points(values, times=times, min_size=rules.min_points, seed=len(values))
        if not changes:
            continue
        newest = changes[-1]
        since = newest.at
        if since is None or since < now - rules.window:
            continue
        # The levels as medians: before the change, and of the latest probes (the degradation must last to the
        # newest ones). The split's own means would mix in a probe from the other side when the change is fresh.
        before = float(np.median(values[: newest.index]))
        after = float(np.median(values[-rules.min_points :]))
        shift = after / before - 1 if before > 0 else 0.0
        if shift < rules.degradation:
            continue
        drifts.append(
            WatchDrift(
                endpoint=endpoint,
                since=since,
                before_ms=round(before, 3),
                after_ms=round(after, 3),
                shift=round(shift, 4),
                p_value=newest.p_value,
                sentence=f"{endpoint}: p95 rose {shift:.0%} since {since:%Y-%m-%d %H:%M}Z, from {before:.1f} to "
                f"{after:.1f} ms (medians; {len(values) - newest.index} probes since, p={newest.p_value:.2g}; "
                f"past the {rules.degradation:.0%} the playbook allows)",
            )
        )
    return drifts


def drift_key(drift: WatchDrift) -> str:
    """How an alerted drift is remembered: its endpoint and the time its level began."""
    return f"{drift.endpoint}@{drift.since.isoformat()}"


def already_alerted(drift: WatchDrift, alerted: list[str], rules: Watch) -> bool:
    """The same drift seen again: its endpoint's, beginning within a window of one alerted before (the best
    split can move by a probe or two as probes arrive; that is no new degradation)."""
    for key in alerted:
        endpoint, _, since = key.rpartition("@")
        if endpoint == drift.endpoint and abs(datetime.fromisoformat(since) - drift.since) <= rules.window:
            return True
    return False


def still_remembered(alerted: list[str], now: datetime, rules: Watch) -> list[str]:
    """The alerted drifts young enough to be seen again (older ones left the kept probes)."""
    horizon = now - rules.window * 3 - rules.interval * rules.min_points
    return [key for key in alerted if datetime.fromisoformat(key.rpartition("@")[2]) >= horizon]
