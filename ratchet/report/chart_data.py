"""Gather what the report's figures need from a campaign's status and its run files, and draw them.

A figure never fails the report: a run's missing file leaves that run out, no file at all leaves the figure
out, and either is said in one line under the figure's heading. Only what a figure draws is read: a random
drawing of at most ``SAMPLES_PER_ENDPOINT`` requests per endpoint and arm, three columns of resource samples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ratchet.contracts import CampaignStatus, LoadTestResult
from ratchet.report.charts import (
    AFTER,
    BASELINE,
    BEFORE,
    Arm,
    ChangeSpan,
    Chart,
    PhaseSpan,
    ReportCharts,
    ResourceTrace,
    latency_chart,
    resource_chart,
    timeline_chart,
)
from ratchet.resources.sampler import resource_totals
from ratchet.settings import Settings
from ratchet.store.samples import sampled_durations

SAMPLES_PER_ENDPOINT = 20_000
"""Requests drawn per endpoint and arm for the latency figure: enough for a smooth tail up to about p99.9."""

LATENCY = "Latency distributions"
TIMELINE = "Phase timeline"
RESOURCES = "Resource use"

log = logging.getLogger(__name__)


def report_charts(status: CampaignStatus, settings: Settings) -> ReportCharts:
    """The three figures of a campaign's report; one that cannot be drawn is replaced by a note saying why."""
    return ReportCharts(
        latency=_safely(LATENCY, lambda: latency_figure(status, settings)),
        timeline=_safely(TIMELINE, lambda: timeline_figure(status)),
        resources=_safely(RESOURCES, lambda: resource_figure(status, settings)),
    )


def _safely(title: str, draw: Callable[[], Chart | None]) -> Chart | None:
    try:
        return draw()
    except Exception as error:  # a figure is an extra: the report's tables must still be written
        log.warning("%s could not be drawn", title, exc_info=True)
        return Chart(title, notes=(f"{title} left out: {type(error).__name__}: {error}".splitlines()[0],))


# ---------------------------------------------------------------- which runs


def latency_groups(status: CampaignStatus) -> list[tuple[str, str, list[LoadTestResult]]]:
    """(legend label, colour, runs) of each group the latency figure compares.

    The interleaved validation's arms when it ran; otherwise the baseline against the single validation run,
    or the baseline alone for a campaign that stopped before validating.
    """
    if status.validation_runs:
        return _validation_groups(status)
    return _baseline_group(status) + _validation_groups(status)


def resource_groups(status: CampaignStatus) -> list[tuple[str, str, list[LoadTestResult]]]:
    """(legend label, colour, runs) of the resource figure: the baseline, then the validation runs by arm."""
    return _baseline_group(status) + _validation_groups(status)


def _baseline_group(status: CampaignStatus) -> list[tuple[str, str, list[LoadTestResult]]]:
    return [("baseline", BASELINE, [status.baseline])] if status.baseline is not None else []


def _validation_groups(status: CampaignStatus) -> list[tuple[str, str, list[LoadTestResult]]]:
    """The interleaved runs by arm, or the single validation run of a campaign from before interleaving."""
    if not status.validation_runs:
        return [("validation", AFTER, [status.validation])] if status.validation is not None else []
    groups = []
    for arm, colour in (("before", BEFORE), ("after", AFTER)):
        runs = [r.run for r in status.validation_runs if r.arm == arm]
        if runs:
            groups.append((f"{arm} ({_runs(len(runs))})", colour, runs))
    return groups


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


# ---------------------------------------------------------------- figures


def latency_figure(status: CampaignStatus, settings: Settings) -> Chart | None:
    """Each group's requests per endpoint, drawn from the runs' samples files; None without any run."""
    groups = latency_groups(status)
    if not groups:
        return None
    arms, missing = [], []
    for label, colour, runs in groups:
        files, absent = _existing(runs, settings.samples_file)
        missing += absent
        if files:
            arms.append(Arm(label, colour, sampled_durations(files, per_endpoint=SAMPLES_PER_ENDPOINT)))
    if not arms:
        return Chart(LATENCY, notes=(f"{LATENCY} left out: {_missing(missing, 'samples', settings.samples_dir)}",))
    order = [v.endpoint for v in status.verdicts] or [
        stats.endpoint for _, _, runs in groups for run in runs for stats in run.endpoints
    ]
    seen = dict.fromkeys(order)
    endpoints = [*seen, *sorted({e for arm in arms for e in arm.durations} - seen.keys())]
    captions = {v.endpoint: f"{v.verdict.value} {v.ratio_text()}" for v in status.verdicts}
    svg = latency_chart(endpoints, arms, captions=captions)
    if svg is None:
        return Chart(LATENCY, notes=(f"{LATENCY} left out: the samples files hold no request.",))
    names = " against ".join(arm.label for arm in arms)
    caption = (
        f"Share of each endpoint's requests (y) at or below a latency (x, ms, log scale): {names}, each group's "
        f"runs pooled; up to {SAMPLES_PER_ENDPOINT:,} requests per endpoint and group, drawn at random. The dotted "
        "line is p95; a curve further left is faster."
    )
    return Chart(LATENCY, svg, caption, _drawn_without(missing, "samples", settings.samples_dir))


