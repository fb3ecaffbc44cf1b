"""The report's figures, drawn with matplotlib from plain data (arrays, timestamps) into inline SVG.

No file is read here: ``chart_data`` finds a campaign's samples and hands them over, so each figure can be
tested on made-up numbers. Figures are drawn on ``matplotlib.figure.Figure`` objects, never through pyplot:
no GUI backend, no global figure registry to leak, the SVG backend writes straight into a string.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import matplotlib
import numpy as np
from markupsafe import Markup, escape
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ratchet.report.durations import format_seconds

# One colour per group of runs, the same in every figure: a reader who learnt "blue is before" keeps it.
BEFORE = "#4c72b0"
AFTER = "#dd8452"
BASELINE = "#8172b3"

# Phase outcomes, by what they mean for the campaign.
OK = "#55a868"
WARN = "#ccb974"
BAD = "#c44e52"
RUNNING = "#64b5cd"
MUTED = "#8c8c8c"

_BAD_WORDS = ("fail", "regress", "reject", "breach", "abort", "cancel", "timed out", "timed-out")
_WARN_WORDS = ("partial", "inconclusive", "no change proved", "nothing approved", "rolled back")

# Where the ECDF is evaluated (quantile levels): a few hundred points draw 20,000 requests' steps just as a
# reader sees them, denser in the tail where the p95 and p99 live, and keep the SVG small.
_ECDF_LEVELS = np.unique(
    np.concatenate([np.linspace(0, 0.9, 91), np.linspace(0.9, 0.99, 46), np.linspace(0.99, 1.0, 41)])
)
_SMALLEST_MS = 1e-3  # a log axis cannot show 0 ms (an instant refusal): drawn at a microsecond
_PANEL_COLUMNS = 4
_LABEL_CHARS = 34

# Text stays text (selectable, searchable, scaled by the browser); "$" in an endpoint's name is not maths.
_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e3e6ea",
    "grid.linewidth": 0.6,
}
# rcParams are global to the process and activities render in threads: one figure at a time.
_DRAWING = threading.Lock()


@dataclass(frozen=True)
class Chart:
    """One figure of the report: its SVG, or None with the notes that say why it was left out."""

    title: str
    svg: Markup | None = None
    caption: str = ""
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportCharts:
    """The figures of one report; None where there was nothing to draw (the section says so already)."""

    latency: Chart | None = None
    timeline: Chart | None = None
    resources: Chart | None = None


@dataclass(frozen=True)
class Arm:
    """Requests of one group of runs (an arm), pooled: endpoint -> latencies in ms."""

    label: str
    colour: str
    durations: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class PhaseSpan:
    """A phase on the timeline: no start when it never ran (skipped), no end while it runs."""

    title: str
    start: datetime | None
    end: datetime | None = None
    outcome: str = ""


@dataclass(frozen=True)
class ChangeSpan:
    """A change on the timeline: applied at one instant, rolled back at another (or still in place)."""

    label: str
    applied: datetime | None
    rolled_back: datetime | None
    state: str


@dataclass(frozen=True)
class ResourceTrace:
    """The target's processes during one run, summed per sample (one a second).

    ``seconds`` count from the run's first sample; ``cpu_percent`` is in percent of one core (200: two cores
    busy). Traces with the same ``label`` share a colour and one legend entry.
    """

    label: str
    colour: str
    seconds: np.ndarray
    cpu_percent: np.ndarray
    memory_mib: np.ndarray


# ---------------------------------------------------------------- latency distributions


def latency_chart(
    endpoints: Sequence[str], arms: Sequence[Arm], *, captions: Mapping[str, str] | None = None
) -> Markup | None:
    """Small multiples, one per endpoint: each arm's ECDF (share of requests at or below x ms), log x-axis.

    Endpoints without a request in any arm are left out; None when that leaves none. ``captions`` (endpoint
    -> short text, e.g. the verdict) are written under each panel's title.
    """
    shown = [e for e in endpoints if any(len(arm.durations.get(e, ())) for arm in arms)]
    if not shown:
        return None
    columns = min(_PANEL_COLUMNS, len(shown))
    rows = math.ceil(len(shown) / columns)
    # A fixed grid in inches rather than the constrained layout, which measures every tick of every panel and
    # took two of the 2.5 seconds a 12-endpoint figure needed.
    left, right, top, bottom, width, height, across, down = 0.85, 0.2, 0.75, 0.6, 2.3, 1.45, 0.4, 0.75
    size = (left + right + columns * width + (columns - 1) * across, top + bottom + rows * height + (rows - 1) * down)
    with _style("latency"):
        figure = Figure(figsize=size)
        figure.subplots_adjust(
            left=left / size[0],
            right=1 - right / size[0],
            top=1 - top / size[1],
            bottom=bottom / size[1],
            wspace=across / width,
            hspace=down / height,
        )
        panels = figure.subplots(rows, columns, squeeze=False)
        for index, (axes, endpoint) in enumerate(zip(panels.flat, shown, strict=False)):
            _ecdf_panel(axes, endpoint, arms, (captions or {}).get(endpoint, ""))
            if index % columns:
                axes.set_yticklabels([])
        for axes in panels.flat[len(shown) :]:
            axes.set_visible(False)
        handles = [Line2D([], [], color=arm.colour, linewidth=2, label=arm.label) for arm in arms]
        figure.legend(handles=handles, loc="upper center", ncols=len(handles), frameon=False)
        figure.supxlabel("latency, ms (log scale)", fontsize=9, y=0.1 / size[1], va="bottom")
        figure.supylabel("share of requests at or below", fontsize=9, x=0.1 / size[0], ha="left")
        return _svg(figure, "Latency distributions per endpoint, before and after", "latency")


def _ecdf_panel(axes: Axes, endpoint: str, arms: Sequence[Arm], caption: str) -> None:
    low, high = math.inf, 0.0
    for arm in arms:
        values = np.asarray(arm.durations.get(endpoint, ()), dtype=float)
        values = values[np.isfinite(values)]
        if not len(values):
            continue
        curve = np.quantile(np.maximum(values, _SMALLEST_MS), _ECDF_LEVELS)
        axes.plot(curve, _ECDF_LEVELS, color=arm.colour, linewidth=1.6)
        low, high = min(low, float(curve[0])), max(high, float(curve[-1]))
    axes.axhline(0.95, color=MUTED, linewidth=0.8, linestyle=":")
    axes.set_ylim(0, 1.02)
    axes.set_yticks([0, 0.5, 0.95], ["0", "p50", "p95"])
    # The caption goes between the title and the plot: inside it, some corner always holds a curve.
    axes.set_title(_shorten(endpoint, 30), loc="left", pad=13 if caption else 4)
    if caption:
        axes.annotate(
            caption,
            (0, 1),
            xycoords="axes fraction",
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=7.5,
            color="#444",
            va="bottom",
        )
    _log_axis(axes, low, high)


def _log_axis(axes: Axes, low: float, high: float) -> None:
    """A log x-axis with plain-number ticks that always shows at least one labelled tick."""
    axes.set_xscale("log")
    # At least a factor 3 wide: 1-2-5 ticks are at most a factor 2.5 apart, so one always falls inside.
    if high / low < 3:
        centre = math.sqrt(low * high)
        low, high = centre / math.sqrt(3), centre * math.sqrt(3)
    low, high = low / 1.15, high * 1.15
    decades = math.log10(high / low)
    wide = decades >= 1.7
    axes.set_xlim(low, high)
    axes.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0)))
    # Unlabelled 2 and 5 between the decades of a wide axis; every tick costs drawing time, so no more.
    axes.xaxis.set_minor_locator(ticker.LogLocator(base=10, subs=(2.0, 5.0)) if wide else ticker.NullLocator())
    axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _tick_label(value)))
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.grid(True, which="major", axis="x")


def _tick_label(value: float) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


# ---------------------------------------------------------------- phase timeline


def timeline_chart(
    phases: Sequence[PhaseSpan], changes: Sequence[ChangeSpan], *, now: datetime | None = None
) -> Markup | None:
    """Gantt-like: a bar per phase from start to end coloured by outcome, and a row per change from applied
    (triangle) to rolled back (cross) or the end, labelled with its lever. A phase still running ends at
    ``now`` (default: the latest instant known), hatched. None when no phase has started.
    """
    instants = [_utc(t) for t in (*(p.start for p in phases), *(p.end for p in phases), now) if t is not None] + [
        _utc(t) for c in changes for t in (c.applied, c.rolled_back) if t is not None
    ]
    started = [p for p in phases if p.start is not None]
    if not started or not instants:
        return None
    first, last = mdates.date2num(min(instants)), mdates.date2num(max(instants))
    span = max(last - first, 1 / 86_400)  # days; at least a second, so an instant still has a width
    shown_changes = [c for c in changes if c.applied is not None]
    rows = len(phases) + len(shown_changes)
    with _style("timeline"):
        figure = Figure(figsize=(11, 1.2 + 0.3 * rows), layout="constrained")
        axes = figure.add_subplot()
        used: dict[str, str] = {}
        for row, phase in enumerate(phases):
            _phase_bar(axes, row, phase, first, last, span, used)
        for offset, change in enumerate(shown_changes):
            _change_row(axes, len(phases) + offset, change, last)
        if shown_changes:
            axes.axhline(len(phases) - 0.5, color=MUTED, linewidth=0.6)
        axes.set_yticks(
            range(rows),
            [_shorten(p.title, _LABEL_CHARS) for p in phases]
            + [_shorten(c.label, _LABEL_CHARS) for c in shown_changes],
        )
        axes.set_ylim(rows - 0.5, -0.5)
        axes.set_xlim(first - span * 0.01, last + span * 0.01)
        axes.grid(True, axis="x")
        axes.grid(False, axis="y")
        locator = mdates.AutoDateLocator(tz=UTC)
        axes.xaxis.set_major_locator(locator)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
        axes.set_xlabel("time (UTC)")
        handles: list[Patch | Line2D] = [Patch(color=colour, label=label) for label, colour in used.items()]
        if shown_changes:
            handles += [
                Line2D([], [], color=OK, marker="^", linestyle="none", markersize=8, label="change applied"),
                Line2D([], [], color=BAD, marker="X", linestyle="none", markersize=8, label="rolled back"),
            ]
        figure.legend(handles=handles, loc="outside upper center", ncols=max(1, len(handles)), frameon=False)
        return _svg(figure, "Phase timeline with changes applied and rolled back", "timeline")


def outcome_colour(outcome: str, *, running: bool = False) -> tuple[str, str]:
    """(colour, legend label) of a phase outcome: failed/regressed/rejected red, partial or inconclusive
    amber, running blue, anything else that ended green."""
    text = outcome.lower()
    if running:
        return RUNNING, "running"
    if any(word in text for word in _BAD_WORDS):
        return BAD, "failed, rejected or regressed"
    if any(word in text for word in _WARN_WORDS):
        return WARN, "partial, inconclusive or undone"
    return OK, "done"


def _phase_bar(
    axes: Axes, row: int, phase: PhaseSpan, first: float, last: float, span: float, used: dict[str, str]
) -> None:
    if phase.start is None:
        axes.text(first, row, f"  {phase.outcome or 'not started'}", va="center", color=MUTED, style="italic")
        return
    start = mdates.date2num(_utc(phase.start))
    running = phase.end is None
    end = last if phase.end is None else mdates.date2num(_utc(phase.end))
    colour, meaning = outcome_colour(phase.outcome, running=running)
    used.setdefault(meaning, colour)
    width = max(end - start, span * 0.004)  # a 4-second phase in an hour's campaign stays visible
    axes.barh(row, width, left=start, height=0.6, color=colour, hatch="///" if running else None, edgecolor="white")
    label = f"{phase.outcome}, {_duration_days(end - start)}" if phase.outcome else _duration_days(end - start)
    _bar_label(axes, row, start, start + width, label, first, span)


def _change_row(axes: Axes, row: int, change: ChangeSpan, last: float) -> None:
    assert change.applied is not None
    applied = mdates.date2num(_utc(change.applied))
    undone = mdates.date2num(_utc(change.rolled_back)) if change.rolled_back is not None else None
    end = undone if undone is not None else last
    axes.plot([applied, end], [row, row], color=MUTED, linewidth=2, solid_capstyle="butt")
    axes.plot([applied], [row], marker="^", color=OK, markersize=9, linestyle="none")
    if undone is not None:
        axes.plot([undone], [row], marker="X", color=BAD, markersize=9, linestyle="none")
    _label(axes, (end, row), change.state, 8, color="#444")


def _bar_label(axes: Axes, row: int, start: float, end: float, text: str, first: float, span: float) -> None:
    """After the bar when there is room, else before it, else inside it (a long bar)."""
    if end < first + span * 0.7:
        _label(axes, (end, row), text, 4)
    elif start > first + span * 0.3:
        _label(axes, (start, row), text, -4, ha="right")
    else:
        _label(axes, (start, row), text, 4, color="white", fontweight="bold")


def _label(axes: Axes, at: tuple[float, float], text: str, offset_pt: float, **style: Any) -> None:
    """Text beside a point, ``offset_pt`` points away whatever the axis's scale (a marker's width is in points)."""
    axes.annotate(text, at, xytext=(offset_pt, 0), textcoords="offset points", va="center", fontsize=8, **style)


def _duration_days(days: float) -> str:
    """A span on matplotlib's date axis (in days) as the report's tables write lengths of time."""
    return format_seconds(days * 86_400)


def _utc(value: datetime) -> datetime:
    """Naive timestamps are UTC (the workflow clock is), as the report's tables read them."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ---------------------------------------------------------------- resource use


