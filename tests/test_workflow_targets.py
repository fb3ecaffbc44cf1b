"""Targets of kind temporal-workflow: their files, what a playbook may ask of them, their findings."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio import workflow
from temporalio.client import Client

from ratchet.analysis.advice import advice
from ratchet.analysis.workflow_findings import workflow_findings
from ratchet.config.common import FindingType
from ratchet.config.compatibility import unsupported_by_target
from ratchet.config.loading import load_playbook, load_target
from ratchet.contracts import LoadTestResult
from ratchet.errors import ConfigError
from ratchet.store.samples import endpoint_stats
from ratchet.workflow_analytics.steps import Execution, PayloadFacts, Step
from ratchet.workflow_load.driver import ExecutionSample
from ratchet.workflow_load.samples import write_samples

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = """\
name: p
kind: temporal-workflow
base_url: http://127.0.0.1:9
endpoints:
  - name: doc
    workflow: {type: DocumentPipeline, task_queue: q, inputs: [{id: doc-1, pages: 2}]}
"""


def test_the_example_pipeline_is_a_workflow_target_whose_levers_address_its_bottleneck_types() -> None:
    target = load_target(ROOT / "examples" / "pipeline" / "target.yaml")
    assert target.is_workflow and target.http_endpoints == []
    [endpoint] = target.endpoints
    assert endpoint.workflow is not None and endpoint.workflow.type == "DocumentPipeline"
    assert len({str(i) for i in endpoint.workflow.inputs}) == 100  # a baseline's 50 executions repeat none
    addressed = {a.finding for lever in target.levers for a in lever.addresses}
    assert addressed == {
        FindingType.API_LIMIT,
        FindingType.CACHE_MISS,
        FindingType.SEQUENTIAL_DEPENDENCY,
        FindingType.RESOURCE_EXHAUSTION,
    }


def test_a_workflow_targets_production_is_its_admin_api_and_cluster_with_the_same_workflows(tmp_path: Path) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(
        PIPELINE + "temporal: {address: '127.0.0.1:7233', namespace: staging}\n"
        "production: {base_url: 'http://127.0.0.1:10', temporal: {address: 'prod:7233', namespace: prod}}\n"
    )
    production = load_target(path).in_production()
    assert production.base == "http://127.0.0.1:10" and production.production is None
    assert production.temporal is not None and (production.temporal.address, production.temporal.namespace) == (
        "prod:7233",
        "prod",
    )
    assert production.endpoints == load_target(path).endpoints  # the same workflow types and task queues
    # Production's cluster unset: the target's own.
    path.write_text(PIPELINE + "temporal: {namespace: staging}\nproduction: {base_url: 'http://127.0.0.1:10'}\n")
    assert load_target(path).in_production().temporal == load_target(path).temporal


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (PIPELINE.replace("kind: temporal-workflow\n", ""), ["kind is http", "kind: temporal-workflow"]),
        (
            PIPELINE.replace("    workflow:", "    path: /doc\n    workflow:"),
            ["endpoints.0", "either path", "or workflow"],
        ),
        (PIPELINE + "traces: {settle: 2s}\n", ["does not take ['traces']"]),
        (PIPELINE.replace("inputs: [{id: doc-1, pages: 2}]", "inputs: []"), ["inputs", "at least 1"]),
        (PIPELINE.replace("type: DocumentPipeline", "type: 'Document Pipeline'"), ["workflow.type"]),
        (
            "name: h\nbase_url: http://127.0.0.1:9\nendpoints: [{name: a, path: /a}]\n"
            "production: {base_url: 'http://127.0.0.1:10', temporal: {namespace: prod}}\n",
            ["production.temporal", "kind is http"],
        ),
    ],
)
def test_a_bad_workflow_target_says_which_field_and_what_is_valid(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    path = tmp_path / "target.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_target(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from:\n{message}"


def test_a_playbook_asking_what_a_workflow_target_cannot_run_is_refused_before_launch(tmp_path: Path) -> None:
    target_file = tmp_path / "target.yaml"
    target_file.write_text(PIPELINE)
    target = load_target(target_file)
    # A fixed rate, or `auto` and stress ramps (the driver runs their steps): all fine.
    assert unsupported_by_target(load_playbook(ROOT / "playbooks" / "workflows.yaml"), target) == []
    assert unsupported_by_target(load_playbook(ROOT / "playbooks" / "web-api.yaml"), target) == []
    split = tmp_path / "split.yaml"
    split.write_text("name: split\napprovers: [alice]\nload: {rate: 2, generators: 2}\n")
    [problem] = unsupported_by_target(load_playbook(split), target)
    assert problem.startswith("load.generators") and "use 1" in problem
    assert unsupported_by_target(load_playbook(split), load_target(ROOT / "examples" / "shop" / "target.yaml")) == []


def test_a_stepped_run_holds_each_rate_for_its_step() -> None:
    from ratchet.workflow_load.driver import stepped_arrivals

    arrivals = stepped_arrivals([1.0, 4.0], 2.0)
    assert arrivals == [0.0, 1.0, 2.0, 2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 3.75]


def _executions(count: int) -> list[Execution]:
    """One step per execution, started 10 ms apart, each waiting longer in the queue than the one before."""
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    found = []
    for n in range(count):
        wait = 10.0 * n
        step = Step(f"w{n}", "r", "activity", "call", 5, "q", 1.0, 1.0 + wait, 21.0 + wait)
        found.append(
            Execution(f"w{n}", "r", "T", "q", t0 + timedelta(milliseconds=10 * n), 22.0 + wait, "completed", [step])
        )
    return found


def test_history_bottlenecks_become_findings_on_their_endpoint_weighed_by_its_share_of_the_load() -> None:
    findings = workflow_findings({"doc": _executions(30)}, {"doc": 30, "other": 90})
    queue = next(f for f in findings if f.type == FindingType.RESOURCE_EXHAUSTION)
    assert queue.endpoint == "doc" and queue.evidence["step"] == "task-queue:q"
    assert queue.evidence["fingerprint"] == "resource_exhaustion|doc|task-queue:q"  # stable across runs
    assert queue.impact == pytest.approx(queue.evidence["share_of_execution_time"] * 0.25, abs=1e-4)
    assert queue.estimated_gain_ms > 0 and queue.evidence["workflow_ids"]
    # What a person is told to do names the queue and the step, not an HTTP endpoint's spans.
    told = advice(queue)
    assert "task queue q" in told and "max_concurrent_activities" in told
    assert workflow_findings({"doc": _executions(4)}, {"doc": 4}) == []  # too few executions to judge


def test_each_endpoints_executions_are_its_own_samples(tmp_path: Path) -> None:
    def sample(n: int, ms: float) -> ExecutionSample:
        return ExecutionSample(f"w{n}", 0, n * 0.5, n * 0.5, n * 0.5 + ms / 1000, "completed")

    parquet = tmp_path / "run.parquet"
    kept = write_samples(
        {"small": [sample(n, 100) for n in range(10)], "large": [sample(n, 900) for n in range(10)]},
        parquet,
        run_started_at=datetime(2026, 12, 6, tzinfo=UTC),
        warmup_s=1.0,
    )
    assert kept == 16
    stats = {s.endpoint: s for s in endpoint_stats(parquet)}
    assert stats["small"].p95 == pytest.approx(100, abs=1) and stats["large"].p95 == pytest.approx(900, abs=1)


def _two_step_executions(
    prefix: str, work_ms: float, count: int = 12, cost: float = 0.02, provider: str = "A"
) -> dict[tuple[str, str], Execution]:
    """``fetch`` (10 ms) then ``work`` (``work_ms`` through ``provider``, its result charging ``cost``) in each,
    with a 5 ms queue wait before each step."""
    t0 = datetime(2026, 12, 6, tzinfo=UTC)
    found = {}
    for n in range(count):
        wid = f"{prefix}-{n}"
        charged = PayloadFacts(digest=f"d{n}", size=20, readable=True, text=json.dumps({"cost": cost + n / 1e4}))
        fetch = Step(wid, "r", "activity", "fetch", 5, "q", 1.0, 6.0, 16.0, outcome="completed")
        asked = PayloadFacts(digest="p", size=20, readable=True, text=json.dumps({"provider": provider}))
        work = Step(
            wid,
            "r",
            "activity",
            "work",
            11,
            "q",
            17.0,
            22.0,
            22.0 + work_ms + n,
            outcome="completed",
            result=charged,
            input=asked,
        )
        found[(wid, "r")] = Execution(wid, "r", "T", "q", t0, 25.0 + work_ms + n, "completed", [fetch, work])
    return found


def _kept_run(
    samples_dir: Path, run_id: str, executions: dict[tuple[str, str], Execution], cost_field: str | None
) -> LoadTestResult:
    """A run of endpoint ``doc`` as its load test leaves it: the histories and the target's cost field beside."""
    from ratchet.workflow_load.run import run_histories

    run_histories(samples_dir / run_id, "doc", "T").add(executions)
    (samples_dir / run_id / "executions" / "doc" / "call.json").write_text(json.dumps({"cost_field": cost_field}))
    return LoadTestResult(run_id=run_id, label=run_id, requests=12, duration_s=10, endpoints=[])


