"""How long an execution will take, from what is known when it starts, and which executions do not fit
(pure; scikit-learn).

The model is a random forest over the workflow input's size and the execution's step count; its error is
measured on executions it did not see (5-fold cross-validation), relative to the mean execution time. An
anomaly is an execution that an isolation forest isolates early over what its input cannot explain (its time
beyond a robust fit on input size and steps) and what it did (retries, queue waits), and that is far from the median on one
of these (robust z above 3.5, by at least a tenth of the typical execution's time): that one is the why. A slow execution with a large input is expected,
not anomalous.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestRegressor
from sklearn.linear_model import HuberRegressor
from sklearn.model_selection import KFold, cross_val_predict

from ratchet.workflow_analytics.steps import Execution

FEATURES = ("input_bytes", "steps")
MIN_EXECUTIONS = 8
_ROBUST_Z = 3.5
_MATERIAL_SHARE = 0.1


@dataclass
class TimeAnalysis:
    prediction: dict[str, Any] | None = None
    anomalies: list[dict[str, Any]] = field(default_factory=list)


def _model_features(execution: Execution) -> list[float]:
    return [float(execution.input.size), float(sum(s.kind != "timer" for s in execution.steps))]


def _behaviour(execution: Execution) -> list[float]:
    """What an execution did that the model does not take: retried steps and time in task queues."""
    work = [s for s in execution.steps if s.kind != "timer"]
    return [float(sum(s.attempt > 1 for s in work)), float(sum(s.wait_ms or 0.0 for s in work))]


def analyze_time(executions: list[Execution]) -> TimeAnalysis:
    """The prediction's cross-validated error and the anomalous executions (nothing with too few executions)."""
    if len(executions) < MIN_EXECUTIONS:
        return TimeAnalysis()
    x = np.array([_model_features(e) for e in executions])
    y = np.array([e.total_ms for e in executions])
    model = RandomForestRegressor(n_estimators=200, random_state=0)
    predicted = cross_val_predict(model, x, y, cv=KFold(n_splits=5, shuffle=True, random_state=0))
    error = np.abs(predicted - y)
    model.fit(x, y)
    prediction = {
        "model": "random forest (scikit-learn, 200 trees)",
        "features": list(FEATURES),
        "feature_importance": {
            f: round(float(i), 4) for f, i in zip(FEATURES, model.feature_importances_, strict=True)
        },
        "executions": len(executions),
        "cross_validated_mae_ms": round(float(error.mean()), 3),
        "mean_execution_ms": round(float(y.mean()), 3),
        "relative_error": round(float(error.mean() / y.mean()), 4) if y.mean() else None,
    }
    return TimeAnalysis(prediction, _anomalies(executions, x, y))


def _unexplained_ms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each execution's time beyond what executions like it take: a Huber fit of log time on log input size
    and step count, which the few executions it should flag cannot drag towards themselves (a forest's
    held-out predictions can: one outlier in a fold shifts every prediction of that fold)."""
    features = np.column_stack([np.log1p(x[:, 0]), x[:, 1]])
    log_y = np.log(np.maximum(y, 1e-3))
    expected = HuberRegressor().fit(features, log_y).predict(features)
    return y - np.exp(expected)


def _anomalies(executions: list[Execution], x_model: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    residuals = _unexplained_ms(x_model, y)
    names = ("unexplained_ms", "retried_steps", "queue_wait_ms")
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
    material = np.abs(x - median) >= np.array([_MATERIAL_SHARE * typical_ms, 1.0, _MATERIAL_SHARE * typical_ms])
    z = np.where(material, z, 0.0)
    found = []
    for i, execution in enumerate(executions):
        worst = int(np.argmax(np.abs(z[i])))
        if isolated[i] and abs(z[i, worst]) > _ROBUST_Z:
            found.append(
                {
                    "workflow_id": execution.workflow_id,
                    "run_id": execution.run_id,
                    "total_ms": round(execution.total_ms, 3),
                    "why": f"{names[worst]} {x[i, worst]:.0f} against a median of {median[worst]:.0f} "
                    f"(robust z {z[i, worst]:+.1f})",
                }
            )
    return found