def resource_chart(traces: Sequence[ResourceTrace]) -> Markup | None:
    """CPU (percent of one core) and memory (RSS, MiB) of the target over each run's seconds, one line per
    run, stacked; runs with the same label share a colour and one legend entry. None without samples."""
    drawn = [t for t in traces if len(t.seconds)]
    if not drawn:
        return None
    with _style("resources"):
        figure = Figure(figsize=(11, 4.8), layout="constrained")
        cpu, memory = figure.subplots(2, 1, sharex=True)
        labelled: set[str] = set()
        for trace in drawn:
            first = trace.label not in labelled
            labelled.add(trace.label)
            style = {"color": trace.colour, "linewidth": 1.8 if trace.colour == BASELINE else 1.1}
            cpu.plot(trace.seconds, trace.cpu_percent, label=trace.label if first else "_", **style)
            memory.plot(trace.seconds, trace.memory_mib, **style)
        cpu.set_ylabel("CPU, % of one core")
        memory.set_ylabel("memory (RSS), MiB")
        memory.set_xlabel("seconds since the run's first sample")
        for axes in (cpu, memory):
            axes.set_ylim(bottom=0)
            axes.set_xlim(left=0)
        figure.legend(loc="outside upper center", ncols=max(1, len(labelled)), frameon=False)
        return _svg(figure, "Resource use of the target during the runs: CPU and memory over time", "resources")