def test_the_campaign_report_shows_a_workflow_targets_steps_and_critical_paths_before_and_after(
    tmp_path: Path,
) -> None:
    from ratchet.contracts import ArmRun, CampaignStatus
    from ratchet.report import render_html, render_markdown
    from ratchet.report.workflow_section import workflow_sections

    def run(run_id: str, work_ms: float, cost: float) -> LoadTestResult:
        return _kept_run(tmp_path, run_id, _two_step_executions(run_id, work_ms, cost=cost), cost_field="cost")

    status = CampaignStatus(
        campaign_id="c",
        target="p",
        playbook="workflows",
        baseline=run("baseline", 400, 0.02),
        validation_runs=[
            ArmRun(arm="before", run=run("before-1", 300, 0.02)),
            ArmRun(arm="after", run=run("after-1", 100, 0.01)),
        ],
    )
    [section] = workflow_sections(status, tmp_path)
    # Before is the validation's own arm without the changes (interleaved with the other), not the baseline.
    assert section.before_label == "the validation's arm without the changes"
    assert section.p95_before_ms is not None and section.p95_after_ms is not None
    assert section.p95_after_ms < section.p95_before_ms / 2
    steps = {row["step"]: row for row in section.steps}
    assert steps["work"]["work_ms_p95_ratio"] < 0.4 and 0.9 <= steps["fetch"]["work_ms_p95_ratio"] <= 1.1
    # Each step judged by the endpoints' rules: the step the changes sped up, and the one they left alone.
    assert steps["work"]["verdict"] == "improved" and steps["work"]["ratio_high"] < 0.5
    assert steps["fetch"]["verdict"] in ("not worse", "unchanged", "inconclusive")
    # Both time lines on one scale: the shorter typical execution's path ends well before the width.
    after_path = section.typical_after.path if section.typical_after else []
    assert [s["name"] for s in after_path] == ["fetch", "work"]
    assert after_path[-1]["left"] + after_path[-1]["wait_width"] + after_path[-1]["work_width"] < 50
    # The cost per execution, from the calls' cost field: halved, and the interval says so.
    assert section.cost is not None and section.cost.verdict == "lower"
    assert section.cost.ratio == pytest.approx((0.01 + 5.5e-4) / (0.02 + 5.5e-4), rel=1e-3)
    html = render_html(status, workflows=[section])
    assert "Cost per execution" in html
    assert "Workflow executions" in html and html.count('class="lane"') == 4
    markdown = render_markdown(status, workflows=[section])
    assert "| work |" in markdown and "execution p95" in markdown
    # An HTTP target's campaign has no such section.
    assert workflow_sections(CampaignStatus(campaign_id="h", target="t", playbook="p"), tmp_path) == []


