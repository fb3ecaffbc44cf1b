"""Render a CampaignStatus into a report for a reader who was not there: self-contained HTML and Markdown.

The templates only lay out; everything that needs a decision (number formats, how a piece of evidence is
shown, the chart's geometry) is computed here, so both formats say the same thing and it can be tested.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from ratchet.analysis.cost import campaign_return
from ratchet.analysis.knee import knee_summary
from ratchet.contracts import CampaignStatus, ChangeRecord, ChangeState, Finding, Verdict, ratio_digits
from ratchet.report.durations import format_seconds

if TYPE_CHECKING:  # the figures are drawn with matplotlib, slow to import: only its callers pay for it
    from ratchet.report.charts import ReportCharts
    from ratchet.report.workflow_section import WorkflowSection

EMPTY = "—"
"""Shown for a value that does not exist (a phase that never ended, a run that did not happen)."""

# Evidence strings under these keys are source text (SQL, plan output): shown verbatim in a code block,
# because reflowing or escaping them would change what the reader copies into a console.
_CODE_KEYS = frozenset({"statement", "sql", "query", "plan_line"})

# Changes grouped by fate, in the order a reader asks about them: what stayed, what was undone, what never ran.
_CHANGE_GROUPS: tuple[tuple[str, frozenset[ChangeState]], ...] = (
    ("Applied and kept", frozenset({ChangeState.KEPT, ChangeState.APPLIED})),
    ("Rolled back or failed", frozenset({ChangeState.ROLLED_BACK, ChangeState.FAILED})),
    ("Not applied", frozenset({ChangeState.PENDING})),
)

# Chart geometry, in SVG user units (pixels at 100% zoom).
_PLOT_WIDTH = 460
_BAR_HEIGHT = 14
_BAR_GAP = 3
_GROUP_GAP = 16
_CHART_TOP = 40
_AXIS_HEIGHT = 34
_VALUE_WIDTH = 96
_CHAR_WIDTH = 7.2
_MAX_LABEL_WIDTH = 260


# ---------------------------------------------------------------- public API


def render_markdown(
    status: CampaignStatus, *, history_url: str = "", workflows: list[WorkflowSection] | None = None
) -> str:
    """The campaign report as Markdown (GitHub-flavoured tables); ``history_url`` links the workflow history.

    Figures are not drawn in Markdown: a line points to the HTML report beside it.
    """
    return _environment().get_template("report.md.j2").render(_context(status, history_url, workflows=workflows))


def render_html(
    status: CampaignStatus,
    *,
    history_url: str = "",
    charts: ReportCharts | None = None,
    workflows: list[WorkflowSection] | None = None,
) -> str:
    """The campaign report as one self-contained HTML page (inline CSS and SVG, nothing fetched).

    ``charts`` are the figures drawn from the run files (``chart_data.report_charts``); without them the page
    has only the p95 bars, which need nothing but the status.
    """
    return _environment().get_template("report.html.j2").render(_context(status, history_url, charts, workflows))


def p95_bars(status: CampaignStatus) -> list[dict[str, Any]]:
    """Before/after p95 per endpoint, with bar lengths as fractions (0..1) of a shared log-scale axis.

    From the verdicts when validation ran; otherwise from the baseline alone (``after_ms`` is None), so a
    campaign that stopped early still shows where it started. A log scale keeps a 10x improvement's short
    bar visible next to the long one.
    """
    rows = _p95_pairs(status)
    low, high = _log_bounds(value for _, before, after, _ in rows for value in (before, after) if value is not None)
    return [
        {
            "endpoint": endpoint,
            "before_ms": before,
            "after_ms": after,
            "verdict": verdict,
            "before_fraction": _log_fraction(before, low, high),
            "after_fraction": None if after is None else _log_fraction(after, low, high),
        }
        for endpoint, before, after, verdict in rows
    ]


def p95_chart(status: CampaignStatus) -> dict[str, Any] | None:
    """Pixel geometry of the p95 bar chart (bars, value labels, log-scale ticks); None when nothing was measured."""
    bars = p95_bars(status)
    if not bars:
        return None
    low, high = _log_bounds(value for bar in bars for value in (bar["before_ms"], bar["after_ms"]) if value is not None)
    label_width = _label_width(bar["endpoint"] for bar in bars)
    paired = any(bar["after_ms"] is not None for bar in bars)
    group = (2 if paired else 1) * _BAR_HEIGHT + (_BAR_GAP if paired else 0) + _GROUP_GAP
    plot_bottom = _CHART_TOP + len(bars) * group - _GROUP_GAP
    return {
        "width": label_width + _PLOT_WIDTH + _VALUE_WIDTH,
        "height": plot_bottom + _AXIS_HEIGHT,
        "plot_left": label_width,
        "plot_right": label_width + _PLOT_WIDTH,
        "plot_top": _CHART_TOP - 6,
        "plot_bottom": plot_bottom + 4,
        "bar_height": _BAR_HEIGHT,
        "paired": paired,
        "rows": [_chart_row(bar, index, group, label_width) for index, bar in enumerate(bars)],
        "ticks": [
            {"x": round(label_width + _log_fraction(value, low, high) * _PLOT_WIDTH, 1), "label": _tick_label(value)}
            for value in _decades(low, high)
        ],
    }


# ---------------------------------------------------------------- environment and context


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """The report's Jinja environment, built once (Jinja then caches the compiled templates)."""
    environment = Environment(
        loader=PackageLoader("ratchet.report", "templates"),
        # select_autoescape matches the end of the template name, and "report.html.j2" ends in ".j2", not
        # ".html": without "html.j2" here the HTML report would not be escaped at all.
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters.update(
        ms=format_ms,
        signed_ms=format_signed_ms,
        pvalue=format_p_value,
        ratio=format_ratio,
        pct=format_percent,
        num=format_number,
        bytes=format_bytes,
        when=format_when,
        md=markdown_cell,
        code_spans=code_spans,
    )
    environment.globals.update(duration=format_duration, knee=knee_summary)
    return environment


def _context(
    status: CampaignStatus,
    history_url: str,
    charts: ReportCharts | None = None,
    workflows: list[WorkflowSection] | None = None,
) -> dict[str, Any]:
    """Everything both templates need: the status itself plus what was derived from it."""
    return {
        "status": status,
        "history_url": history_url,
        "charts": charts,
        "summary": _summary(status),
        "findings": [_finding_view(finding) for finding in status.findings],
        "change_groups": _change_groups(status.changes),
        "chart": p95_chart(status),
        "workflows": workflows or [],
        "cost": cost_view(status),
    }


def cost_view(status: CampaignStatus) -> dict[str, Any] | None:
    """The cost per 1,000 requests before and after, each change's share where leave-one-out measured it, and
    the campaign's return at the traffic; None when the playbook priced nothing."""
    cost, rules = status.cost, status.cost_rules
    if cost is None or rules is None:
        return None
    kept = [c for c in status.changes if c.state in (ChangeState.KEPT, ChangeState.APPLIED)]
    baseline = status.baseline
    baseline_rps = baseline.requests / baseline.duration_s if baseline and baseline.duration_s else 0.0
    returned = campaign_return(cost, rules, len(kept), baseline_rps)
    parts = sorted({*cost.before.parts, *cost.after.parts})
    effects = [(c.lever, c.cost_effect_per_1000) for c in kept if c.cost_effect_per_1000 is not None]
    if len(kept) == 1 and not effects:
        effects = [(kept[0].lever, cost.saved_per_1000)]  # alone in the after arm: the whole difference is its
    notes = [cost.note] if cost.note else []
    # Leave-one-out undoes a change after the validation's arms ran with it.
    undone = [c.lever for c in status.changes if c.state == ChangeState.ROLLED_BACK and "leave-one-out" in c.reason]
    if undone and kept:
        notes.append(f"the after arm ran with changes undone since ({', '.join(undone)})")
    unmeasured = [c.lever for c in kept if c.lever not in {lever for lever, _ in effects}]
    if effects and unmeasured:
        notes.append(
            f"no cost of its own is given for {', '.join(unmeasured)}: a change's own effect is measured only where "
            "leave-one-out ran its arms without it; together they saved the difference above"
        )
    return {
        "currency": cost.currency,
        "before": cost.before.per_1000,
        "after": cost.after.per_1000,
        "saved": cost.saved_per_1000,
        "parts": [(name, cost.before.parts.get(name), cost.after.parts.get(name)) for name in parts],
        "effects": effects,
        "traffic_rps": returned.traffic_rps,
        "traffic_measured": rules.traffic_rps is None,
        "saved_per_month": returned.saved_per_month,
        "engineering": returned.engineering,
        "kept": len(kept),
        "payback_months": returned.payback_months,
        "return_12_months": returned.return_12_months,
        "notes": notes,
    }


def _summary(status: CampaignStatus) -> list[str]:
    """A few counted sentences at the top, so the outcome is clear before any table."""
    recommended = sum(r.recommended for r in status.recommendations)
    plan = _plural(len(status.recommendations), "recommendation")
    if status.recommendations:
        plan += f" ({recommended} recommended)"
    lines = [f"{_plural(len(status.findings), 'finding')}, {plan}.".capitalize()]
    if status.verdicts:
        counts = {verdict: sum(v.verdict == verdict for v in status.verdicts) for verdict in Verdict}
        lines.append(
            f"{_plural(len(status.verdicts), 'endpoint')} compared before/after: "
            + ", ".join(f"{counts[v]} {v.value}" for v in Verdict)
            + "."
        )
    if status.changes:
        groups = ", ".join(f"{len(g['changes'])} {g['title'].lower()}" for g in _change_groups(status.changes))
        lines.append(f"{_plural(len(status.changes), 'change')}: {groups}.")
    if status.guard is not None:
        lines.append("Deployment guard: " + ("breached." if status.guard.breached else "held."))
    return lines


def _plural(count: int, noun: str) -> str:
    """'no findings', '1 finding', '2 findings'."""
    return f"{count or 'no'} {noun}" + ("" if count == 1 else "s")


def _change_groups(changes: list[ChangeRecord]) -> list[dict[str, Any]]:
    """Changes by fate (kept, rolled back or failed, not applied); empty groups are left out."""
    groups = [
        {"title": title, "changes": [c for c in changes if c.state in states]} for title, states in _CHANGE_GROUPS
    ]
    return [group for group in groups if group["changes"]]


# ---------------------------------------------------------------- findings and evidence


def _finding_view(finding: Finding) -> dict[str, Any]:
    """A finding with its evidence split into key/value fields and verbatim code blocks."""
    fields, blocks = evidence_items(finding.evidence)
    return {"finding": finding, "fields": fields, "blocks": blocks}


def evidence_items(evidence: dict[str, Any]) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    """Split evidence into ``fields`` (label, value as text) and ``blocks`` (label, lines, Markdown fence).

    Lists of strings (a query plan) and source text (a statement) become code blocks; everything else is a
    key/value line. Evidence is free-form, so any value type is accepted and shown rather than rejected.
    """
    fields: list[dict[str, str]] = []
    blocks: list[dict[str, Any]] = []
    for key, value in evidence.items():
        lines = _code_lines(key, value)
        label = key.replace("_", " ")
        if lines is None:
            fields.append({"key": key, "label": label, "value": _evidence_text(value)})
        else:
            blocks.append({"key": key, "label": label, "lines": lines, "fence": _fence(lines)})
    return fields, blocks


def _code_lines(key: str, value: Any) -> list[str] | None:
    """The lines of a code block for this evidence value, or None when it reads better as key/value."""
    if isinstance(value, list | tuple) and value and all(isinstance(item, str) for item in value):
        return [line for item in value for line in (item.splitlines() or [""])]
    if isinstance(value, str) and (key in _CODE_KEYS or "\n" in value):
        return value.splitlines() or [""]
    return None


def _evidence_text(value: Any) -> str:
    """One evidence value as readable text (numbers formatted, containers flattened)."""
    if value is None:
        return EMPTY
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return format_number(value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_evidence_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple | set):
        return ", ".join(_evidence_text(item) for item in value) or "none"
    return str(value)


def _fence(lines: list[str]) -> str:
    """A Markdown code fence longer than any run of backticks inside the block, so it cannot close early."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


# ---------------------------------------------------------------- chart helpers


def _p95_pairs(status: CampaignStatus) -> list[tuple[str, float, float | None, str | None]]:
    """(endpoint, before p95, after p95, verdict) from the verdicts, else baseline-only rows."""
    if status.verdicts:
        return [(v.endpoint, v.before.p95, v.after.p95, v.verdict.value) for v in status.verdicts]
    if status.baseline is not None:
        return [(s.endpoint, s.p95, None, None) for s in status.baseline.endpoints]
    return []


def _log_bounds(values: Iterable[float]) -> tuple[float, float]:
    """Powers of ten around the values; the floor sits below half the smallest so its bar is never empty."""
    positive = [value for value in values if value > 0]
    if not positive:
        return 1.0, 10.0
    low = 10.0 ** math.floor(math.log10(min(positive) / 2) + 1e-9)
    high = 10.0 ** math.ceil(math.log10(max(positive)) - 1e-9)
    return low, max(high, low * 10)


def _log_fraction(value: float, low: float, high: float) -> float:
    """Where a value sits between low and high on a log axis, clamped to 0..1 (0 for zero latency)."""
    if value <= 0:
        return 0.0
    fraction = (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
    return min(1.0, max(0.0, fraction))


def _decades(low: float, high: float) -> list[float]:
    """The powers of ten from low to high, for grid lines."""
    first, last = round(math.log10(low)), round(math.log10(high))
    return [10.0**exponent for exponent in range(first, last + 1)]


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _label_width(names: Iterable[str]) -> int:
    """Room for the longest endpoint name (estimated from a monospace-ish character width), within limits."""
    longest = max((len(name) for name in names), default=0)
    return int(min(_MAX_LABEL_WIDTH, max(80, longest * _CHAR_WIDTH + 14)))


def _chart_row(bar: dict[str, Any], index: int, group: int, label_width: int) -> dict[str, Any]:
    """Pixel positions of one endpoint's bars and labels; bars get at least 2 px so zero stays visible."""
    top = _CHART_TOP + index * group
    before_width = max(2.0, round(bar["before_fraction"] * _PLOT_WIDTH, 1))
    row: dict[str, Any] = {
        "endpoint": bar["endpoint"],
        "label": _truncate(bar["endpoint"], int((label_width - 14) / _CHAR_WIDTH)),
        "label_y": top + (_BAR_HEIGHT + (_BAR_GAP + _BAR_HEIGHT if bar["after_ms"] is not None else 0)) / 2 + 4,
        "verdict": bar["verdict"],
        "before": {
            "y": top,
            "width": before_width,
            "text_x": label_width + before_width + 6,
            "text": f"{format_ms(bar['before_ms'])} ms",
        },
        "after": None,
    }
    if bar["after_ms"] is not None:
        after_width = max(2.0, round(bar["after_fraction"] * _PLOT_WIDTH, 1))
        row["after"] = {
            "y": top + _BAR_HEIGHT + _BAR_GAP,
            "width": after_width,
            "text_x": label_width + after_width + 6,
            "text": f"{format_ms(bar['after_ms'])} ms",
        }
    return row


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


# ---------------------------------------------------------------- formats (Jinja filters)


def code_spans(text: str) -> Markup:
    """Text with `backquoted` parts as HTML code spans, the rest escaped."""
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if odd else Markup.escape(part)
        for odd, part in ((n % 2 == 1, part) for n, part in enumerate(text.split("`")))
    )


