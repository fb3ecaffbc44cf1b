"""How long an execution will take, from what is known when it starts, and which executions do not fit
(pure; scikit-learn).

The model is a random forest over the workflow input's size, its numeric top-level fields (a document's pages)
and the execution's step count; its error is
measured on executions it did not see (5-fold cross-validation), relative to the mean execution time. Each
step type gets a smaller one of its own time, from its input's size and the same fields. An
anomaly is an execution that an isolation forest isolates early over what its input cannot explain (its time
beyond a robust fit on input size and steps) and what it did (retries and their backoff, queue waits), and that
is far above the median on one of these (robust z above 3.5, by at least a tenth of the typical execution's
time): that one is the why. A slow execution with a large input is expected, not anomalous; so is what many
executions share (more than one in twenty standing out the same way is how the type behaves).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.linear_model import HuberRegressor
from sklearn.model_selection import KFold, cross_val_predict

from ratchet.workflow_analytics.steps import Execution

FEATURES = ("input_bytes", "steps")
MIN_EXECUTIONS = 8
# The model learns from the newest executions only: they are how the type behaves now, and a forest over tens
# of thousands of executions would take minutes for no better estimate of its error.
MODEL_MAX_EXECUTIONS = 2_000
_TREES = 100
_ROBUST_Z = 3.5
_MATERIAL_SHARE = 0.1
_MAX_ANOMALOUS_SHARE = 0.05
_MAX_INPUT_FIELDS = 8
# Each step's model: fewer trees over the newest calls; a workflow's steps are many, the analysis must stay quick.
_STEP_TREES = 30
_STEP_MAX_ROWS = 1_000


@dataclass
class TimeAnalysis:
    prediction: dict[str, Any] | None = None
    anomalies: list[dict[str, Any]] = field(default_factory=list)


def _numeric_fields(execution: Execution) -> dict[str, float]:
    """The workflow input's top-level numbers (a document's pages, a batch's items): known when it starts."""
    if not execution.input.readable:
        return {}
    try:
        value = json.loads(execution.input.text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {k: float(v) for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def input_fields(parsed: list[dict[str, float]]) -> list[str]:
    """The numeric input fields every execution has and that vary (``parsed``: each one's numeric fields):
    features of the model."""
    common = set.intersection(*(set(p) for p in parsed)) if parsed else set()
    return sorted(f for f in common if len({p[f] for p in parsed}) > 1)[:_MAX_INPUT_FIELDS]


def _model_features(execution: Execution, numbers: dict[str, float], fields: list[str]) -> list[float]:
    return [
        float(execution.input.size),
        float(sum(s.kind != "timer" for s in execution.steps)),
        *(numbers[f] for f in fields),
    ]


def _behaviour(execution: Execution) -> list[float]:
    """What an execution did that the model does not take: retried steps, the time they spent before their last
    attempt (failed attempts and backoff), and the first attempts' time in task queues."""
    work = [s for s in execution.steps if s.kind != "timer"]
    retried = [s for s in work if s.attempt > 1]
    return [
        float(len(retried)),
        float(sum(s.wait_ms or 0.0 for s in retried)),
        float(sum(s.wait_ms or 0.0 for s in work if s.attempt == 1)),
    ]


def analyze_time(executions: list[Execution]) -> TimeAnalysis:
    """The prediction's cross-validated error and the anomalous executions (nothing with too few executions)."""
    if len(executions) < MIN_EXECUTIONS:
        return TimeAnalysis()
    parsed = [_numeric_fields(e) for e in executions]
    fields = input_fields(parsed)
    features = [*FEATURES, *(f"input.{f}" for f in fields)]
    x = np.array([_model_features(e, numbers, fields) for e, numbers in zip(executions, parsed, strict=True)])
    y = np.array([e.total_ms for e in executions])
    newest = np.argsort([e.started_at.timestamp() for e in executions])[-MODEL_MAX_EXECUTIONS:]
    x_model, y_model = x[newest], y[newest]
    model = RandomForestRegressor(n_estimators=_TREES, random_state=0)
    predicted = cross_val_predict(model, x_model, y_model, cv=KFold(n_splits=5, shuffle=True, random_state=0))
    error = np.abs(predicted - y_model)
    constant = _constant_mae(x_model, y_model)
    model.fit(x_model, y_model)
    chosen = [executions[i] for i in newest]
    prediction = {
        "model": f"random forest (scikit-learn, {_TREES} trees)",
        "features": features,
        "feature_importance": {
            f: round(float(i), 4) for f, i in zip(features, model.feature_importances_, strict=True)
        },
        "executions": len(y_model),
        "cross_validated_mae_ms": round(float(error.mean()), 3),
        "mean_execution_ms": round(float(y_model.mean()), 3),
        "relative_error": round(float(error.mean() / y_model.mean()), 4) if y_model.mean() else None,
        "constant_mae_ms": round(constant, 3),
        "skill": _skill(float(error.mean()), constant),
        "steps": step_predictions(chosen, [parsed[i] for i in newest], fields),
    }
    return TimeAnalysis(prediction, _anomalies(executions, x, y))


def step_predictions(
    executions: list[Execution], parsed: list[dict[str, float]], fields: list[str]
) -> list[dict[str, Any]]:
    """Per step type, a smaller forest of its time (scheduled to closed) from its own input's size and the
    workflow input's numeric fields, with its cross-validated error relative to the step's mean time."""
    rows: dict[str, tuple[list[list[float]], list[float]]] = {}
    for execution, numbers in zip(executions, parsed, strict=True):
        for step in execution.steps:
            if step.kind == "timer" or step.total_ms is None:
                continue
            features, times = rows.setdefault(step.name, ([], []))
            features.append([float(step.input.size), *(numbers[f] for f in fields)])
            times.append(step.total_ms)
    found = []
    for name, (x_rows, y_rows) in sorted(rows.items()):
        x, y = np.array(x_rows[-_STEP_MAX_ROWS:]), np.array(y_rows[-_STEP_MAX_ROWS:])
        if len(y) < MIN_EXECUTIONS or y.mean() <= 0:
            continue
        model = RandomForestRegressor(n_estimators=_STEP_TREES, random_state=0)
        predicted = cross_val_predict(model, x, y, cv=KFold(n_splits=5, shuffle=True, random_state=0))
        error = float(np.abs(predicted - y).mean())
        constant = _constant_mae(x, y)
        found.append(
            {
                "step": name,
                "calls": len(y),
                "features": ["step_input_bytes", *(f"input.{f}" for f in fields)],
                "cross_validated_mae_ms": round(error, 3),
                "mean_ms": round(float(y.mean()), 3),
                "relative_error": round(error / float(y.mean()), 4),
                "constant_mae_ms": round(constant, 3),
                "skill": _skill(error, constant),
            }
        )
    return found


def _constant_mae(x: np.ndarray, y: np.ndarray) -> float:
    """The cross-validated error of predicting every time as its training folds' mean: what a model must beat
    (the same folds as the model's)."""
    guessed = cross_val_predict(DummyRegressor(), x, y, cv=KFold(n_splits=5, shuffle=True, random_state=0))
    return float(np.abs(guessed - y).mean())


def _skill(error: float, constant: float) -> float | None:
    """1 - the model's error / the constant's: 0 is no better than the mean, 1 is exact. The share of the
    variation the inputs explain, which a busy host's noise lowers for both alike (a relative error does not)."""
    return round(1 - error / constant, 4) if constant > 0 else None


def _unexplained_ms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each execution's time beyond what executions like it take: a Huber fit of log time on log input size
    and step count, which the few executions it should flag cannot drag towards themselves (a forest's
    held-out predictions can: one outlier in a fold shifts every prediction of that fold)."""
    features = np.column_stack([np.log1p(x[:, 0]), x[:, 1], np.sign(x[:, 2:]) * np.log1p(np.abs(x[:, 2:]))])
    log_y = np.log(np.maximum(y, 1e-3))
    expected = HuberRegressor().fit(features, log_y).predict(features)
    return y - np.exp(expected)


def _anomalies(executions: list[Execution], x_model: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    residuals = _unexplained_ms(x_model, y)
    names = ("unexplained_ms", "retried_steps", "retry_wait_ms", "queue_wait_ms")
    x = np.column_stack([residuals, np.array([_behaviour(e) for e in executions])])
    isolated = IsolationForest(n_estimators=200, random_state=0).fit(x).predict(x) == -1
    median = np.median(x, axis=0)
    mad = np.median(np.abs(x - median), axis=0) * 1.4826
    # A feature that never varies cannot set anything apart: any change of it is then far (scale 1% of it).
    scale = np.where(mad > 0, mad, np.maximum(np.abs(median) * 0.01, 1.0))
    z = (x - median) / scale
    # Far in robust terms is not enough when the others hardly vary: the difference must also matter, a tenth
    # of the typical execution's time (or one more retried step).
    typical_ms = float(np.median([e.total_ms for e in executions]))
    material = np.abs(x - median) >= np.array(
        [_MATERIAL_SHARE * typical_ms, 1.0, _MATERIAL_SHARE * typical_ms, _MATERIAL_SHARE * typical_ms]
    )
    # Only the slow side: an execution that waited less or retried less than the others is not a problem.
    z = np.where(material & (x > median), z, 0.0)
    flagged: dict[int, list[dict[str, Any]]] = {}
    for i, execution in enumerate(executions):
        worst = int(np.argmax(z[i]))
        if isolated[i] and z[i, worst] > _ROBUST_Z:
            flagged.setdefault(worst, []).append(
                {
                    "workflow_id": execution.workflow_id,
                    "run_id": execution.run_id,
                    "total_ms": round(execution.total_ms, 3),
                    "why": f"{names[worst]} {x[i, worst]:.0f} against a median of {median[worst]:.0f} "
                    f"(robust z {z[i, worst]:+.1f})",
                }
            )
    # An anomaly is rare: when many executions stand out the same way (a fifth retried, say), that is how the
    # type behaves, and the bottlenecks say why; naming each of them would bury the truly odd ones.
    most = max(2, int(_MAX_ANOMALOUS_SHARE * len(executions)))
    return [a for group in flagged.values() if len(group) <= most for a in group]
