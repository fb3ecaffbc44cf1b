"""The campaign report's section for a temporal-workflow target, read from the histories its runs kept: per
endpoint, a typical execution's critical path before and after the changes (on one time scale), each step's
work and wait p95 before and after, and how well the execution time is predicted from the inputs.

"Before" is the validation's arm without the changes (interleaved with the other, so drift hits both); without
a validation, the assessment's baseline. "After" is the arm with the changes in place.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratchet.contracts import CampaignStatus, LoadTestResult
from ratchet.workflow_analytics.prediction import analyze_time
from ratchet.workflow_analytics.report import critical_path_rows, typical_execution
from ratchet.workflow_analytics.steps import Execution
from ratchet.workflow_analytics.summary import against_baseline, summarize
from ratchet.workflow_load.run import run_executions


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
    steps: list[dict[str, Any]]  # per step: work and wait p95 after and before, and their ratios
    typical_before: TypicalExecution
    typical_after: TypicalExecution | None
    prediction: dict[str, Any] | None


def _pooled(samples_dir: Path, runs: list[LoadTestResult]) -> dict[str, list[Execution]]:
    pooled: dict[str, list[Execution]] = defaultdict(list)
    for run in runs:
        for endpoint, executions in run_executions(samples_dir / run.run_id).items():
            pooled[endpoint].extend(executions)
    return pooled


def _typical(executions: list[Execution], span_ms: float) -> TypicalExecution:
    typical = typical_execution(executions)
    return TypicalExecution(typical.workflow_id, typical.total_ms, critical_path_rows(typical, span_ms))


def workflow_sections(status: CampaignStatus, samples_dir: Path) -> list[WorkflowSection]:
    """One section per workflow endpoint of the campaign's runs (none for an HTTP target's campaign)."""
    interleaved_before = [r.run for r in status.validation_runs if r.arm == "before"]
    after_runs = [r.run for r in status.validation_runs if r.arm == "after"]
    if not after_runs and status.validation is not None:
        after_runs = [status.validation]
    before_runs = interleaved_before or ([status.baseline] if status.baseline is not None else [])
    before, after = _pooled(samples_dir, before_runs), _pooled(samples_dir, after_runs)
    sections = []
    for endpoint, executions in sorted(before.items()):
        if not executions:
            continue
        then = summarize(executions)
        changed = after.get(endpoint) or []
        now = summarize(changed) if changed else None
        typical_before = typical_execution(executions)
        typical_after = typical_execution(changed) if changed else None
        # One time scale for both time lines: the longer typical execution fills the width.
        span = max(typical_before.total_ms, typical_after.total_ms if typical_after else 0.0) or 1.0
        sections.append(
            WorkflowSection(
                endpoint=endpoint,
                before_label="the validation's arm without the changes" if interleaved_before else "the baseline",
                executions_before=len(executions),
                executions_after=len(changed),
                p95_before_ms=(then["total_ms"] or {}).get("p95"),
                p95_after_ms=(now["total_ms"] or {}).get("p95") if now else None,
                steps=against_baseline(now, then) if now else [],
                typical_before=_typical(executions, span),
                typical_after=_typical(changed, span) if changed else None,
                prediction=analyze_time(executions).prediction,
            )
        )
    return sections
