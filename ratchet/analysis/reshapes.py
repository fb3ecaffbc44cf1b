"""The assessment's stress run against the same run after the changes: a verdict on the knee.

One stress run a side: the knee is only known to a step (the last step met, the next one not), and a run
next to another on a busy host can lose a step. So a knee counts as moved when it moved by two steps or more;
by one, it is unchanged within the run's resolution, and the sentence says so.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal

from ratchet.contracts import StressReport

KNEE_STEPS = 2


def knee_verdict(
    before: StressReport, after: StressReport
) -> tuple[Literal["improved", "unchanged", "regressed"], str]:
    rates = [s.rate for s in before.steps]
    step = min((b - a for a, b in pairwise(rates)), default=0.0)
    old, new = before.knee_rate or 0.0, after.knee_rate or 0.0
    said = f"knee {old:g} -> {new:g} req/s"
    if step <= 0:
        return "unchanged", f"{said} (a run of one step: no resolution to judge by)"
    moved = (new - old) / step
    if moved >= KNEE_STEPS:
        return "improved", f"{said}, {moved:.0f} steps higher"
    if moved <= -KNEE_STEPS:
        return "regressed", f"{said}, {-moved:.0f} steps lower"
    return "unchanged", f"{said}: within one step of {step:g} req/s, one stress run a side"
