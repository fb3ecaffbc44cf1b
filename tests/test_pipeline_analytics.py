"""Workflow analytics on the example document pipeline (examples/pipeline): its own worker on the real
Temporal server, its two AI providers as real HTTP services, executions started at a constant arrival rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from temporalio.client import Client

from examples.pipeline.corpus import request
from ratchet.settings import Settings
from ratchet.temporal.client import connect
from ratchet.workflow_load.driver import ExecutionSample, drive
from tests.campaign_helpers import ratchet_cli
from tests.conftest import Pipeline

# Execution times are what these tests read: a campaign test on the same core moves them (see below); `make test`
# runs each test on a core of its own (RATCHET_PIN_CPUS).
pytestmark = pytest.mark.asyncio(loop_scope="session")

RATE_PER_S = 1.5
PER_PHASE = 45  # 30 s of arrivals


async def run_phase(client: Client, pipeline: Pipeline, name: str, first: int, **changes: Any) -> list[ExecutionSample]:
    shown = httpx.post(f"{pipeline.admin_url}/admin/settings", json=changes, timeout=60).raise_for_status().json()
    assert shown["worker_activity_slots"] == shown["activity_slots"]  # in effect when the answer came
    samples = await drive(
        client,
        workflow="DocumentPipeline",
        task_queue=pipeline.task_queue,
        inputs=[request(n) for n in range(first, first + PER_PHASE)],
        rate_per_s=RATE_PER_S,
        count=PER_PHASE,
        id_prefix=f"{pipeline.task_queue}-{name}",
    )
    assert all(s.status == "completed" for s in samples), [s.error for s in samples if s.error][:3]
    return samples


async def analyze(settings: Settings, last: int, *extra: str) -> dict[str, Any]:
    shown = await ratchet_cli(
        settings, "workflows", "analyze", "--type", "DocumentPipeline", "--last", str(last), "--json",
        "--variant", "provider", "--cost-field", "cost", *extra,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


async def test_every_planted_bottleneck_of_the_pipeline_is_found_and_the_levers_remove_them(
    pipeline: Pipeline, settings: Settings, tmp_path: Path
) -> None:
    client = await connect(settings)
    # As shipped (one activity slot, no cache, steps in sequence), first through provider A, then B.
    shipped = await run_phase(client, pipeline, "shipped-A", 0, provider="A")
    await run_phase(client, pipeline, "shipped-B", PER_PHASE, provider="B")
    report = await analyze(settings, 2 * PER_PHASE, "--html", str(tmp_path / "pipeline.html"))
    found = {(b["type"], b["step"]): b for b in report["bottlenecks"]}
    described = "\n".join(b["summary"] for b in report["bottlenecks"])
    planted = {
        ("api_limit", "summarize"),
        ("cache_miss", "extract_part"),
        ("inefficient_algorithm", "remove_near_duplicates"),
        ("sequential_dependency", "summarize -> classify"),
        ("resource_exhaustion", f"task-queue:{pipeline.task_queue}"),
    }
    assert planted <= set(found), described
    # Fetching and storing are clean: nothing is raised on them, alone or in a pair.
    assert not [key for key in found if "fetch_document" in key[1] or "store_result" in key[1]], described
    assert found[("resource_exhaustion", f"task-queue:{pipeline.task_queue}")]["evidence"]["steps"]
    # One activity slot, and the queue saturated: its capacity is measured, one step at a time.
    [capacity] = [q for q in report["capacity"] if q["task_queue"] == pipeline.task_queue]
    assert capacity["peak_running"] == 1 and capacity["bound"] == "measured", capacity
    # Provider B: as good (the same summaries), faster (A's refusals and retries) and cheaper, at any weighting.
    summarize = next(c for c in report["comparisons"] if c["step"] == "summarize")
    assert summarize["recommended"] == "B", summarize["why"]
    variants = {v["variant"]: v for v in summarize["variants"]}
    assert variants["B"]["mean_cost"] < variants["A"]["mean_cost"] and variants["A"]["failure_rate"] > 0
    assert "DocumentPipeline" in (tmp_path / "pipeline.html").read_text()

    # Every lever at once: eight slots, provider B, the extraction cache, summarize and classify together.
    tuned = await run_phase(
        client,
        pipeline,
        "tuned",
        2 * PER_PHASE,
        provider="B",
        activity_slots=8,
        extract_cache=True,
        parallel_steps=True,
    )
    after = await analyze(settings, PER_PHASE)
    left = {(b["type"], b["step"]) for b in after["bottlenecks"]}
    assert not left & {("api_limit", "summarize"), ("sequential_dependency", "summarize -> classify")}, left
    assert not [key for key in left if key[0] == "resource_exhaustion"], left
    p95 = {
        name: float(np.percentile([s.duration_ms for s in run], 95)) for name, run in (("A", shipped), ("tuned", tuned))
    }
    assert p95["tuned"] < p95["A"] / 2, p95
    # Tuned, an execution's time is set by its document's pages: predicted within 15% on held-out executions,
    # with most of what guessing the mean time would miss explained (skill 0.76-0.80 measured, alone and beside
    # a CPU hog). Beside a campaign test on shared cores the times themselves moved by a fifth (0.18 in CI):
    # `make test` runs it on a core of its own.
    prediction = after["prediction"]
    assert prediction["relative_error"] <= 0.15 and prediction["skill"] >= 0.5, prediction
    # Each step's time too: the near-duplicate check's is set by its input (measured 1.7% off, skill 0.98).
    steps = {p["step"]: p for p in prediction["steps"]}
    assert steps["remove_near_duplicates"]["relative_error"] <= 0.15, prediction["steps"]
    assert max(prediction["feature_importance"], key=prediction["feature_importance"].get) == "input.pages"
