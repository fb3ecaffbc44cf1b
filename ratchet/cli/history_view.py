"""Rich renderings of a target's campaign history for the terminal (pure: history in, renderables out)."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ratchet.analysis.changepoints import ChangePoint
from ratchet.target_history import EndpointHistory, TargetHistory

_VERDICT_STYLE = {"improved": "green", "regressed": "red", "inconclusive": "yellow"}
_COLUMNS = ("date (UTC)", "campaign", "requests", "p50", "p95", "p99", "after p95", "ratio", "verdict", "change")
_TEXT_COLUMNS = {"date (UTC)", "campaign", "verdict", "change"}


def _shift(change: ChangePoint) -> str:
    return "" if change.relative_shift is None else f" ({change.relative_shift:+.0%})"


def _change_cell(change: ChangePoint) -> Text:
    return Text(f"{change.direction}{_shift(change)}", style="bold red" if change.direction == "rose" else "bold green")


def campaigns_table(target: str, history: EndpointHistory) -> Table:
    """One row per campaign, oldest first: its baseline, and the after p95 and verdict once it validated."""
    # Text, not markup: a target or endpoint name may hold brackets.
    table = Table(title=Text(f"{target} / {history.endpoint}: baselines and results (ms)"))
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column in _TEXT_COLUMNS else "right")
    changes = {c.index: c for c in history.change_points}
    for index, entry in enumerate(history.campaigns):
        change = changes.get(index)
        verdict = entry.verdict or ""
        table.add_row(
            f"{entry.measured_at:%Y-%m-%d %H:%M}",
            entry.campaign_id,
            str(entry.requests),
            f"{entry.p50:.1f}",
            f"{entry.p95:.1f}",
            f"{entry.p99:.1f}",
            "" if entry.after_p95 is None else f"{entry.after_p95:.1f}",
            "" if entry.p95_ratio is None else f"{entry.p95_ratio:.2f}",
            Text(verdict, style=_VERDICT_STYLE.get(verdict, "dim")),
            _change_cell(change) if change else "",
        )
    return table


def change_point_lines(history: EndpointHistory) -> list[Text]:
    """A line per change point of the baseline p95: where, from what level to what, how sure."""
    if not history.change_points:
        return [Text("no change point in the baseline p95", style="dim")]
    lines = []
    for c in history.change_points:
        when = f" ({c.at:%Y-%m-%d})" if c.at else ""
        lines.append(
            Text(
                f"change point at campaign {c.label}{when}: baseline p95 {c.mean_before:.1f} -> {c.mean_after:.1f} ms"
                f"{_shift(c)}, p={c.p_value:.2g}"
            )
        )
    return lines


def endpoint_view(target: str, history: EndpointHistory) -> RenderableType:
    """The campaigns table, the change points and the drift sentence of one endpoint."""
    drift = history.drift
    if not drift.drifting:
        flag = Text(drift.sentence, style="green")
    else:
        # A baseline that got slower by itself is trouble; one that got faster is worth knowing why.
        rose = drift.change_point is not None and drift.change_point.direction == "rose"
        flag = Text.assemble(("drift: ", "bold red" if rose else "bold yellow"), drift.sentence)
    return Group(campaigns_table(target, history), *change_point_lines(history), flag, Text(""))


def history_view(histories: list[TargetHistory]) -> RenderableType:
    """Every endpoint of every target, one after the other."""
    return Group(*(endpoint_view(t.target, e) for t in histories for e in t.endpoints))


def history_json(histories: list[TargetHistory]) -> dict[str, Any]:
    """The machine-readable history: {"targets": [{"target", "endpoints": [...]}]}."""
    return {"targets": [t.model_dump(mode="json") for t in histories]}
