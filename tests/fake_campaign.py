"""The campaign workflow on fake activities: the fast tier's way to drive gates, the saga, cancellation and the
guard through a real Temporal server in a second or two, where a campaign on the real shop takes minutes.

The fakes stand for the target's I/O only (planning and the store are the real ones). `FakeService` is what they pretend the target is: which levers are in place,
how much faster each makes its endpoint, what every run measured (from the levers in place while it ran), and
the answers a test scripts (a guard that breaches, a lever that changes the answers, an apply that hangs until
released). Verdicts follow the playbook's margins on those numbers, so the workflow decides on data as it does
on a real target; the statistics behind real verdicts have tests of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.planning import AnalysisActivities
from activities.records import RecordActivities
from ratchet.analysis.knee import StepSample, stress_report
from ratchet.analysis.page_load import page_load_checks, page_load_findings, page_load_verdicts
from ratchet.analysis.slo import check_slos, judged_by_slo
from ratchet.analysis.throughput import capacity_findings, last_stress, throughput_check
from ratchet.config.common import FindingType, Role
from ratchet.config.playbook import Playbook
from ratchet.contracts import (
    AlertRequest,
    AlertResult,
    ArmsRequest,
    AssessRequest,
    AssessResult,
    BehaviourCheck,
    BehaviourRequest,
    BehaviourSummary,
    CompareResult,
    EndpointStats,
    EndpointVerdict,
    Finding,
    GuardRequest,
    GuardResult,
    LeverCall,
    LeverOutcome,
    LoadTestRequest,
    LoadTestResult,
    PageLoadRequest,
    PageLoadResult,
    PageVitals,
    ProbeRequest,
    ProbeSummary,
    ReportRequest,
    ReportResult,
    SloCheck,
    ValidationLoad,
    ValidationLoadRequest,
    Verdict,
    WireBytesRequest,
    WireBytesResult,
)
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue
from tests.conftest import free_port
from workflows import WORKFLOW_RUNNER
from workflows.campaign import CampaignWorkflow
from workflows.rollout import RolloutWorkflow
from workflows.target_lock import TargetLockWorkflow
from workflows.watch import WatchWorkflow

SLO_MS = 50.0

# A target for the fakes: its levers are never run (the fakes apply them); their commands differ, as levers that
# run the same command conflict.
FAKE_TARGET = """\
name: fake-service
base_url: http://127.0.0.1:9
endpoints:
  - {name: search, path: /search}
  - {name: history, path: /history}
  - {name: home, path: /}
levers:
  - name: search-cache
    kind: shell
    addresses: [{finding: cacheable, endpoint: search}]
    apply: [{argv: [echo, cache on]}]
    rollback: [{argv: [echo, cache off]}]
  - name: batch-history
    kind: shell
    role: devops-engineer
    addresses: [{finding: n-plus-one, endpoint: history}]
    apply: [{argv: [echo, batching on]}]
    rollback: [{argv: [echo, batching off]}]