def test_without_a_cost_field_the_playbooks_price_table_prices_each_call_by_its_variant(tmp_path: Path) -> None:
    from ratchet.config.playbook import WorkflowAnalysis
    from ratchet.contracts import ArmRun, CampaignStatus
    from ratchet.report import render_html, render_markdown
    from ratchet.report.workflow_section import workflow_sections

    def run(run_id: str, provider: str) -> LoadTestResult:
        return _kept_run(tmp_path, run_id, _two_step_executions(run_id, 100, provider=provider), cost_field=None)

    status = CampaignStatus(
        campaign_id="c",
        target="p",
        playbook="workflows",
        validation_runs=[ArmRun(arm="before", run=run("before", "A")), ArmRun(arm="after", run=run("after", "B"))],
        workflow_costs=WorkflowAnalysis(variant="provider", prices={"A": 0.03, "B": 0.01}),
    )
    [section] = workflow_sections(status, tmp_path)
    # Each execution's one priced call: A's price before, B's after; fetch has no price and costs nothing known.
    assert section.cost is not None and section.cost.before == pytest.approx(0.03)
    assert section.cost.after == pytest.approx(0.01) and section.cost.verdict == "lower"
    assert "price per call by <code>provider</code>" in render_html(status, workflows=[section])
    # The providers compared over both arms (one in each): as fast, B at a third of the price.
    [comparison] = section.comparisons
    assert comparison["step"] == "work" and comparison["recommended"] == "B", comparison["why"]
    assert "Variants of **work** by `provider`" in render_markdown(status, workflows=[section])
    # No cost field and no prices: no cost is shown rather than a made-up one.
    status.workflow_costs = None
    assert workflow_sections(status, tmp_path)[0].cost is None