def timeline_figure(status: CampaignStatus) -> Chart | None:
    """The phases and the changes from the status alone (no file); None when no phase started."""
    phases = [PhaseSpan(p.title, p.started_at, p.ended_at, p.outcome) for p in status.phases]
    changes = [
        ChangeSpan(f"{c.change_id} {c.lever}", c.applied_at, c.rolled_back_at, c.state.value)
        for c in status.changes
        if c.applied_at is not None
    ]
    now = _latest(status)
    svg = timeline_chart(phases, changes, now=now)
    if svg is None:
        return None
    caption = (
        "One bar per phase from its start to its end, coloured by its outcome; below, one row per change from "
        "when it was applied (triangle) to when it was rolled back (cross) or the end of the campaign."
    )
    return Chart(TIMELINE, svg, caption)


def resource_figure(status: CampaignStatus, settings: Settings) -> Chart | None:
    """CPU and memory of the target's processes during the baseline and validation runs; None without runs."""
    groups = resource_groups(status)
    if not groups:
        return None
    traces, missing = [], []
    for label, colour, runs in groups:
        for run in runs:
            path = settings.resources_file(run.run_id)
            if not path.is_file():
                missing.append(run.run_id)
                continue
            seconds, cpu, memory = resource_totals(path)
            traces.append(ResourceTrace(label, colour, seconds, cpu, memory / 2**20))
    folder = settings.resources_dir
    svg = resource_chart(traces)
    if svg is None:
        why = _missing(missing, "resource samples", folder) if missing else "the resource samples files are empty."
        return Chart(RESOURCES, notes=(f"{RESOURCES} left out: {why}",))
    caption = (
        "The target's processes, summed, sampled once a second during each run; a line per run, from its first "
        "sample. CPU in percent of one core (200 means two cores busy)."
    )
    return Chart(RESOURCES, svg, caption, _drawn_without(missing, "resource samples", folder))


# ---------------------------------------------------------------- helpers


def _existing(runs: list[LoadTestResult], where: Callable[[str], Path]) -> tuple[list[Path], list[str]]:
    """The files of the runs that exist, and the run ids whose file does not."""
    files, missing = [], []
    for run in runs:
        path = where(run.run_id)
        if path.is_file():
            files.append(path)
        else:
            missing.append(run.run_id)
    return files, missing


def _missing(run_ids: list[str], what: str, folder: Path) -> str:
    """'no samples file for run a, b in FOLDER.': why a figure was left out."""
    return f"no {what} file for {_run_list(run_ids)} in {folder}."


def _drawn_without(run_ids: list[str], what: str, folder: Path) -> tuple[str, ...]:
    """The note under a figure drawn without some runs; none when every run was there."""
    return (f"Drawn without {_run_list(run_ids)}: no {what} file in {folder}.",) if run_ids else ()


def _run_list(run_ids: list[str]) -> str:
    shown = ", ".join(run_ids[:6]) + (f" and {len(run_ids) - 6} more" if len(run_ids) > 6 else "")
    return ("run " if len(run_ids) == 1 else "runs ") + shown


def _latest(status: CampaignStatus) -> datetime | None:
    """The latest instant the status knows of: a running phase's bar ends there."""
    instants = [e.at for e in status.events]
    instants += [t for p in status.phases for t in (p.started_at, p.ended_at) if t is not None]
    instants += [t for c in status.changes for t in (c.applied_at, c.rolled_back_at) if t is not None]
    # Naive instants are UTC, as the report reads them; aware and naive cannot be compared as they are.
    return max((t if t.tzinfo else t.replace(tzinfo=UTC) for t in instants), default=None)