def format_ms(value: float | None) -> str:
    """Milliseconds with about four significant digits: 1,234 / 412.3 / 3.46 / 0.0412."""
    if value is None:
        return EMPTY
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1 or size == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_signed_ms(value: float | None) -> str:
    """A shift in milliseconds with its sign, so a negative (faster) shift cannot be misread."""
    if value is None:
        return EMPTY
    return ("+" if value > 0 else "") + format_ms(value)


def format_p_value(value: float | None) -> str:
    """Two significant digits (3.1e-45, 0.002, 0.5): more would pretend a precision the test does not have."""
    return EMPTY if value is None else f"{value:.2g}"


def format_ratio(value: float | None) -> str:
    """An after/before ratio: two decimals, or two significant digits below 0.1 (0.012)."""
    return EMPTY if value is None else ratio_digits(value)


def format_percent(value: float | None) -> str:
    return EMPTY if value is None else f"{value:.2%}"


def format_number(value: float | None) -> str:
    """A number for a table: integers with thousands separators, floats with about four significant digits."""
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:,.4g}"


def format_bytes(value: int | None) -> str:
    """A size as people read it: 1.3 MiB, 48 KiB, 512 B."""
    if value is None:
        return EMPTY
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_when(value: datetime | None) -> str:
    """A timestamp in UTC to the second; naive timestamps are taken as UTC (the workflow clock is UTC)."""
    if value is None:
        return EMPTY
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def format_duration(start: datetime | None, end: datetime | None) -> str:
    """How long a phase took: 4.2 s, 3m 05s, 1h 02m; a dash while it has not both started and ended."""
    if start is None or end is None:
        return EMPTY
    if (start.tzinfo is None) != (end.tzinfo is None):
        # Mixed naive/aware timestamps cannot be subtracted; treat naive as UTC like format_when does.
        start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    seconds = (end - start).total_seconds()
    return EMPTY if seconds < 0 else format_seconds(seconds)


def markdown_cell(value: object) -> str:
    """Free text made safe for a Markdown table cell or list item.

    Whitespace runs (newlines included) collapse, since a newline would end the table row; ``|`` would split
    the cell and ``<`` could open raw HTML in a Markdown viewer, so both are backslash-escaped (after
    backslashes themselves, so the escapes stay unambiguous).
    """
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "\\<")
