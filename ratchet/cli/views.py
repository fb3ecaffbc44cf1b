"""Rich renderings of a campaign for the terminal (pure: status in, renderables out)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ratchet.config.playbook import Validation
from ratchet.contracts import CalibrationResult, CampaignStatus

_STATE_STYLE = {
    "running": "cyan",
    "waiting-approval": "bold yellow",
    "completed": "bold green",
    "rolled-back": "bold magenta",
    "rejected": "yellow",
    "aborted": "red",
    "failed": "bold red",
    "cancelled": "yellow",
}
_OUTCOME_STYLE = {"running": "cyan", "skipped": "dim", "pending": "dim", "interrupted": "red"}


def phases_table(status: CampaignStatus) -> Table:
    table = Table(title="Phases", expand=False)
    for column in ("phase", "outcome", "started", "ended", "note"):
        table.add_column(column)
    waiting = status.waiting.phase if status.waiting is not None else None
    for p in status.phases:
        # A phase at its gate is not "running": it waits for a person.
        outcome = "waiting for approval" if p.phase == waiting else p.outcome
        table.add_row(
            p.title,
            Text(outcome, style="bold yellow" if p.phase == waiting else _OUTCOME_STYLE.get(p.outcome, "green")),
            f"{p.started_at:%H:%M:%S}" if p.started_at else "",
            f"{p.ended_at:%H:%M:%S}" if p.ended_at else "",
            p.note,  # whole, wrapped by the table: a note cut mid-word hides what decided
        )
    return table


def endpoints_table(status: CampaignStatus) -> Table | None:
    """The baseline per endpoint and, once validated, each verdict with the numbers behind it."""
    if status.baseline is None:
        return None
    table = Table(title="Endpoints (ms)")
    columns = (
        "endpoint",
        "base p50",
        "base p95",
        "base p99",
        "before",
        "after",
        "ratio (CI)",
        "detects",
        "verdict",
        "p",
    )
    for column in columns:
        table.add_column(column, justify="right" if column not in ("endpoint", "verdict") else "left")
    verdicts = {v.endpoint: v for v in status.verdicts}
    for base in status.baseline.endpoints:
        verdict = verdicts.get(base.endpoint)
        row = [base.endpoint, f"{base.p50:.1f}", f"{base.p95:.1f}", f"{base.p99:.1f}"]
        if verdict is None:
            table.add_row(*row)
            continue
        metric = verdict.metric
        if verdict.measured_at == "server":
            row[0] += " (server)"  # the verdict's numbers are the service's own time, not the client's
        style = {"improved": "green", "regressed": "red", "inconclusive": "yellow"}.get(verdict.verdict.value, "dim")
        table.add_row(
            *row,
            f"{metric} {getattr(verdict.before, metric):.1f}",
            f"{getattr(verdict.after, metric):.1f}",
            verdict.ratio_text(),
            # The smallest change these runs could detect: above the bar, the sample was too small to decide.
            f">={verdict.detectable_change:.0%}" if verdict.detectable_change is not None else "",
            Text(verdict.verdict.value, style=style),
            f"{min(verdict.p_value_faster, verdict.p_value_slower):.1e}",
        )
    return table


def plan_table(status: CampaignStatus) -> Table | None:
    if not status.recommendations:
        return None
    table = Table(title="Plan")
    for column in ("id", "lever", "role", "findings", "endpoint", "gain ms", "score", "", "why"):
        table.add_column(column)
    for r in status.recommendations:
        why = r.rationale + (f". Never with {', '.join(r.conflicts_with)}" if r.conflicts_with else "")
        table.add_row(
            r.id,
            r.lever.name if r.lever else "manual",
            r.role.value,
            ", ".join(r.finding_ids or [r.finding_id]),
            ", ".join(r.endpoints or [r.endpoint]),
            f"{r.predicted_gain_ms:.1f}",
            f"{r.score:.3f}",
            "recommended" if r.recommended else "alternative",
            why + (f". Advice: {r.advice}" if r.advice else ""),
        )
    return table


def findings_table(status: CampaignStatus) -> Table | None:
    if not status.findings:
        return None
    table = Table(title="Findings")
    for column in ("id", "type", "endpoint", "severity", "summary"):
        table.add_column(column)
    for f in status.findings:
        table.add_row(f.id, f.type.value, f.endpoint, f.severity, f.summary)
    return table


def blind_spots_panel(status: CampaignStatus) -> Panel | None:
    """What Ratchet could not see, above the findings: a silent detector is not an all-clear."""
    if not status.blind_spots:
        return None
    lines = []
    for gap in status.blind_spots:
        where = f" ({', '.join(gap.endpoints)})" if gap.endpoints else ""
        lines.append(
            f"[bold]{gap.kind}[/]{where}: {gap.summary}; blind to {', '.join(gap.blind_to)}\n  [dim]{gap.advice}[/]"
        )
    return Panel("\n".join(lines), title="What Ratchet cannot see", style="magenta")


def changes_table(status: CampaignStatus) -> Table | None:
    if not status.changes:
        return None
    table = Table(title="Changes")
    for column in ("id", "lever", "kind", "role", "state", "reason"):
        table.add_column(column)
    for c in status.changes:
        # The reason whole, wrapped: it quotes the verdict that decided, numbers and all.
        table.add_row(c.change_id, c.lever, c.kind, c.role.value, c.state.value, c.reason)
    return table


def campaign_view(status: CampaignStatus, progress: list[dict[str, Any]] | None = None) -> RenderableType:
    """Everything about a campaign in one renderable (used once or inside a Live view)."""
    style = _STATE_STYLE.get(status.state.value, "")
    header = Text.assemble(
        (status.campaign_id, "bold"),
        "  ",
        (status.state.value, style),
        f"  phase: {status.phase.value if status.phase else '-'}",
        f"  target: {status.target}  playbook: {status.playbook}",
    )
    parts: list[RenderableType] = [header]
    if status.waiting:
        # First, right under the header: what a person must do stays on screen however tall the rest is (a live
        # view cuts what does not fit at the bottom).
        w = status.waiting
        parts.append(
            Panel(
                f"Waiting for approval of [bold]{w.phase.value}[/] by one of {', '.join(w.approvers)} "
                f"until {w.deadline:%Y-%m-%d %H:%M}Z{' (escalated)' if w.escalated else ''}\n"
                + (f"{w.question}\n" if w.question else "")
                + f"ratchet approve {status.campaign_id} --phase {w.phase.value} --as NAME",
                style="yellow",
            )
        )
    gaps = blind_spots_panel(status)
    if gaps is not None:
        parts.append(gaps)
    parts.append(phases_table(status))
    for item in progress or []:
        if item.get("progress"):
            parts.append(Text(f"  {item.get('label', item['activity'])}: {item['progress']}", style="cyan"))
    for table in (findings_table(status), plan_table(status), changes_table(status), endpoints_table(status)):
        if table is not None:
            parts.append(table)
    if status.outcome:
        parts.append(
            Text(
                f"Outcome: {status.outcome}" + (f" - {status.outcome_detail}" if status.outcome_detail else ""),
                style=style,
            )
        )
    return Group(*parts)


def calibration_view(result: CalibrationResult, rules: Validation) -> Group:
    """Per endpoint its run-to-run noise; then what the playbook should say."""
    table = Table(
        title=f"Noise of {result.target}: {result.runs} A/A runs of {result.run_seconds:g} s"
        + (f" at {result.rate:g} req/s" if result.rate else "")
        + f" ({rules.metric})"
    )
    for column in ("endpoint", "req/run", rules.metric, "run spread", "noise floor", "runs needed", "A/A interval"):
        table.add_column(column, justify="left" if column == "endpoint" else "right")
    for n in result.endpoints:
        if n.run_spread is None:
            table.add_row(n.endpoint, str(n.requests_per_run), Text(n.note, style="dim"))
            continue
        table.add_row(
            n.endpoint,
            str(n.requests_per_run),
            f"{n.metric_ms:.1f} ms",
            f"{n.run_spread:.1%}",
            f"+-{n.noise_floor:.1%} at {rules.runs_per_arm}",
            str(n.runs_needed or "-"),
            f"{n.aa_low:.2f}-{n.aa_high:.2f}",
        )
    lines = [
        f"To catch a {result.detect:.0%} slowdown in {result.power:.0%} of validations past a "
        f"{rules.regression_margin:.0%} margin:"
    ]
    if result.runs_per_arm is not None:
        lines.append(f"  validation.runs_per_arm: {result.runs_per_arm}   (the playbook says {rules.runs_per_arm})")
    if result.regression_margin is not None:
        lines.append(
            f"  validation.regression_margin: at least {result.regression_margin:.2f} at those runs "
            f"(the playbook says {rules.regression_margin:.2f}); below it unchanged endpoints read inconclusive"
        )
    lines += [f"  note: {note}" for note in result.notes]
    return Group(table, Text("\n".join(lines)))
