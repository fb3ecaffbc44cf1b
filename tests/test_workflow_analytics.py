"""Workflow analytics: the steps of executions read from their histories, where their time went along the
critical path, and `ratchet workflows analyze` against a real Temporal server."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Worker

from ratchet.errors import ConfigError
from ratchet.settings import Settings
from ratchet.temporal.client import connect
from ratchet.workflow_analytics.bottlenecks import find_bottlenecks
from ratchet.workflow_analytics.critical_path import critical_path, path_split
from ratchet.workflow_analytics.fetch import visibility_query
from ratchet.workflow_analytics.prediction import analyze_time
from ratchet.workflow_analytics.steps import Execution, PayloadFacts, Step, execution_of
from ratchet.workflow_analytics.summary import summarize
from tests.campaign_helpers import ratchet_cli
from tests.conftest import ROOT, free_port
from tests.sample_pipeline import ACTIVITIES, SamplePipeline, documents, register_provider_attribute

HAPPY_PATH = next((ROOT / "tests" / "histories").glob("*-happy-path.json.gz"))


def history(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.name, gzip.decompress(path.read_bytes()).decode())


def test_the_steps_of_a_recorded_campaign_are_its_activities_and_timers() -> None:
    execution = execution_of(history(HAPPY_PATH))
    kinds = [s.kind for s in execution.steps]
    assert execution.workflow_type == "CampaignWorkflow" and execution.status == "completed"
    # The history holds 94 scheduled activities and 2 timers (the gates' timeouts, cancelled by the answers).
    assert kinds.count("activity") == 94 and kinds.count("timer") == 2
    assert all(s.closed_ms is not None and s.outcome in ("completed", "canceled") for s in execution.steps)
    assert all(s.wait_ms is not None and s.wait_ms >= 0 and s.work_ms is not None for s in execution.steps)
    assert [s.name for s in execution.steps[:2]] == ["record_campaign", "run_load_test"]

    path = critical_path(execution)
    # The path ends with the step that closed last and never goes back in time.
    assert path[-1] is max(execution.steps, key=lambda s: s.closed_ms or 0)
    assert all(a.closed_ms is not None and a.closed_ms <= b.scheduled_ms + 0.001 for a, b in itertools.pairwise(path))
    split = path_split(execution, path)
    parts = split.queue_wait_ms + split.work_ms + split.timers_ms + split.workflow_ms
    assert parts == pytest.approx(execution.total_ms)
    assert split.work_ms > 0.9 * execution.total_ms  # a campaign's time is its load tests


def test_the_summary_ranks_steps_by_their_share_of_the_critical_path() -> None:
    executions = [execution_of(history(p)) for p in sorted((ROOT / "tests" / "histories").glob("*.json.gz"))]
    summary = summarize(executions)
    assert summary["executions"] == len(executions)
    shares = [s["critical_path_share"] for s in summary["steps"]]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1.0001
    load = next(s for s in summary["steps"] if s["step"] == "run_load_test")
    assert load["count"] == sum(1 for e in executions for s in e.steps if s.name == "run_load_test")
    assert load["work_ms"]["p50"] <= load["work_ms"]["p95"] <= load["work_ms"]["p99"]
    assert sum(summary["time_split"].values()) == pytest.approx(1, abs=0.01)


def test_a_type_name_that_is_not_one_is_refused_before_any_query() -> None:
    with pytest.raises(ConfigError, match="--type"):
        visibility_query('X" OR WorkflowType != "', None)
    assert 'CloseTime > "' in visibility_query("Pipeline", timedelta(days=7))


# Executions of the sample pipeline the analysis reads. Eight is the least the super-linear detector takes: at
# that edge a busy host (the fast tier runs two tests at a time) hid the quadratic step once in CI (2026-12-07).
RUNS = 16


@pytest.mark.asyncio
async def test_analyze_finds_the_planted_bottlenecks_of_a_workflow_type_on_a_real_server(
    fake_tier_temporal: str, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "ratchet", temporal_address=fake_tier_temporal, task_queue_prefix="wa", otlp_port=free_port()
    )
    client = await connect(settings)
    queue = f"pipeline-{uuid.uuid4().hex[:8]}"
    await register_provider_attribute(client)
    async with Worker(client, task_queue=queue, workflows=[SamplePipeline], activities=ACTIVITIES):
        for n, document in enumerate(documents(RUNS)):
            await client.execute_workflow(SamplePipeline.run, document, id=f"{queue}-{n}", task_queue=queue)
    # Visibility records a close a moment after the result: wait until all of them are listed (a deadline).
    listed = f'WorkflowType = "SamplePipeline" AND WorkflowId STARTS_WITH "{queue}"'
    async with asyncio.timeout(30):
        while (await client.count_workflows(listed)).count < RUNS:
            await asyncio.sleep(0.05)

    shown = await ratchet_cli(
        settings, "workflows", "analyze", "--type", "SamplePipeline", "--last", str(RUNS), "--json",
        "--variant", "provider", "--cost-field", "cost",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    steps = {s["step"]: s for s in report["steps"]}
    assert report["executions"] == RUNS and report["statuses"] == {"completed": RUNS}
    assert set(steps) == {"fetch", "extract", "classify", "language", "score", "summarize", "timer"}
    assert all(s["count"] == RUNS and s["per_execution"] == 1 for s in steps.values())
    # Every summarize through provider A was retried once after its refusal, and the reason is kept.
    summarize_step = steps["summarize"]
    assert summarize_step["attempts"] == {"max": 2, "retried": RUNS // 2}
    assert summarize_step["failures"][0]["reason"].startswith("RateLimited: provider A answered 429")
    # Its wait holds the failed attempt and the backoff (50 ms): the longest wait of the steps.
    assert summarize_step["wait_ms"]["p95"] >= 50
    assert max((s for s in steps.values() if s["kind"] != "timer"), key=lambda s: s["wait_ms"]["p95"])["step"] == (
        "summarize"
    )
    stored = duckdb.sql(
        "SELECT count(*), count(DISTINCT workflow_id) FROM read_parquet(?)", params=[report["steps_file"]]
    )
    assert stored.fetchall() == [(7 * RUNS, RUNS)]

    found = {(b["type"], b["step"]): b for b in report["bottlenecks"]}
    described = "\n".join(b["summary"] for b in report["bottlenecks"])
    planted = {
        ("api_limit", "summarize"),
        ("cache_miss", "language"),
        ("inefficient_algorithm", "score"),
        ("sequential_dependency", "extract -> classify"),
    }
    assert planted <= set(found), described
    # fetch is clean, and extract needs what fetch returned: neither raises anything of its own.
    assert not [key for key in found if key[1] in ("fetch", "extract", "fetch -> extract")], described
    # Quadratic by construction; the activities' own overhead flattens the smallest inputs a little.
    assert 1.5 <= found[("inefficient_algorithm", "score")]["evidence"]["exponent"] <= 2.3, described
    assert found[("cache_miss", "language")]["evidence"]["hit_ratio"] == pytest.approx((RUNS - 1) / RUNS)
    # The time is predicted from the input's size (scoring is quadratic in it), checked on held-out executions;
    # no execution is anomalous: the slow ones had the large inputs.
    prediction = report["prediction"]
    assert prediction["executions"] == RUNS and prediction["relative_error"] < 0.5, prediction
    assert max(prediction["feature_importance"], key=prediction["feature_importance"].get) == "input_bytes"
    assert report["anomalies"] == [], report["anomalies"]
    # The providers compared: B is faster (A's retries) and cheaper, so B at any weighting.
    [comparison] = report["comparisons"]
    assert comparison["step"] == "summarize" and comparison["recommended"] == "B", comparison
    variants = {v["variant"]: v for v in comparison["variants"]}
    assert variants["A"]["failure_rate"] == 1 and variants["B"]["failure_rate"] == 0
    assert variants["A"]["mean_cost"] == pytest.approx(0.004) and variants["B"]["mean_cost"] == pytest.approx(0.002)
    assert comparison["weights"] == {"performance": 0.6, "cost": 0.4}
    # The same providers told apart by each call's summary, priced by a playbook's table (the results' cost
    # field unnamed), weighed by its weights; and by the executions' search attribute.
    playbook = tmp_path / "prices.yaml"
    playbook.write_text(
        "name: prices\napprovers: [alice]\nworkflows:\n  variant: summary\n"
        "  prices: {provider A: 0.01, provider B: 0.001}\n  weights: {performance: 1, cost: 0}\n"
    )
    priced = await ratchet_cli(
        settings, "workflows", "analyze", "--type", "SamplePipeline", "--last", str(RUNS), "--json",
        "--playbook", str(playbook),
    )  # fmt: skip
    assert priced.returncode == 0, priced.stderr
    [by_summary] = json.loads(priced.stdout)["comparisons"]
    assert by_summary["recommended"] == "provider B" and by_summary["weights"] == {"performance": 1.0, "cost": 0.0}
    assert {v["variant"]: v["mean_cost"] for v in by_summary["variants"]} == {"provider A": 0.01, "provider B": 0.001}
    tagged = await ratchet_cli(
        settings, "workflows", "analyze", "--type", "SamplePipeline", "--last", str(RUNS), "--json",
        "--variant", "search_attribute:PipelineProvider",
    )  # fmt: skip
    assert tagged.returncode == 0, tagged.stderr
    by_attribute = {c["step"]: c for c in json.loads(tagged.stdout)["comparisons"]}
    assert by_attribute["summarize"]["recommended"] == "B", by_attribute["summarize"]["why"]
    # The first analysis of a type is its baseline; each day's executions are counted.
    assert report["baseline"]["from"] is None and Path(report["baseline"]["file"]).is_file()
    assert sum(day["executions"] for day in report["daily"]) == RUNS
    # In a terminal: the steps' table, the time split and each bottleneck in a sentence.
    table = await ratchet_cli(settings, "workflows", "analyze", "--type", "SamplePipeline", "--last", str(RUNS))
    assert table.returncode == 0, table.stderr
    assert f"SamplePipeline: {RUNS} execution(s)" in table.stdout and "Along the critical paths:" in table.stdout
    assert f"api_limit summarize: {RUNS // 2} of {RUNS} calls were refused" in " ".join(table.stdout.split())
    page = tmp_path / "again.html"
    again = json.loads(
        (
            await ratchet_cli(
                settings,
                "workflows",
                "analyze",
                "--type",
                "SamplePipeline",
                "--last",
                str(RUNS),
                "--json",
                "--html",
                str(page),
            )
        ).stdout
    )
    # The second run compares with the first: the same executions, the same figures, on the page too.
    assert again["baseline"]["from"] == report["steps_file"]
    score = {c["step"]: c for c in again["baseline"]["changes"]}["score"]
    assert score["work_ms_p95_ratio"] == 1.0 and score["work_ms_p95"] == score["work_ms_p95_baseline"] > 0
    shown_page = page.read_text()
    assert "Against the baseline" in shown_page and "x1.00" in shown_page
    for bottleneck in report["bottlenecks"]:
        evidence = bottleneck["evidence"]
        assert evidence["workflow_ids"] and all(w.startswith(queue) for w in evidence["workflow_ids"])
        assert bottleneck["severity"] in ("low", "medium", "high", "critical") and 0 < bottleneck["impact"] <= 1


@pytest.mark.asyncio
async def test_analyze_of_a_type_with_no_executions_says_so(fake_tier_temporal: str, tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "ratchet", temporal_address=fake_tier_temporal, task_queue_prefix="wa", otlp_port=free_port()
    )
    shown = await ratchet_cli(settings, "workflows", "analyze", "--type", "NoSuchWorkflow")
    assert shown.returncode == 3 and "no closed execution of NoSuchWorkflow" in shown.stderr
    both = await ratchet_cli(settings, "workflows", "analyze", "--type", "X", "--since", "7d", "--last", "3")
    assert both.returncode == 2 and "one of them" in both.stderr


def synthetic(count: int, *, wait_of: Callable[[int], float], work_ms: float = 20.0) -> list[Execution]:
    """``count`` executions of one ``call`` step each, started 10 ms apart (so they overlap: the n-th starts
    while up to n others are still in progress), waiting ``wait_of(n)`` ms in the queue."""
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    executions = []
    for n in range(count):
        wait = wait_of(n)
        step = Step(f"w{n}", "r", "activity", "call", 5, "q", 1.0, 1.0 + wait, 1.0 + wait + work_ms)
        executions.append(
            Execution(
                f"w{n}", "r", "T", "q", t0 + timedelta(milliseconds=10 * n), 2.0 + wait + work_ms, "completed", [step]
            )
        )
    return executions


def test_queue_waits_that_grow_with_the_steps_in_progress_are_resource_exhaustion() -> None:
    found = find_bottlenecks(synthetic(30, wait_of=lambda n: 10.0 * n))
    exhaustion = [b for b in found if b.type == "resource_exhaustion"]
    assert [b.step for b in exhaustion] == ["task-queue:q"], [b.summary for b in found]
    assert exhaustion[0].evidence["steps"] == ["call"]
    assert exhaustion[0].evidence["spearman_rho"] >= 0.9 and exhaustion[0].evidence["workflow_ids"][0] == "w29"


def test_steady_short_waits_raise_nothing_but_the_step_that_is_all_of_the_work() -> None:
    found = find_bottlenecks(synthetic(30, wait_of=lambda n: 2.0 + (n % 3)))
    # One step is the whole execution: it is the slow step, and nothing else is raised.
    assert [(b.type, b.step) for b in found] == [("slow_step", "call")]
    assert find_bottlenecks(synthetic(4, wait_of=lambda n: 10.0 * n)) == []  # too few executions to judge


def test_an_execution_that_waited_far_longer_than_the_others_is_anomalous_and_says_why() -> None:
    executions = synthetic(20, wait_of=lambda n: 5.0 + n % 2)
    executions += synthetic(1, wait_of=lambda n: 400.0)
    executions[-1].workflow_id = "stuck"
    timing = analyze_time(executions)
    assert [a["workflow_id"] for a in timing.anomalies] == ["stuck"], timing.anomalies
    assert "queue_wait_ms 400" in timing.anomalies[0]["why"] or "unexplained_ms" in timing.anomalies[0]["why"]
    # A few milliseconds off a steady median is not an anomaly, however steady the others are.
    steady = synthetic(20, wait_of=lambda n: 990.0 + (n % 2)) + synthetic(1, wait_of=lambda n: 982.0)
    assert analyze_time(steady).anomalies == []


def test_light_and_heavy_calls_of_one_step_are_not_an_algorithm_that_grows() -> None:
    """Small inputs answered in ~5 ms and large ones in ~500 ms, flat within each kind: a steep slope between
    the two groups, none within. Then the same step truly quadratic: found."""

    def runs(size_and_ms: list[tuple[int, float]]) -> list[Execution]:
        executions = synthetic(len(size_and_ms), wait_of=lambda n: 1.0)
        for execution, (size, ms) in zip(executions, size_and_ms, strict=True):
            [step] = execution.steps
            step.input = PayloadFacts(digest=f"{size}-{ms}", size=size, readable=True)
            step.closed_ms = (step.started_ms or 0.0) + ms
            execution.total_ms = step.closed_ms + 1
        return executions

    two_kinds = [(100 + n, 5.0 + n % 3) for n in range(10)] + [(5000 + 50 * n, 500.0 + 7 * (n % 3)) for n in range(10)]
    assert not [b for b in find_bottlenecks(runs(two_kinds)) if b.type == "inefficient_algorithm"]
    quadratic = [(size, 0.001 * size**2) for size in range(100, 2100, 100)]
    [found] = [b for b in find_bottlenecks(runs(quadratic)) if b.type == "inefficient_algorithm"]
    assert found.evidence["exponent"] == pytest.approx(2, abs=0.01)

    # On a busy worker every call pays ~15 ms whatever its input, jittered, against 5 ms of a small call's own
    # work: the quadratic step is still found, with its exponent near 2; linear work with the same fixed cost
    # and jitter is not, whatever the draw.
    rng = np.random.default_rng(7)
    sentences = rng.choice([14, 18, 26, 42, 74], 45)
    jitter = rng.exponential(6.0, 45)
    busy = [(75 * int(n), 15.0 + 0.03 * n * (n - 1) + j) for n, j in zip(sentences, jitter, strict=True)]
    [found] = [b for b in find_bottlenecks(runs(busy)) if b.type == "inefficient_algorithm"]
    assert 1.6 <= found.evidence["exponent"] <= 2.4, found.evidence
    assert "fixed" in found.evidence["fit"], found.evidence
    for seed in range(20):
        rng = np.random.default_rng(seed)
        sentences, jitter = rng.choice([14, 18, 26, 42, 74], 45), rng.exponential(6.0, 45)
        linear = [(75 * int(n), 15.0 + 2.2 * n + j) for n, j in zip(sentences, jitter, strict=True)]
        assert not [b for b in find_bottlenecks(runs(linear)) if b.type == "inefficient_algorithm"], seed


def test_executions_read_once_come_back_from_the_history_cache_unchanged(tmp_path: Path) -> None:
    from ratchet.workflow_analytics.history_cache import HistoryCache

    executions = [execution_of(history(p)) for p in sorted((ROOT / "tests" / "histories").glob("*.json.gz"))]
    keys = [(e.workflow_id, f"run-{n}") for n, e in enumerate(executions)]
    cache = HistoryCache(tmp_path, "CampaignWorkflow")
    assert cache.load(set(keys)) == {}
    cache.add(dict(zip(keys[:2], executions[:2], strict=True)))
    cache.add(dict(zip(keys[2:], executions[2:], strict=True)))
    again = cache.load(set(keys) | {("unknown", "run")})
    assert again == dict(zip(keys, executions, strict=True))
    # Many small writes are folded into one file, and nothing is lost on the way.
    for n in range(20):
        cache.add({(f"extra-{n}", "r"): executions[0]})
    assert len(list(cache.folder.glob("*.parquet"))) <= 17
    assert len(cache.load({(f"extra-{n}", "r") for n in range(20)} | set(keys))) == 20 + len(keys)


def test_a_workload_drivers_executions_are_read_as_load_test_samples(tmp_path: Path) -> None:
    from ratchet.store.samples import endpoint_stats
    from ratchet.workflow_load.driver import ExecutionSample
    from ratchet.workflow_load.samples import write_samples

    samples = [
        ExecutionSample(f"w{n}", n % 3, n * 0.5, n * 0.5, n * 0.5 + 0.1 * (n + 1), "completed") for n in range(20)
    ]
    samples += [ExecutionSample("w-failed", 0, 9.0, 9.0, 9.4, "failed", "boom")]
    samples += [ExecutionSample("w-refused", 0, 9.5, 9.5, 9.5, "not-started", "unavailable")]
    parquet = tmp_path / "run.parquet"
    kept = write_samples({"pipeline": samples}, parquet, run_started_at=datetime(2026, 12, 6, tzinfo=UTC), warmup_s=2.0)
    assert kept == 16 + 2  # the four due in the first two seconds are the warm-up
    [stats] = endpoint_stats(parquet)
    assert stats.endpoint == "pipeline" and stats.requests == 18
    assert stats.errors == 2 and stats.unanswered == 1
    durations = sorted(s.duration_ms for s in samples if s.due_s >= 2.0)
    assert stats.p50 == pytest.approx(float(np.percentile(durations, 50)), abs=0.01)


def test_a_queues_capacity_is_its_peak_of_steps_at_once_over_the_work_per_execution() -> None:
    from ratchet.workflow_analytics.capacity import queue_capacity

    # Three at once (started together), then a fourth alone: at most three ran at once, 100 ms of work each.
    executions = synthetic(3, wait_of=lambda n: 0.0, work_ms=100.0)
    for execution in executions:
        execution.started_at = executions[0].started_at
    executions += synthetic(1, wait_of=lambda n: 0.0, work_ms=100.0)
    executions[-1].started_at = executions[0].started_at + timedelta(seconds=5)
    [queue] = queue_capacity(executions, saturated_queues={"q"})
    assert queue["peak_running"] == 3 and queue["work_ms_per_execution"] == pytest.approx(100.0)
    assert queue["executions_per_hour"] == 3 * 36_000 and queue["bound"] == "measured"
    # A queue whose steps never waited for a slot: the workers were never all busy, so at least that much.
    assert queue_capacity(executions, saturated_queues=set())[0]["bound"] == "at least"


def test_two_steps_overlapping_for_a_few_milliseconds_on_one_slot_are_not_two_slots() -> None:
    from ratchet.workflow_analytics.capacity import queue_capacity

    # One slot: each next step is handed out 3 ms before the previous one's completion is recorded.
    executions = synthetic(5, wait_of=lambda n: 0.0, work_ms=100.0)
    for n, execution in enumerate(executions):
        execution.started_at = executions[0].started_at + timedelta(milliseconds=97 * n)
    [queue] = queue_capacity(executions, saturated_queues={"q"})
    assert queue["peak_running"] == 1


def test_executions_cached_before_summaries_and_search_attributes_were_read_still_load(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ratchet.workflow_analytics.history_cache import HistoryCache, _row

    cache = HistoryCache(tmp_path, "T")
    executions = synthetic(3, wait_of=lambda n: 1.0)
    executions[0].search_attributes = '{"Provider": "B"}'
    executions[0].steps[0].summary = "provider B"
    cache.add({("w0", "r"): executions[0]})
    # A file as an older Ratchet wrote it: no summary on steps, no search attributes.
    old = [_row((e.workflow_id, "r"), e) for e in executions[1:]]
    for row in old:
        del row["search_attributes"]
        for step in row["steps"]:
            del step["summary"]
    pq.write_table(pa.Table.from_pylist(old), cache.folder / "old.parquet")
    loaded = cache.load({("w0", "r"), ("w1", "r"), ("w2", "r")})
    assert loaded[("w1", "r")].attributes == {} and loaded[("w1", "r")].steps[0].summary == ""
    assert loaded[("w0", "r")].attributes == {"Provider": "B"} and loaded[("w0", "r")].steps[0].summary == "provider B"
    # Folded into one file with the old rows first, nothing of the new rows is lost.
    for n in range(16):
        cache.add({(f"extra-{n}", "r"): executions[1]})
    assert cache.load({("w0", "r")})[("w0", "r")].attributes == {"Provider": "B"}
