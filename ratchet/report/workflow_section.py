"""The campaign report's section for a temporal-workflow target, read from the histories its runs kept: per
endpoint, a typical execution's critical path before and after the changes (on one time scale), each step's
work and wait p95 before and after, and how well the execution time is predicted from the inputs.

"Before" is the validation's arm without the changes (interleaved with the other, so drift hits both); without
a validation, the assessment's baseline. "After" is the arm with the changes in place.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ratchet.analysis.server_side import pooled_stats
from ratchet.analysis.significance import compare_endpoint
from ratchet.config.playbook import Validation, WorkflowAnalysis
from ratchet.contracts import CampaignStatus, EndpointVerdict, LoadTestResult
from ratchet.workflow_analytics.comparisons import call_cost, compare_variants, variant_of
from ratchet.workflow_analytics.prediction import analyze_time
from ratchet.workflow_analytics.report import critical_path_rows, typical_execution
from ratchet.workflow_analytics.steps import Execution, Step
from ratchet.workflow_analytics.summary import against_baseline, step_key, summarize
from ratchet.workflow_load.run import run_cost_fields, run_executions


@dataclass
class TypicalExecution:
    workflow_id: str
    total_ms: float
    path: list[dict[str, Any]]


@dataclass
class WorkflowSection:
    endpoint: str
    before_label: str
    executions_before: int
    executions_after: int
    p95_before_ms: float | None
    p95_after_ms: float | None
    steps: list[dict[str, Any]]  # per step: work and wait p95 after and before, their ratios, and a verdict
    typical_before: TypicalExecution
    typical_after: TypicalExecution | None
    prediction: dict[str, Any] | None
    cost: CostChange | None = None
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # variants per step, over both arms


@dataclass(frozen=True)
class Pricing:
    """How a call's cost is read: its result's ``field``, else the price of its variant (by ``variant``)."""

    field: str | None
    prices: dict[str, float]
    variant: str | None

    def call(self, step: Step, execution: Execution) -> float | None:
        kind = variant_of(step, self.variant, execution) if self.variant and self.prices else None
        return call_cost(step, self.field, self.prices.get(kind) if kind is not None else None)

    def describe(self) -> str:
        """In words, for the report (code spans in backquotes)."""
        parts = [f"each call's `{self.field}` field"] if self.field else []
        if self.variant and self.prices:
            parts.append(f"the playbook's price per call by `{self.variant}`")
        return ", else ".join(parts)


@dataclass
class CostChange:
    """An execution's mean cost (the sum over its calls) before and after, and their ratio with a 95% bootstrap
    interval over executions."""

    basis: str
    before: float
    after: float
    ratio: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        return "lower" if self.high < 1 else "higher" if self.low > 1 else "no change shown"


def execution_costs(executions: list[Execution], pricing: Pricing) -> np.ndarray:
    """Each execution's cost: the sum of its calls' costs (executions with no call of known cost left out)."""
    costs = []
    for execution in executions:
        found = [c for step in execution.steps if (c := pricing.call(step, execution)) is not None]
        if found:
            costs.append(sum(found))
    return np.array(costs, dtype=float)


def cost_change(before: list[Execution], after: list[Execution], pricing: Pricing) -> CostChange | None:
    then, now = execution_costs(before, pricing), execution_costs(after, pricing)
    if then.size < 2 or now.size < 2 or then.mean() <= 0:
        return None
    interval = stats.bootstrap(
        (now, then),
        lambda a, b: np.mean(a) / np.mean(b),
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        confidence_level=0.95,
        random_state=0,
    ).confidence_interval
    return CostChange(
        basis=pricing.describe(),
        before=float(then.mean()),
        after=float(now.mean()),
        ratio=float(now.mean() / then.mean()),
        low=float(interval.low),
        high=float(interval.high),
    )


def _per_run(samples_dir: Path, runs: list[LoadTestResult]) -> dict[str, list[list[Execution]]]:
    """Per endpoint, each run's executions (runs without any left out)."""
    found: dict[str, list[list[Execution]]] = defaultdict(list)
    for run in runs:
        for endpoint, executions in run_executions(samples_dir / run.run_id).items():
            if executions:
                found[endpoint].append(executions)
    return found


