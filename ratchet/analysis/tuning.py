"""The next value to try for a tunable lever: Bayesian optimization of its endpoints' p95 over short trials.

The first trial holds the baseline (the value before the lever), the second the lever's default; after that a
Gaussian process (scikit-learn, Matern kernel with a noise term) fitted to the trials so far proposes the
candidate with the highest expected improvement. Pool sizes and worker counts act on a log scale (1 -> 2 is a
big step, 30 -> 31 none), so the model works on log values when the range allows it. A failed trial (errors
over the SLO, no answer) counts as worse than anything measured, so the search moves away from it.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from ratchet.analysis.decisions import best_trial
from ratchet.config.target import LeverParameter
from ratchet.contracts import Trial

_CANDIDATES = 200  # grid points of a continuous range
_XI = 0.01  # exploration margin of expected improvement, in units of the normalized objective


def _log_scale(parameter: LeverParameter) -> bool:
    return parameter.minimum > 0 and parameter.maximum / parameter.minimum >= 10


def _candidates(parameter: LeverParameter) -> np.ndarray:
    low, high = parameter.minimum, parameter.maximum
    if parameter.integer and high - low + 1 <= _CANDIDATES:
        return np.arange(math.ceil(low), math.floor(high) + 1, dtype=float)
    grid = np.geomspace(low, high, _CANDIDATES) if _log_scale(parameter) else np.linspace(low, high, _CANDIDATES)
    return np.unique(np.round(grid)) if parameter.integer else grid


def suggest(parameter: LeverParameter, trials: list[Trial]) -> tuple[float, str]:
    """(value, why) of the next trial."""
    assert parameter.baseline is not None
    tried = {t.value for t in trials}
    if not trials:
        return float(parameter.value(parameter.baseline)), "the baseline: the value in effect before the lever"
    if parameter.value(parameter.default) not in tried:
        return float(parameter.value(parameter.default)), "the lever's default"
    candidates = np.array([c for c in _candidates(parameter) if c not in tried])
    if candidates.size == 0:
        best = best_trial(trials)
        return (best.value if best else float(parameter.baseline)), "every value of the range was tried"
    scale = np.log if _log_scale(parameter) else (lambda x: np.asarray(x, dtype=float))
    measured = [t.p95_ms for t in trials if not t.failed and t.p95_ms is not None]
    worst = max(measured) if measured else 1.0
    # A failure is worse than anything measured: twice the worst p95 keeps the model smooth around it.
    # On log latency: a queue's p95 spans orders of magnitude (1,000 ms at one connection, 40 at sixteen).
    y = np.log([t.p95_ms if not t.failed and t.p95_ms is not None else 2 * worst for t in trials])
    x = scale(np.array([t.value for t in trials], dtype=float)).reshape(-1, 1)
    spread = float(np.ptp(scale(np.array([parameter.minimum, parameter.maximum])))) or 1.0
    kernel = ConstantKernel(1.0) * Matern(
        length_scale=spread / 4, length_scale_bounds=(spread / 50, spread * 4), nu=2.5
    )
    model = GaussianProcessRegressor(
        kernel=kernel + WhiteKernel(0.05, (1e-4, 1.0)), normalize_y=True, n_restarts_optimizer=3, random_state=0
    )
    with warnings.catch_warnings():
        # With a handful of trials the kernel's bounds are often reached; that is expected, not a problem.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    mean, std = model.predict(scale(candidates).reshape(-1, 1), return_std=True)
    best_y = float(y.min())
    std = np.maximum(std, 1e-9)
    improvement = best_y - mean - _XI * (float(np.std(y)) or 1.0)
    z = improvement / std
    expected = improvement * norm.cdf(z) + std * norm.pdf(z)
    pick = int(np.argmax(expected))
    value = float(parameter.value(float(candidates[pick])))
    low, high = np.exp(mean[pick] - std[pick]), np.exp(mean[pick] + std[pick])
    return value, (
        f"the most expected improvement on the best p95 so far ({np.exp(best_y):.1f} ms): "
        f"predicted {np.exp(mean[pick]):.1f} ms ({low:.0f}-{high:.0f})"
    )
