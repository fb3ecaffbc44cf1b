"""Calibration: how noisy a target is from run to run, and so how many runs per arm and what margins its
validations need.

A/A runs (the target unchanged) give, per endpoint, the spread of the per-run percentile on a log scale,
``s``. With ``k`` runs per arm the log of the after/before ratio has a standard error of about
``s * sqrt(2 / k)``, so:

- the **noise floor** at ``k`` runs is the interval's half-width, ``exp(z * s * sqrt(2 / k)) - 1``: a margin
  below it leaves an unchanged endpoint inconclusive;
- to see a slowdown ``delta`` as regressed past the margin ``d`` with the asked power, the interval must
  clear ``1 + d`` when the truth is ``1 + delta``:
  ``k >= 2 s^2 (z + z_power)^2 / (ln(1 + delta) - ln(1 + d))^2``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from ratchet.analysis.bootstrap import PER_RUN_MIN_REQUESTS, QUANTILES, ratio_interval, run_percentile
from ratchet.config.playbook import Validation
from ratchet.contracts import EndpointNoise

# More runs per arm than this is not a recommendation but a sign that the runs are too short or too noisy.
MAX_RUNS_PER_ARM = 40


def endpoint_noise(
    endpoint: str, runs: list[np.ndarray], rules: Validation, *, detect: float, power: float
) -> EndpointNoise:
    """The endpoint's run-to-run spread, its noise floor at the playbook's runs per arm, and the runs per arm
    it needs to see a ``detect`` slowdown as regressed with ``power``."""
    quantile = QUANTILES[rules.metric]
    usable = [run for run in runs if run.size >= PER_RUN_MIN_REQUESTS]
    requests = int(np.median([run.size for run in runs])) if runs else 0
    if len(usable) < 2:
        return EndpointNoise(
            endpoint=endpoint,
            runs=len(runs),
            requests_per_run=requests,
            note=f"fewer than {PER_RUN_MIN_REQUESTS} requests per run: no per-run {rules.metric} to measure",
        )
    values = np.array([run_percentile(run, quantile) for run in usable])
    spread = float(np.std(np.log(values), ddof=1))
    z = float(norm.ppf(1 - (1 - rules.confidence) / 2))
    z_power = float(norm.ppf(power))
    floor = math.exp(z * spread * math.sqrt(2 / rules.runs_per_arm)) - 1
    gap = math.log1p(detect) - math.log1p(rules.regression_margin)
    needed = math.ceil(2 * spread**2 * (z + z_power) ** 2 / gap**2) if gap > 0 else None
    # The runs split in two, alternately, as an A/A validation: its interval should hold 1.
    halves = usable[0::2], usable[1::2]
    aa = ratio_interval(list(halves[0]), list(halves[1]), quantile=quantile, level=rules.confidence)
    return EndpointNoise(
        endpoint=endpoint,
        runs=len(runs),
        requests_per_run=requests,
        metric_ms=round(float(np.mean(values)), 3),
        run_spread=round(spread, 4),
        noise_floor=round(floor, 4),
        runs_needed=max(1, needed) if needed is not None else None,
        aa_low=round(aa.low, 4),
        aa_high=round(aa.high, 4),
    )


def recommended_runs_per_arm(noises: list[EndpointNoise]) -> int | None:
    """Enough runs per arm for every measurable endpoint (None: none measurable, or detection impossible)."""
    needed = [n.runs_needed for n in noises if n.run_spread is not None]
    if not needed or any(k is None for k in needed):
        return None
    return min(MAX_RUNS_PER_ARM, max(k for k in needed if k is not None))


def recommended_margin(noises: list[EndpointNoise], rules: Validation, runs_per_arm: int) -> float | None:
    """The smallest regression margin above every measurable endpoint's noise floor at ``runs_per_arm``."""
    z = float(norm.ppf(1 - (1 - rules.confidence) / 2))
    floors = [math.exp(z * n.run_spread * math.sqrt(2 / runs_per_arm)) - 1 for n in noises if n.run_spread is not None]
    return round(max(floors), 3) if floors else None