def _step_times(runs: list[list[Execution]]) -> dict[str, list[np.ndarray]]:
    """Per step, each run's times of it from scheduled to closed (queue wait, retries and work: what the
    execution waited for it)."""
    times: dict[str, list[list[float]]] = defaultdict(lambda: [[] for _ in runs])
    for index, executions in enumerate(runs):
        for execution in executions:
            for step in execution.steps:
                if step.kind != "timer" and step.total_ms is not None:
                    times[step_key(step)][index].append(step.total_ms)
    return {key: [np.array(run) for run in per_run if run] for key, per_run in times.items()}


def step_verdicts(
    before: list[list[Execution]], after: list[list[Execution]], rules: Validation
) -> dict[str, EndpointVerdict]:
    """Per step in both arms, a verdict on its time by the rules of the endpoints' verdicts (the arms' runs as
    runs, the playbook's percentile, interval and margins)."""
    then, now = _step_times(before), _step_times(after)
    verdicts = {}
    for key in sorted(then.keys() & now.keys()):
        if then[key] and now[key]:
            verdicts[key] = compare_endpoint(
                pooled_stats(key, then[key]),
                pooled_stats(key, now[key]),
                then[key],
                now[key],
                rules,
                max_error_rate=1.0,
            )
    return verdicts


def _typical(typical: Execution, span_ms: float) -> TypicalExecution:
    return TypicalExecution(typical.workflow_id, typical.total_ms, critical_path_rows(typical, span_ms))


def workflow_sections(status: CampaignStatus, samples_dir: Path) -> list[WorkflowSection]:
    """One section per workflow endpoint of the campaign's runs (none for an HTTP target's campaign)."""
    interleaved_before = [r.run for r in status.validation_runs if r.arm == "before"]
    after_runs = [r.run for r in status.validation_runs if r.arm == "after"]
    if not after_runs and status.validation is not None:
        after_runs = [status.validation]
    before_runs = interleaved_before or ([status.baseline] if status.baseline is not None else [])
    before, after = _per_run(samples_dir, before_runs), _per_run(samples_dir, after_runs)
    cost_fields = {
        endpoint: field for run in before_runs for endpoint, field in run_cost_fields(samples_dir / run.run_id).items()
    }
    rules = status.validation_rules or Validation()
    costs = status.workflow_costs or WorkflowAnalysis()
    sections = []
    for endpoint, runs in sorted(before.items()):
        executions = [e for run in runs for e in run]
        then = summarize(executions)
        changed = [e for run in after.get(endpoint, []) for e in run]
        now = summarize(changed) if changed else None
        verdicts = step_verdicts(runs, after[endpoint], rules) if changed else {}
        steps = against_baseline(now, then) if now else []
        for row in steps:
            verdict = verdicts.get(row["step"])
            row["verdict"] = verdict.verdict.value if verdict else None
            row["ratio"], row["ratio_low"], row["ratio_high"] = (
                (verdict.ratio, verdict.ratio_low, verdict.ratio_high) if verdict else (None, None, None)
            )
        typical_before = typical_execution(executions)
        typical_after = typical_execution(changed) if changed else None
        # One time scale for both time lines: the longer typical execution fills the width.
        span = max(typical_before.total_ms, typical_after.total_ms if typical_after else 0.0) or 1.0
        # The target's cost field first (it names its own results), else the playbook's, else its price table.
        pricing = Pricing(cost_fields.get(endpoint) or costs.cost_field, costs.prices, costs.variant)
        # Variants over both arms' executions: a change of provider puts one variant in each arm.
        total_weight = costs.weights.performance + costs.weights.cost
        comparisons = (
            compare_variants(
                executions + changed,
                costs.variant,
                cost_field=pricing.field,
                weights=(costs.weights.performance / total_weight, costs.weights.cost / total_weight),
                prices=costs.prices,
            )
            if costs.variant
            else []
        )
        sections.append(
            WorkflowSection(
                endpoint=endpoint,
                before_label="the validation's arm without the changes" if interleaved_before else "the baseline",
                executions_before=len(executions),
                executions_after=len(changed),
                p95_before_ms=(then["total_ms"] or {}).get("p95"),
                p95_after_ms=(now["total_ms"] or {}).get("p95") if now else None,
                steps=steps,
                typical_before=_typical(typical_before, span),
                typical_after=_typical(typical_after, span) if typical_after else None,
                prediction=analyze_time(executions).prediction,
                cost=cost_change(executions, changed, pricing) if pricing.describe() and changed else None,
                comparisons=comparisons,
            )
        )
    return sections