"""


@dataclass
class FakeService:
    """The target as the fake activities see it, and what a test scripts of it."""

    # endpoint -> its p95 (ms) with no lever in place
    base_p95: dict[str, float] = field(default_factory=lambda: {"search": 200.0, "history": 120.0, "home": 10.0})
    # lever -> (its endpoint, the factor it gives that endpoint's p95)
    gains: dict[str, tuple[str, float]] = field(
        default_factory=lambda: {"search-cache": ("search", 0.1), "batch-history": ("history", 0.3)}
    )
    requests: dict[str, int] = field(default_factory=dict)  # endpoint -> requests per run (default 100)
    breaks_answers: set[str] = field(default_factory=set)  # levers that change what the target answers
    guard_breaches: list[bool] = field(default_factory=list)  # the guard's answers, one per check, then "held"
    hold_apply: set[str] = field(default_factory=set)  # levers whose apply waits until `release` is set
    release: asyncio.Event = field(default_factory=asyncio.Event)
    applying: asyncio.Event = field(default_factory=asyncio.Event)  # set once a held apply has started
    in_place: set[str] = field(default_factory=set)
    runs: dict[str, dict[str, float]] = field(default_factory=dict)  # run id -> endpoint -> p95 measured
    calls: list[str] = field(default_factory=list)  # "apply search-cache" ... "applied search-cache", ...
    sustains: float = float("inf")  # above this rate (req/s) requests wait: a capacity ramp's steps break
    sustains_with: dict[str, float] = field(default_factory=dict)  # lever -> what the target sustains with it
    slowdown: float = 1.0  # every endpoint's p95 times this (a watch test's injected slowdown)...
    slow_from_probe: int | None = None  # ...only from the watch's probe of this number on ("watch-N" runs)
    noise: float = 0.0  # each run's p95 times 1 +- up to this, drawn from `jitter`
    jitter: random.Random = field(default_factory=lambda: random.Random(7))
    rates: list[tuple[str, float]] = field(default_factory=list)  # (label, rate asked) of every load run
    page_lcp: dict[str, float] = field(default_factory=dict)  # page endpoint -> its LCP on desktop (mobile: x4)
    page_gains: dict[str, float] = field(default_factory=dict)  # lever -> the factor it gives every page's LCP

    def page(self, endpoint: str, profile: str, visits: int) -> PageVitals:
        """A page's first visits on a device: a little spread from visit to visit, as Chromium's are."""
        lcp = self.page_lcp[endpoint] * (4 if profile == "mobile" else 1)
        for lever in self.in_place:
            lcp *= self.page_gains.get(lever, 1.0)
        samples = [round(lcp * (1 + 0.03 * (i % 3 - 1)), 1) for i in range(visits)]
        return PageVitals(
            endpoint=endpoint,
            url=f"http://fake/{endpoint}",
            visits=visits,
            profile=profile,
            lcp_ms=statistics.median(samples),
            fcp_ms=statistics.median(samples) / 2,
            lcp_samples=samples,
            fcp_samples=[v / 2 for v in samples],
        )

    def pages(self, playbook: Playbook, names: list[str]) -> list[PageVitals]:
        wanted = playbook.slo.page_load
        if wanted is None:
            return []
        return [self.page(name, profile.value, wanted.visits) for name in names for profile in wanted.profiles]

    def p95(self, endpoint: str) -> float:
        factor = 1.0
        for lever in self.in_place:
            where, gain = self.gains.get(lever, ("", 1.0))
            if where == endpoint:
                factor *= gain
        return self.base_p95[endpoint] * factor * (1 + self.jitter.uniform(-self.noise, self.noise))

    def slowed(self, label: str) -> float:
        """The injected slowdown's factor for a run: from the watch's probe ``slow_from_probe`` on."""
        probe = int(label.removeprefix("watch-")) if label.startswith("watch-") else 0
        return self.slowdown if self.slow_from_probe is not None and probe >= self.slow_from_probe else 1.0


def _stats(endpoint: str, p95: float, requests: int = 100) -> EndpointStats:
    return EndpointStats(
        endpoint=endpoint,
        requests=requests,
        errors=0,
        error_rate=0.0,
        p50=p95 / 2,
        p95=p95,
        p99=p95 * 1.2,
        mean=p95 / 2,
    )


def _verdict(endpoint: str, before: float, after: float, request: ArmsRequest) -> EndpointVerdict:
    rules = request.playbook.validation
    ratio = after / before
    if ratio <= 1 - rules.min_improvement:
        verdict = Verdict.IMPROVED
    elif ratio >= 1 + rules.regression_margin:
        verdict = Verdict.REGRESSED
    else:
        verdict = Verdict.NOT_WORSE
    runs = len(request.after_run_ids)
    return EndpointVerdict(
        endpoint=endpoint,
        before=_stats(endpoint, before),
        after=_stats(endpoint, after),
        p95_ratio=ratio,
        p50_ratio=ratio,
        p_value_faster=1e-9 if ratio < 1 else 0.5,
        p_value_slower=1e-9 if ratio > 1 else 0.5,
        hodges_lehmann_ms=after - before,
        ratio=ratio,
        ratio_low=ratio * 0.9,
        ratio_high=ratio * 1.1,
        confidence=0.95,
        runs_before=len(request.before_run_ids),
        runs_after=runs,
        verdict=verdict,
        explanation=f"{verdict.value}: p95 {before:.1f} -> {after:.1f} ms (fake)",
    )


class FakeActivities:
    """Every activity the campaign calls, by the names it calls them, on a `FakeService`."""

    def __init__(self, service: FakeService, folder: Path) -> None:
        self.service = service
        self.folder = folder

    def _note(self, call: str) -> None:
        self.service.calls.append(call)

    @activity.defn(name="run_load_test")
    async def run_load_test(self, request: LoadTestRequest) -> LoadTestResult:
        run_id = f"{request.label}-{len(self.service.runs) + 1}"
        slowed = self.service.slowed(request.label)
        measured = {e.name: self.service.p95(e.name) * slowed for e in request.target.endpoints}
        self.service.runs[run_id] = measured
        self._note(f"load {request.label}")
        self.service.rates.append((request.label, request.rate))
        endpoints = [_stats(name, p95, self.service.requests.get(name, 100)) for name, p95 in measured.items()]
        stress = None
        if request.stress is not None:  # a stepped run: requests wait (the mean x5) above what the target sustains
            plan = request.stress
            with_levers = [self.service.sustains_with.get(lever, 0.0) for lever in self.service.in_place]
            sustains = max([self.service.sustains, *with_levers])
            steps = [
                StepSample(i, int(rate * plan.step_s), plan.step_s, 30.0, 0, 0, 10.0)
                if rate <= sustains
                else StepSample(i, int(rate * plan.step_s), plan.step_s, 250.0, 0, 0, 50.0)
                for i, rate in enumerate(plan.rates)
            ]
            stress = stress_report(steps, plan, ended_by_itself=True)
        return LoadTestResult(
            run_id=run_id,
            label=request.label,
            requests=sum(e.requests for e in endpoints),
            duration_s=request.duration_s,
            endpoints=endpoints,
            stress=stress,
        )

    @activity.defn(name="probe_endpoints")
    async def probe_endpoints(self, request: ProbeRequest) -> ProbeSummary:
        pages = self.service.pages(request.playbook, sorted(self.service.page_lcp))
        return ProbeSummary(file="", endpoints=len(request.target.endpoints), page_loads=pages)

    @activity.defn(name="measure_page_loads")
    async def measure_page_loads(self, request: PageLoadRequest) -> PageLoadResult:
        """The real checks and verdicts (pure logic) on the fake's visits."""
        pages = self.service.pages(request.playbook, request.pages)
        return PageLoadResult(
            pages=pages,
            checks=page_load_checks(pages, request.playbook),
            verdicts=page_load_verdicts(request.before, pages, request.playbook),
        )

    @activity.defn(name="record_behaviour")
    async def record_behaviour(self, request: BehaviourRequest) -> BehaviourSummary:
        return BehaviourSummary(file="", answers=len(request.target.endpoints), scenarios=0)

    @activity.defn(name="check_behaviour")
    async def check_behaviour(self, request: BehaviourRequest) -> BehaviourCheck:
        changed = sorted(self.service.in_place & self.service.breaks_answers)
        return BehaviourCheck(same=not changed, differences=[f"{lever}: the answer differs" for lever in changed])

    @activity.defn(name="find_bottlenecks")
    async def find_bottlenecks(self, request: AssessRequest) -> AssessResult:
        """A finding per lever not in place (its pattern is still there), judged against the SLO as the real
        assessment judges them."""
        baseline = request.baseline
        findings: list[Finding] = []
        for lever in request.target.levers:
            endpoint = lever.addresses[0].endpoint
            stats = baseline.stats(endpoint)
            if stats is None or lever.name in self.service.in_place:
                continue
            findings.append(
                Finding(
                    id=f"F{len(findings) + 1}",
                    type=FindingType(lever.addresses[0].finding),
                    endpoint=endpoint,
                    severity="high",
                    impact=0.5,
                    estimated_gain_ms=stats.p95 / 2,
                    summary=f"{endpoint}: {lever.addresses[0].finding} (fake)",
                )
            )
        # The stress run's knee against the playbook's throughput target, as the real assessment reads it.
        stress = last_stress(request.load_shapes)
        throughput = throughput_check(stress, request.playbook)
        findings += capacity_findings(throughput, stress, request.playbook)
        # The probe's page loads against the playbook's page_load targets, as the real assessment reads them.
        pages = request.probe.page_loads if request.probe is not None else []
        page_checks = page_load_checks(pages, request.playbook)
        findings += page_load_findings(page_checks, pages)
        findings = [f.model_copy(update={"id": f"F{number}"}) for number, f in enumerate(findings, 1)]
        findings = judged_by_slo(findings, baseline.endpoints, request.playbook)
        checks = check_slos(baseline.endpoints, request.playbook) + ([throughput] if throughput else [])
        return AssessResult(findings=findings, slo=checks + page_checks)

    @activity.defn(name="apply_lever")
    async def apply_lever(self, call: LeverCall) -> LeverOutcome:
        name = call.lever.name
        self._note(f"apply {name}")
        if name in self.service.hold_apply:
            self.service.applying.set()
            await self.service.release.wait()
        changed = name not in self.service.in_place
        self.service.in_place.add(name)
        self._note(f"applied {name}")
        return LeverOutcome(
            change_id=call.change_id,
            lever=name,
            action="apply",
            changed=changed,
            verified=True,
            detail=f"{name}: apply done",
        )

    @activity.defn(name="rollback_lever")
    async def rollback_lever(self, call: LeverCall) -> LeverOutcome:
        name = call.lever.name
        self._note(f"rollback {name}")
        changed = name in self.service.in_place
        self.service.in_place.discard(name)
        return LeverOutcome(
            change_id=call.change_id,
            lever=name,
            action="rollback",
            changed=changed,
            verified=True,
            detail=f"{name}: rollback done",
        )

    @activity.defn(name="size_validation_load")
    async def size_validation_load(self, request: ValidationLoadRequest) -> ValidationLoad:
        return ValidationLoad(
            focus={e: 5.0 for e in request.endpoints},
            needed_per_run={e: 20 for e in request.endpoints},
            note=f"validation load focused on {', '.join(request.endpoints)} (fake)",
        )

    @activity.defn(name="compare_arms")
    async def compare_arms(self, request: ArmsRequest) -> CompareResult:
        def mean_p95(run_ids: list[str], endpoint: str) -> float:
            return sum(self.service.runs[r][endpoint] for r in run_ids) / len(run_ids)

        endpoints = list(self.service.runs[request.after_run_ids[0]])
        verdicts = [
            _verdict(e, mean_p95(request.before_run_ids, e), mean_p95(request.after_run_ids, e), request)
            for e in endpoints
        ]
        slo = [
            SloCheck(endpoint=v.endpoint, metric="p95", limit=SLO_MS, value=v.after.p95, met=v.after.p95 <= SLO_MS)
            for v in verdicts
        ]
        return CompareResult(verdicts=verdicts, slo=slo)

    @activity.defn(name="measure_wire_bytes")
    async def measure_wire_bytes(self, request: WireBytesRequest) -> WireBytesResult:
        return WireBytesResult(bytes={e: 1000.0 for e in request.endpoints})

    @activity.defn(name="check_guard")
    async def check_guard(self, request: GuardRequest) -> GuardResult:
        breached = self.service.guard_breaches.pop(0) if self.service.guard_breaches else False
        self._note(f"guard {request.watch.label} {'breached' if breached else 'held'}")
        return GuardResult(
            breached=breached, reasons=["search p95 x3.0 over the validated value (fake)"] if breached else []
        )

    @activity.defn(name="send_alert")
    async def send_alert(self, request: AlertRequest) -> AlertResult:
        self._note(f"alert {request.kind.value}")
        return AlertResult(delivered=False, detail="no webhook (fake)")

    @activity.defn(name="write_report")
    async def write_report(self, request: ReportRequest) -> ReportResult:
        html, markdown = self.folder / "report.html", self.folder / "report.md"
        html.write_text(f"<p>{request.status.outcome}</p>")
        markdown.write_text(request.status.outcome)
        return ReportResult(html_path=str(html), markdown_path=str(markdown))

    def all(self) -> list[Callable[..., Any]]:
        return [
            getattr(self, name) for name in dir(self) if hasattr(getattr(self, name), "__temporal_activity_definition")
        ]