# ---------------------------------------------------------------- SVG output


@contextlib.contextmanager
def _style(name: str) -> Iterator[None]:
    # A fixed salt for the ids of clip paths and markers, so a report renders the same twice.
    rc: dict[Any, Any] = {**_RC, "svg.hashsalt": f"ratchet-{name}"}  # typed keys: matplotlib's stubs list them
    with _DRAWING, matplotlib.rc_context(rc):
        yield


def _svg(figure: Figure, title: str, name: str) -> Markup:
    """The figure as an ``<svg>`` element to inline in HTML, titled (tooltip and screen readers).

    Every id (and every reference to one) gets ``name`` as a prefix: matplotlib numbers its groups from 1 in
    each figure, and ids must be unique in the page that holds all of them.
    """
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML declaration or DOCTYPE inside an HTML page
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, count=1, flags=re.DOTALL)
    # Only in attributes (id, clip-path, a hatch's fill, <use>): text such as an endpoint's name stays as it is.
    text = re.sub(r'(\sid="|="url\(#|: url\(#|[\s:]href="#)', rf"\g<1>{name}-", text)
    label = escape(title)
    text = text.replace("<svg ", f'<svg class="chart" role="img" aria-label="{label}" ', 1)
    opening_end = text.index(">") + 1
    return Markup(text[:opening_end] + f"\n<title>{label}</title>" + text[opening_end:])


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
