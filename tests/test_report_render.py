"""The report's figures: drawn from plain data, gathered from a campaign's run files, and seen in Chromium."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from activities.reporting import ReportActivities
from ratchet.contracts import CampaignStatus, ReportRequest
from ratchet.k6.browser import find_chromium
from ratchet.report import render_html, render_markdown
from ratchet.report.chart_data import (
    LATENCY,
    RESOURCES,
    latency_groups,
    report_charts,
)
from ratchet.report.charts import (
    AFTER,
    BASELINE,
    BEFORE,
    OK,
    Arm,
    ChangeSpan,
    PhaseSpan,
    ResourceTrace,
    latency_chart,
    outcome_colour,
    resource_chart,
    timeline_chart,
)
from ratchet.resources.sampler import RESOURCE_SCHEMA, resource_totals
from ratchet.settings import Settings
from ratchet.store.samples import SAMPLE_SCHEMA, endpoint_stats, sampled_durations
from tests.report_layout import assert_fits, measure_layout
from tests.test_report import _run, _stats, completed_campaign, minimal_campaign

ENDPOINTS = [
    "GET /api/orders",
    "GET /api/orders/{id}",
    "GET /api/search",
    "GET /api/products",
    "GET /api/products/{id}",
    "POST /api/cart",
    "GET /api/cart",
    "POST /api/checkout",
    "GET /api/customers/{id}",
    "GET /api/reports/daily",
    "GET /",
    "GET /static/app.js",
]
START = datetime(2025, 3, 1, 12, 5, 10, tzinfo=UTC)


# ---------------------------------------------------------------- synthetic runs


def write_samples(path: Path, medians: dict[str, float], *, requests: int, seed: int) -> None:
    """A run's samples file as finalize_run_samples writes it: log-normal latencies around each median."""
    rng = np.random.default_rng(seed)
    names = np.repeat(list(medians), requests)
    durations = np.concatenate([median * rng.lognormal(0.0, 0.45, requests) for median in medians.values()])
    offsets = rng.uniform(0, 60, len(names))
    table = pa.table(
        {
            "endpoint": names,
            "ts": [START + timedelta(seconds=float(s)) for s in offsets],
            "duration_ms": durations,
            "status": np.full(len(names), 200, dtype=np.int32),
            "scenario": np.full(len(names), "steady"),
            "generator": np.zeros(len(names), dtype=np.int32),
        },
        schema=SAMPLE_SCHEMA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def write_resources(path: Path, *, seconds: int, cpu: float, seed: int) -> None:
    """A run's resource samples as the sampler writes them: two processes, one row each per second."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list[Any]] = {name: [] for name in RESOURCE_SCHEMA.names}
    for second in range(seconds):
        for pid, share in ((101, 0.8), (102, 0.2)):
            values = (
                START + timedelta(seconds=second),
                pid,
                f"worker-{pid}",
                float(cpu * share * rng.uniform(0.8, 1.2)),
                int((120 + second * 0.5) * 2**20 * share),
                8,
                20,
                0,
                0,
            )
            for column, value in zip(RESOURCE_SCHEMA.names, values, strict=True):
                rows[column].append(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows, schema=RESOURCE_SCHEMA), path)


def twelve_endpoint_campaign() -> CampaignStatus:
    """The completed campaign measured on 12 endpoints, validated in 3 interleaved rounds (3 runs per arm)."""
    status = completed_campaign()
    befores = {e: 8.0 * 1.6**i for i, e in enumerate(ENDPOINTS)}
    afters = {e: m * (0.2 if i % 3 == 0 else 1.0) for i, (e, m) in enumerate(befores.items())}
    before_stats = [_stats(e, m, m * 2.1, m * 2.8) for e, m in befores.items()]
    after_stats = [_stats(e, m, m * 2.1, m * 2.8) for e, m in afters.items()]
    verdicts = []
    for before, after in zip(before_stats, after_stats, strict=True):
        ratio = after["p95"] / before["p95"]
        verdicts.append(
            {
                "endpoint": before["endpoint"],
                "before": before,
                "after": after,
                "p95_ratio": ratio,
                "p50_ratio": ratio,
                "p_value_faster": 0.001 if ratio < 1 else 0.6,
                "p_value_slower": 0.9,
                "hodges_lehmann_ms": after["p50"] - before["p50"],
                "ratio": ratio,
                "ratio_low": ratio * 0.9,
                "ratio_high": ratio * 1.1,
                "confidence": 0.95,
                "runs_before": 3,
                "runs_after": 3,
                "verdict": "improved" if ratio < 1 else "not worse",
                "explanation": "synthetic",
            }
        )
    arms = ("before", "after", "after", "before", "before", "after")  # A B, B A, A B
    counters = {"before": 0, "after": 0}
    runs = []
    for arm in arms:
        counters[arm] += 1
        run = _run(f"validation-{arm}-{counters[arm]}", *(before_stats if arm == "before" else after_stats))
        runs.append({"arm": arm, "run": run})
    data = status.model_dump(mode="json")
    data.update(baseline=_run("baseline", *before_stats), validation_runs=runs, verdicts=verdicts)
    return CampaignStatus.model_validate(data)


def write_run_files(status: CampaignStatus, settings: Settings, *, requests: int = 1500) -> None:
    """Samples and resource samples for the baseline and every validation run of ``status``."""
    assert status.baseline is not None
    runs = [("before", status.baseline), *((r.arm, r.run) for r in status.validation_runs)]
    for seed, (arm, run) in enumerate(runs):
        medians = {s.endpoint: s.p50 for s in run.endpoints}
        write_samples(settings.samples_file(run.run_id), medians, requests=requests, seed=seed)
        cpu = 140.0 if arm == "before" else 60.0
        write_resources(settings.resources_file(run.run_id), seconds=60, cpu=cpu, seed=seed)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "ratchet")


# ---------------------------------------------------------------- figures from plain data


def test_latency_chart_draws_a_panel_per_endpoint_with_both_arms() -> None:
    rng = np.random.default_rng(1)
    before = {e: rng.lognormal(np.log(10 + i), 0.4, 3000) for i, e in enumerate(ENDPOINTS)}
    after = {e: v * 0.5 for e, v in before.items()}
    svg = latency_chart(
        ENDPOINTS, [Arm("before", BEFORE, before), Arm("after", AFTER, after)], captions={"GET /": "improved x0.50"}
    )
    assert svg is not None
    assert svg.startswith("<svg") and "<?xml" not in svg and "DOCTYPE" not in svg
    assert svg.count('id="latency-axes_') == len(ENDPOINTS)
    assert "Latency distributions" in svg  # its <title>
    assert "GET /api/orders/{id}" in svg and "improved x0.50" in svg
    assert BEFORE in svg and AFTER in svg
    assert len(svg) < 400_000  # quantile curves, not 72,000 points


def test_latency_chart_copes_with_zeros_a_missing_arm_and_one_value() -> None:
    svg = latency_chart(
        ["a", "b", "c"],
        [Arm("before", BEFORE, {"a": np.array([0.0, 0.0, 5.0]), "b": np.array([7.0])}), Arm("after", AFTER, {})],
    )
    assert svg is not None and svg.count('id="latency-axes_') == 2  # "c" has no request in either arm: no panel
    assert latency_chart(["a"], [Arm("before", BEFORE, {"a": np.array([])})]) is None


def test_chart_text_is_escaped() -> None:
    svg = latency_chart(["<script>x</script> $a$"], [Arm("before", BEFORE, {"<script>x</script> $a$": np.ones(3)})])
    assert svg is not None and "<script>" not in svg and "&lt;script&gt;" in svg and "$a$" in svg


def test_timeline_chart_phases_and_changes() -> None:
    phases = [
        PhaseSpan("Assessment", START, START + timedelta(minutes=2), "bottlenecks found"),
        PhaseSpan("Frontend optimization", None, None, "skipped"),
        PhaseSpan("Validation", START + timedelta(minutes=2), START + timedelta(minutes=2, seconds=4), "regressed"),
        PhaseSpan("Deployment & monitoring", START + timedelta(minutes=3), None, "running"),
    ]
    applied, undone = START + timedelta(minutes=2), START + timedelta(minutes=3)
    changes = [
        ChangeSpan("C1 idx_orders_email", applied, None, "kept"),
        ChangeSpan("C2 search_cache", applied, undone, "rolled-back"),
    ]
    svg = timeline_chart(phases, changes, now=START + timedelta(hours=1))
    assert svg is not None
    for text in (
        "Assessment",
        "skipped",
        "regressed, 4.0 s",
        "C1 idx_orders_email",
        "C2 search_cache",
        "change applied",
        "rolled back",
        "running",
    ):
        assert text in svg, text
    assert timeline_chart([PhaseSpan("Planning", None, None, "pending")], []) is None


@pytest.mark.parametrize(
    ("outcome", "colour"),
    [("baked", OK), ("approved", OK), ("regressed", "#c44e52"), ("guard breached", "#c44e52"), ("partial", "#ccb974")],
)
def test_outcome_colours(outcome: str, colour: str) -> None:
    assert outcome_colour(outcome)[0] == colour


def test_resource_chart_one_legend_entry_per_group() -> None:
    seconds = np.arange(60.0)
    traces = [ResourceTrace("baseline", BASELINE, seconds, seconds * 2, seconds + 100)] + [
        ResourceTrace("after (2 runs)", AFTER, seconds, seconds, seconds + 90) for _ in range(2)
    ]
    svg = resource_chart(traces)
    assert svg is not None
    assert svg.count("after (2 runs)") == 1 and "CPU, % of one core" in svg and "memory (RSS), MiB" in svg
    assert resource_chart([ResourceTrace("x", AFTER, np.empty(0), np.empty(0), np.empty(0))]) is None


# ---------------------------------------------------------------- reading only what a figure needs


def test_sampled_durations_caps_each_endpoint(tmp_path: Path) -> None:
    files = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    for seed, path in enumerate(files):
        write_samples(path, {"big": 50.0, "small": 5.0}, requests=6000, seed=seed)
    drawn = sampled_durations(files, per_endpoint=2000)
    assert set(drawn) == {"big", "small"}
    assert 1800 <= len(drawn["big"]) <= 2000 and 1800 <= len(drawn["small"]) <= 2000
    # A fair drawing: its median is the pooled median's, within a few percent.
    exact = {s.endpoint: s.p50 for s in endpoint_stats(files)}
    assert np.median(drawn["big"]) == pytest.approx(exact["big"], rel=0.06)
    np.testing.assert_array_equal(drawn["big"], sampled_durations(files, per_endpoint=2000)["big"])  # repeats
    everything = sampled_durations(files, per_endpoint=100_000)
    assert len(everything["small"]) == 12_000  # fewer requests than asked: all of them


def test_resource_totals_sum_processes_per_second(tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    write_resources(path, seconds=10, cpu=100.0, seed=0)
    seconds, cpu, memory = resource_totals(path)
    assert seconds.tolist() == [float(s) for s in range(10)]
    assert memory[0] == 120 * 2**20 and 80 < cpu[0] < 120


# ---------------------------------------------------------------- gathered from a campaign's files


def test_report_charts_from_a_campaigns_files(settings: Settings) -> None:
    status = twelve_endpoint_campaign()
    write_run_files(status, settings, requests=300)
    charts = report_charts(status, settings)
    assert charts.latency is not None and charts.latency.svg is not None and not charts.latency.notes
    assert charts.latency.svg.count('id="latency-axes_') == 12
    assert "before (3 runs)" in charts.latency.svg and "after (3 runs)" in charts.latency.svg
    assert "improved x0.20" in charts.latency.svg
    assert charts.timeline is not None and charts.timeline.svg is not None and "C2 search_cache" in charts.timeline.svg
    assert charts.resources is not None and charts.resources.svg is not None
    assert all(label in charts.resources.svg for label in ("baseline", "before (3 runs)", "after (3 runs)"))


def test_missing_files_leave_a_note_not_a_failure(settings: Settings) -> None:
    status = twelve_endpoint_campaign()
    write_run_files(status, settings, requests=100)
    settings.samples_file("run-validation-after-2").unlink()
    assert status.baseline is not None
    for run in [status.baseline, *(r.run for r in status.validation_runs)]:
        settings.resources_file(run.run_id).unlink()
    charts = report_charts(status, settings)
    assert charts.latency is not None and charts.latency.svg is not None
    assert charts.latency.notes == (
        f"Drawn without run run-validation-after-2: no samples file in {settings.samples_dir}.",
    )
    assert charts.resources is not None and charts.resources.svg is None
    (note,) = charts.resources.notes
    assert note.startswith(
        f"{RESOURCES} left out: no resource samples file for runs run-baseline, run-validation-before-1"
    )
    page = render_html(status, charts=charts)
    assert note in page and "\n" not in note


def test_a_figure_that_fails_is_a_note(settings: Settings) -> None:
    status = twelve_endpoint_campaign()
    write_run_files(status, settings, requests=50)
    settings.samples_file("run-validation-before-1").write_bytes(b"not parquet")
    charts = report_charts(status, settings)
    assert charts.latency is not None and charts.latency.svg is None
    assert charts.latency.notes[0].startswith(f"{LATENCY} left out: ")
    assert charts.timeline is not None and charts.timeline.svg is not None  # the others are still drawn


def test_groups_fall_back_to_baseline_and_validation() -> None:
    assert [(label, [r.run_id for r in runs]) for label, _, runs in latency_groups(completed_campaign())] == [
        ("baseline", ["run-baseline"]),
        ("validation", ["run-validation"]),
    ]
    assert [label for label, _, _ in latency_groups(minimal_campaign())] == ["baseline"]
    assert latency_groups(CampaignStatus(campaign_id="c", target="t", playbook="p")) == []


def test_no_data_no_figure(settings: Settings) -> None:
    charts = report_charts(CampaignStatus(campaign_id="c", target="t", playbook="p"), settings)
    assert charts.latency is None and charts.timeline is None and charts.resources is None


def test_markdown_points_to_the_html_charts() -> None:
    assert (
        "Charts (phase timeline, p95 and latency distributions per endpoint, resource use) are in the HTML report"
        in (render_markdown(completed_campaign()))
    )


# ---------------------------------------------------------------- what a reader sees in a browser

WINDOW = (1400, 7000)


def _near(pixels: np.ndarray, colour: str, tolerance: int = 8) -> np.ndarray:
    """Which pixels are within ``tolerance`` of ``colour`` in every channel."""
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return np.asarray((np.abs(pixels - rgb) <= tolerance).all(axis=-1))


def _rows(mask: np.ndarray) -> np.ndarray:
    """The image rows holding at least 3 of the pixels (a stray antialiased pixel is not a chart)."""
    return np.flatnonzero(mask.sum(axis=1) >= 3)


def test_report_renders_in_chromium(settings: Settings, tmp_path: Path) -> None:
    chromium = find_chromium(os.environ.get("RATCHET_CHROMIUM"))
    if chromium is None:
        pytest.fail(
            "Chromium is needed to render the report: `make chromium` (Debian package chromium) or RATCHET_CHROMIUM"
        )
    status = twelve_endpoint_campaign()
    write_run_files(status, settings)
    result = asyncio.run(ReportActivities(settings).write_report(ReportRequest(status=status)))
    page = Path(result.html_path).read_text(encoding="utf-8")
    for anchor, title in (
        ("timeline-chart", "Phase timeline"),
        ("latency-chart", "Latency distributions"),
        ("resources-chart", "Resource use"),
    ):
        figure = page[page.index(f'id="{anchor}"') :]
        assert re.match(rf'id="{anchor}">\s*<svg class="chart" role="img" aria-label="{title}', figure), anchor
    assert page.count("<svg") == 4  # the p95 bars and the three figures
    ids = re.findall(r'\sid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # three matplotlib figures in one page, and no id twice
    assert set(re.findall(r'(?:url\(#|href="#)([^)"]+)', page)) <= set(ids)  # every clip path or marker is there
    for external in ("<script", "<link", "@import", "src=", "<img"):
        assert external not in page
    assert "Drawn without" not in page and "left out" not in page

    screenshot = tmp_path / "report.png"
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={screenshot}",
        Path(result.html_path).as_uri(),
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert finished.returncode == 0 and screenshot.is_file(), finished.stderr[-2000:]

    image = Image.open(screenshot)
    assert image.size == WINDOW
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    colours = np.unique((pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1] << 8) | pixels[..., 2])
    assert len(colours) > 200  # drawn, not a blank or single-colour page
    # Each figure in its own colours, in the page's order: the phase bars (green), then the arms' ECDF curves
    # (blue and orange), then the resource lines (the baseline's purple, the arms below it).
    timeline, resources = _rows(_near(pixels, OK)), _rows(_near(pixels, BASELINE))
    assert len(timeline) > 20, "no phase bar drawn"
    assert len(resources) > 20, "no baseline resource line drawn (or the page is longer than the window)"
    before = _rows(_near(pixels, BEFORE))
    after = _rows(_near(pixels, AFTER))
    latency = before[(before > timeline.max()) & (before < resources.min())]
    assert len(latency) > 100, "no before-arm ECDF drawn between the timeline and the resources"
    assert len(after[(after > timeline.max()) & (after < resources.min())]) > 100, "no after-arm ECDF drawn"
    assert len(before[before > resources.min()]) > 20 and len(after[after > resources.min()]) > 20


REAL_EXPLANATION = (
    "improved: the CI lies below x1 (Mann-Whitney, Holm-adjusted p=6.7e-36 < 0.01) and the estimate x0.32 is past "
    "the bar x0.80; mean run p95 24.8 -> 7.9 ms (x0.32, 95% CI 0.19-0.59), median shift -4.15 ms, runs 3/3, "
    "requests 160/160; smallest change detectable 58%"
)


@pytest.mark.parametrize("width", [1024, 1400, 1920])
def test_the_report_fits_the_page_from_1024_to_1920_pixels(tmp_path: Path, width: int) -> None:
    chromium = find_chromium(os.environ.get("RATCHET_CHROMIUM"))
    if chromium is None:
        pytest.fail("Chromium is needed: `make chromium` (Debian package chromium) or RATCHET_CHROMIUM")
    settings = Settings(home=tmp_path / "ratchet")
    status = twelve_endpoint_campaign()
    status = status.model_copy(
        update={"verdicts": [v.model_copy(update={"explanation": REAL_EXPLANATION}) for v in status.verdicts]}
    )
    write_run_files(status, settings)
    result = asyncio.run(ReportActivities(settings).write_report(ReportRequest(status=status)))
    layout = measure_layout(chromium, Path(result.html_path), width, tmp_path)

    assert_fits(layout)
