"""The HTML page of `ratchet workflows analyze --html`: bottlenecks, a typical execution's critical path as a
time line, the steps, variants, prediction and anomalies."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from ratchet.workflow_analytics.critical_path import critical_path
from ratchet.workflow_analytics.steps import Execution


def typical_execution(executions: list[Execution]) -> Execution:
    """The execution whose total time is the median's."""
    ordered = sorted(executions, key=lambda e: e.total_ms)
    return ordered[len(ordered) // 2]


def critical_path_rows(execution: Execution, span_ms: float | None = None) -> list[dict[str, Any]]:
    """The execution's critical path as time line rows: each step's start, wait and work, and their place in
    percent of ``span_ms`` (default: the execution's own time)."""
    span = span_ms or execution.total_ms or 1.0
    return [
        {
            "name": s.name,
            "kind": s.kind,
            "scheduled_ms": s.scheduled_ms,
            "wait": 0.0 if s.kind == "timer" else (s.wait_ms or 0.0),
            "work": (s.total_ms or 0.0) if s.kind == "timer" else (s.work_ms or 0.0),
            "left": 100 * s.scheduled_ms / span,
            "wait_width": 100 * ((s.total_ms or 0.0) if s.kind == "timer" else (s.wait_ms or 0.0)) / span,
            "work_width": 0.0 if s.kind == "timer" else 100 * (s.work_ms or 0.0) / span,
        }
        for s in critical_path(execution)
    ]


def render_workflows_html(workflow_type: str, executions: list[Execution], document: dict[str, Any]) -> str:
    typical = typical_execution(executions)
    path = critical_path_rows(typical)
    environment = Environment(
        loader=PackageLoader("ratchet.report", "templates"),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template("workflows.html.j2").render(
        workflow_type=workflow_type,
        summary=document,
        bottlenecks=document["bottlenecks"],
        comparisons=document["comparisons"],
        prediction=document["prediction"],
        anomalies=document["anomalies"],
        typical=typical,
        path=path,
    )