@pytest.mark.asyncio(loop_scope="session")
async def test_executions_no_worker_picks_up_are_answers_that_never_came_and_the_server_closes_them(
    fake_tier_temporal: str, tmp_path: Path
) -> None:
    """A workflow target whose worker is down: every execution stays open, the run reads as unanswered (which the
    measurement refuses as no result), and nothing is left running on the cluster."""
    import asyncio
    import time

    from temporalio.client import Client, WorkflowExecutionStatus

    from ratchet.workflow_load.driver import drive

    client = await Client.connect(fake_tier_temporal)
    samples = await drive(
        client,
        workflow="NobodyServesThis",
        task_queue="no-worker-polls-this",
        inputs=[{"id": 1}],
        rate_per_s=4.0,
        count=4,
        id_prefix=f"down-{time.time_ns()}",
        timeout_s=0.5,
        server_grace_s=1.0,
    )
    assert {s.status for s in samples} == {"timed-out"}
    parquet = tmp_path / "run.parquet"
    write_samples({"doc": samples}, parquet, run_started_at=datetime(2026, 12, 6, tzinfo=UTC), warmup_s=0)
    [stats] = endpoint_stats(parquet)
    assert stats.unanswered == stats.requests == 4
    deadline = time.monotonic() + 30
    for sample in samples:
        handle = client.get_workflow_handle(sample.workflow_id)
        while (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            assert time.monotonic() < deadline, f"{sample.workflow_id} still running"
            await asyncio.sleep(0.2)  # polling the server's state against a deadline
        assert (await handle.describe()).status == WorkflowExecutionStatus.TIMED_OUT


@workflow.defn(name="ClosedModelProbe")
class ClosedModelProbe:
    @workflow.run
    async def run(self, n: int) -> int:
        await workflow.sleep(0.1)
        return n


@pytest_asyncio.fixture(loop_scope="session")
async def probe_queue(fake_tier_temporal: str) -> AsyncIterator[tuple[Client, str]]:
    """A client, and a task queue whose worker runs ClosedModelProbe (a 0.1 s timer), for the test."""
    import uuid

    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = await Client.connect(fake_tier_temporal)
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    # Unsandboxed: the sandbox would import this module's numeric libraries a second time.
    async with Worker(
        client, task_queue=queue, workflows=[ClosedModelProbe], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        yield client, queue


@pytest.mark.asyncio(loop_scope="session")
async def test_a_closed_model_keeps_its_concurrency_in_flight_and_starts_each_next_as_one_closes(
    probe_queue: tuple[Client, str],
) -> None:
    import time

    from ratchet.workflow_load.driver import drive_closed

    client, queue = probe_queue
    samples = await drive_closed(
        client,
        workflow="ClosedModelProbe",
        task_queue=queue,
        inputs=[0, 1, 2, 3, 4],
        id_prefix=f"closed-{time.time_ns()}",
        concurrency=3,
        duration_s=3,
        timeout_s=10,
    )
    assert {s.status for s in samples} == {"completed"}
    # Each of the three lanes started its next execution only after its previous one closed: at no instant
    # were more than three in flight, and each execution was due when it started (no arrival waited).
    events = sorted(
        [(s.started_s, 1) for s in samples] + [(s.closed_s, -1) for s in samples], key=lambda e: (e[0], e[1])
    )
    in_flight = list(itertools.accumulate(change for _, change in events))
    assert max(in_flight) == 3, in_flight
    assert all(s.due_s == s.started_s < 3 for s in samples)
    assert len(samples) > 3  # the lanes went on after their first executions closed
    assert {s.input_index for s in samples[:5]} == {0, 1, 2, 3, 4}  # the inputs cycled through


def test_a_closed_model_endpoint_has_no_rate_to_ramp(tmp_path: Path) -> None:
    target_file = tmp_path / "target.yaml"
    target_file.write_text(PIPELINE.replace("inputs: [{id: doc-1, pages: 2}]", "inputs: [{id: doc-1}], concurrency: 4"))
    target = load_target(target_file)
    assert unsupported_by_target(load_playbook(ROOT / "playbooks" / "workflows.yaml"), target) == []
    ramp = tmp_path / "ramp.yaml"
    ramp.write_text("name: ramp\napprovers: [alice]\nload: {rate: auto, stress: {steps: 3}}\n")
    refused = unsupported_by_target(load_playbook(ramp), target)
    assert [r.split(":")[0] for r in refused] == ["load.rate", "load.stress"]
    assert "['doc']" in refused[0] and "workflow.concurrency" in refused[0]


@pytest.mark.asyncio(loop_scope="session")
async def test_a_stopped_run_drops_the_arrivals_still_due_at_once_instead_of_waiting_for_their_time(
    probe_queue: tuple[Client, str],
) -> None:
    import asyncio
    import time

    from ratchet.workflow_load.driver import drive

    client, queue = probe_queue
    closed: list[ExecutionSample] = []
    loop = asyncio.get_running_loop()
    began = loop.time()
    samples = await drive(
        client,
        workflow="ClosedModelProbe",
        task_queue=queue,
        inputs=[0],
        id_prefix=f"stopped-{time.time_ns()}",
        arrivals=[0.0, 0.0, 60.0, 120.0],  # the last two would keep a run waiting two minutes
        timeout_s=30,
        on_close=closed.append,
        stop=lambda: len(closed) >= 1,
    )
    ended = loop.time() - began
    assert [s.due_s for s in samples] == [0.0, 0.0] and {s.status for s in samples} == {"completed"}
    assert ended < 60, f"the run waited {ended:.0f} s for arrivals it had dropped"