def fake_tier_settings(temporal_address: str, folder: Path) -> Settings:
    """A fast-tier test's settings: its own data folder and task queues on the fast tier's Temporal server."""
    return Settings(
        home=folder / "ratchet",
        temporal_address=temporal_address,
        task_queue_prefix=f"f{uuid.uuid4().hex[:8]}",
        otlp_port=free_port(),
    )


@contextlib.asynccontextmanager
async def fake_workers(client: Client, settings: Settings, service: FakeService, folder: Path) -> AsyncIterator[None]:
    """The real campaign and rollout workflows, and the fake activities on every role's queue."""
    # Planning and the campaign's record are the real ones: pure logic and the store, both local and quick, and
    # what lets campaigns learn from earlier ones here too.
    real = [
        AnalysisActivities(settings).plan_changes,
        AnalysisActivities(settings).judge_watch,
        RecordActivities(settings.resolved_store_url).record_campaign,
    ]
    activities = [*FakeActivities(service, folder).all(), *real]
    workers = [
        Worker(
            client,
            task_queue=campaign_queue(settings),
            workflows=[CampaignWorkflow, RolloutWorkflow, TargetLockWorkflow, WatchWorkflow],
            workflow_runner=WORKFLOW_RUNNER,
        )
    ]
    workers += [Worker(client, task_queue=settings.task_queue(role.value), activities=activities) for role in Role]
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(worker)
        yield
