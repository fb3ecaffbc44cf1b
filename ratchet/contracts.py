"""Payloads that travel between the CLI, the campaign workflow and the role activities.

One model in and one out per call, so fields can be added compatibly. They stay small:
bulk evidence (samples, plans) lives in the store and is referred to by id.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from ratchet.config.common import FindingType, Phase, Role
from ratchet.config.playbook import AlertKind, Alerts, Costs, Playbook, Validation, WorkflowAnalysis
from ratchet.config.target import Lever, LeverParameter, Target
from ratchet.database.models import InspectionSummary


class Payload(BaseModel):
    """Base of every payload: unknown fields are ignored so old histories still replay."""


# ---------------------------------------------------------------- measurement


class EndpointStats(Payload):
    """Exact latency percentiles of one endpoint in one load run (ms), from the raw samples."""

    endpoint: str
    requests: int
    errors: int
    error_rate: float
    unanswered: int = Field(0, description="Requests that got no HTTP answer at all (refused, reset, timed out).")
    p50: float
    p95: float
    p99: float
    mean: float


class StressPlan(Payload):
    """The steps of a stress run and the conditions at which k6 aborts it."""

    rates: list[float]
    step_s: float
    abort_error_rate: float
    abort_p95_ms: float
    slo_p95_ms: float | None = Field(description="A step meets the targets with its p95 under this.")
    max_error_rate: float = Field(description="...and its error rate at most this.")
    max_latency_growth: float | None = Field(
        None,
        description="Set (a capacity ramp): a step meets the targets only with its requests' mean latency at most "
        "this many times the first step's...",
    )
    min_latency_growth_ms: float = Field(0.0, description="...or grown by less than this (ms).")
    max_dropped_share: float = Field(
        0.0,
        description="Dropped iterations that still meet the targets, as a share of the step's asked requests "
        "(a capacity ramp: k6 may drop one while it starts VUs as the rate jumps).",
    )


class LoadTestRequest(Payload):
    campaign_id: str
    label: str = Field(description="baseline, validation, guard-1, ...")
    target: Target
    rate: float
    duration_s: float
    warmup_s: float
    max_vus: int
    request_timeout_s: float
    stress: StressPlan | None = Field(None, description="Set: ramp the rate in steps instead of holding `rate`.")
    bounded_memory: bool = Field(
        False, description="Soak: k6 keeps no summary and no thresholds; progress comes from the sample stream."
    )
    focus: dict[str, float] = Field(
        default_factory=dict,
        description="Endpoint -> requests per second: these endpoints get their own rate (a validation's "
        "endpoints under test); the rest of `rate` goes to the others by weight.",
    )
    roots_only: bool = Field(
        False,
        description="The run's spans are read for each request's root span only (a validation arm's server-side "
        "time): their collection ends once every answered request's root has arrived, not after the settle.",
    )


class ValidationLoadRequest(Payload):
    """Size a validation's load: the requests per run each endpoint under test needs to decide."""

    campaign_id: str
    baseline_run_id: str
    endpoints: list[str]
    target: Target
    playbook: Playbook


class ValidationLoad(Payload):
    """The focused load of a validation: a rate per endpoint under test, what it needed, and what it can detect."""

    focus: dict[str, float] = Field(description="Endpoint -> requests per second.")
    needed_per_run: dict[str, int] = Field(description="Requests per run each endpoint needs to decide.")
    capped: bool = Field(False, description="The load's rate could not give every endpoint what it needs.")
    note: str = ""


class GeneratorRequest(Payload):
    """One load generator's share of a split load test (k6 execution segment ``index`` of ``count``)."""

    request: LoadTestRequest
    index: int
    count: int
    start_at: datetime = Field(description="Every generator resumes its paused k6 at this instant.")


class GeneratorResult(Payload):
    index: int
    started_at: datetime
    ended_by_itself: bool
    notes: list[str] = Field(default_factory=list)


class SplitLoadTest(Payload):
    """A split load test whose generators have finished: merge and judge it."""

    request: LoadTestRequest
    generators: list[GeneratorResult]


class StressStep(Payload):
    """What one step of a stress run measured."""

    rate: float = Field(description="The arrival rate asked for (requests per second).")
    achieved_rate: float
    requests: int
    p95: float | None
    mean_ms: float | None = Field(None, description="Mean of the step's latencies (ms).")
    error_rate: float
    dropped: int = Field(description="Iterations k6 could not start: the load generator ran out of VUs.")
    met: bool
    why_not: str = ""


class StressReport(Payload):
    """The knee of a stress run: the highest rate that met the targets, and where things broke."""

    steps: list[StressStep]
    knee_rate: float | None = Field(
        description="Highest step rate, before the first failing step, that met the targets."
    )
    broke_at_rate: float | None = None
    break_reason: str = ""
    dropped_from_rate: float | None = Field(None, description="The first step rate with dropped iterations.")
    aborted: bool = Field(False, description="k6 stopped the run at its breaking condition before the last step.")


class ResourceSummary(Payload):
    """The target's processes during one load run, from 1 Hz samples (CPU in percent of one core)."""

    samples: int
    processes: int
    cpu_percent_median: float
    cpu_percent_max: float
    rss_mb_max: float
    threads_max: int
    cores: int
    cpu_percent_mean: float | None = Field(None, description="Mean of the per-second CPU (runs before: None).")
    rss_mb_mean: float | None = Field(None, description="Mean of the per-second resident memory.")
    memory_total_mb: float | None = Field(None, description="The host's RAM, for memory as a share of it.")


class CacheLookups(Payload):
    """One declared cache's lookups during a load run, from its published hit and miss counters."""

    cache: str
    hits: float
    misses: float

    @property
    def lookups(self) -> float:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups > 0 else None


class LoadTestResult(Payload):
    run_id: str
    label: str
    requests: int
    duration_s: float
    interrupted: bool = False
    endpoints: list[EndpointStats]
    spans: int = 0
    resources: ResourceSummary | None = None
    caches: list[CacheLookups] = Field(default_factory=list, description="The target's caches: lookups in this run.")
    generators: int = 1
    start_skew_s: float = Field(0.0, description="Spread of the generators' start instants (split runs).")
    stress: StressReport | None = None
    notes: list[str] = Field(default_factory=list, description="What could not be measured, and why.")

    def stats(self, endpoint: str) -> EndpointStats | None:
        return next((s for s in self.endpoints if s.endpoint == endpoint), None)


# ---------------------------------------------------------------- findings and plans


class Finding(Payload):
    """A bottleneck found from measurements, with the evidence that shows it."""

    id: str
    type: FindingType
    endpoint: str
    severity: Literal["low", "medium", "high", "critical"]
    impact: float = Field(description="Share of the endpoint's latency x the endpoint's share of traffic.")
    estimated_gain_ms: float
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ProbeRequest(Payload):
    campaign_id: str
    target: Target
    playbook: Playbook


class PageVitals(Payload):
    """A page's web vitals and weight: medians over its visits."""

    endpoint: str
    url: str
    visits: int
    profile: str = Field("", description="The device emulated (mobile, desktop); empty: the browser as it is.")
    fcp_ms: float | None = None
    lcp_ms: float | None = None
    cls: float | None = None
    inp_ms: float | None = None
    ttfb_ms: float | None = None
    requests: float = Field(0, description="Requests per visit (the page and everything it loaded).")
    bytes: float = Field(0, description="Page weight: bytes of the page and what it loaded, per visit.")
    failed_requests: float = Field(0, description="Requests per visit that answered 4xx/5xx or failed.")
    failed_urls: dict[str, str] = Field(
        default_factory=dict, description="Each URL that failed, with its status (0: no answer): what to fix."
    )
    resources: dict[str, int] = Field(default_factory=dict, description="Bytes per resource URL (first visit).")
    lcp_samples: list[float] = Field(default_factory=list, description="Each visit's LCP (ms).")
    fcp_samples: list[float] = Field(default_factory=list, description="Each visit's FCP (ms).")

    def vital(self, name: str) -> float | None:
        return getattr(self, f"{name}_ms" if name != "cls" else "cls")


class PageLoadRequest(Payload):
    """Measure the named pages on the playbook's page_load profiles (after the changes)."""

    campaign_id: str
    target: Target
    playbook: Playbook
    pages: list[str]
    label: str = Field("after", description="Names the measurement's files beside the campaign's runs.")
    before: list[PageVitals] = Field(default_factory=list, description="What to compare with (the probe's).")


class PageLoadResult(Payload):
    pages: list[PageVitals] = Field(default_factory=list)
    checks: list[SloCheck] = Field(default_factory=list, description="The targets, read on these visits.")
    verdicts: list[ServiceVerdict] = Field(default_factory=list, description="Against ``before``.")
    notes: list[str] = Field(default_factory=list)


class BehaviourRequest(Payload):
    """Record (during assessment) or check (after changes) what the target answers."""

    campaign_id: str
    target: Target


class BehaviourSummary(Payload):
    file: str
    answers: int
    scenarios: int
    notes: list[str] = Field(default_factory=list)


class BehaviourCheck(Payload):
    same: bool
    differences: list[str] = Field(default_factory=list)


class ProbeSummary(Payload):
    """What probing the target's answers gave; the whole report is in ``file``."""

    file: str
    endpoints: int
    burst_run_id: str = ""
    burst_spans: int = 0
    pages: list[PageVitals] = Field(default_factory=list, description="Web vitals of the target's pages.")
    page_loads: list[PageVitals] = Field(default_factory=list, description="The pages on slo.page_load's devices.")
    notes: list[str] = Field(default_factory=list)


class AssessRequest(Payload):
    campaign_id: str
    baseline: LoadTestResult
    target: Target
    playbook: Playbook
    probe: ProbeSummary | None = None
    load_shapes: list[LoadTestResult] = Field(default_factory=list)


class SloCheck(Payload):
    endpoint: str
    metric: str
    limit: float
    value: float
    met: bool
    at_least: bool = Field(False, description="The value must reach the limit (a hit rate), not stay below it.")

    @property
    def bound(self) -> str:
        """How the value must stand to the limit, as the report prints it."""
        return "≥" if self.at_least else "≤" if self.metric == "error_rate" else "<"


class BaselineAnomaly(Payload):
    """Whether one endpoint's baseline is unlike the endpoint's earlier baselines (an isolation forest over them)."""

    endpoint: str
    history: int = Field(description="Earlier baselines of the endpoint it was compared with.")
    checked: bool = Field(description="False: too little history to judge; `sentence` says how much there is.")
    anomalous: bool = False
    score: float | None = Field(
        None, description="Isolation score of this baseline (lower: more isolated; the forest's outliers: below -0.5)."
    )
    threshold: float | None = Field(
        None, description="Anomalous below this: the least usual earlier baseline's score minus a margin."
    )
    sentence: str = Field(description="The judgement in a sentence, with the numbers that stand out.")


class BlindSpot(Payload):
    """Something of the target Ratchet cannot see (an observability gap): what it hides and how to open it."""

    type: Literal["observability-gap"] = "observability-gap"
    kind: Literal["untraced", "no-spans", "no-database-spans", "orphan-spans", "sampled", "inside-activities"]
    endpoints: list[str] = Field(default_factory=list, description="The endpoints concerned; empty: all of them.")
    blind_to: list[str] = Field(description="The detectors and figures this gap hides.")
    summary: str
    advice: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    def sentence(self) -> str:
        where = f" ({', '.join(self.endpoints)})" if self.endpoints else ""
        return f"{self.summary}{where}: blind to {', '.join(self.blind_to)}. {self.advice}"


class AssessResult(Payload):
    findings: list[Finding]
    slo: list[SloCheck]
    database: InspectionSummary | None = Field(
        None, description="The baseline run's database inspection (the whole of it is in database.file)."
    )
    notes: list[str] = Field(default_factory=list, description="What the assessment could not look at, and why.")
    blind_spots: list[BlindSpot] = Field(
        default_factory=list, description="Observability gaps: what of the target the detectors could not see."
    )
    anomalies: list[BaselineAnomaly] = Field(
        default_factory=list,
        description="Per endpoint of the baseline, whether it is unlike the endpoint's earlier baselines.",
    )

    @property
    def targets_met(self) -> bool:
        return all(check.met for check in self.slo)

    @property
    def anomalous_baselines(self) -> list[BaselineAnomaly]:
        """The endpoints whose baseline is unlike their history: worth a look before the baseline is trusted."""
        return [a for a in self.anomalies if a.anomalous]


class Recommendation(Payload):
    """A proposed change: a lever to pull (or manual advice), ranked."""

    id: str
    finding_id: str
    endpoint: str
    title: str
    lever: Lever | None = Field(None, description="None: no lever can do it; the advice says what to do.")
    role: Role
    recommended: bool = Field(True, description="False for alternatives a person may still pick.")
    impact: float
    feasibility: float
    risk: Literal["low", "medium", "high"]
    effort: Literal["none", "low", "medium", "high"]
    predicted_gain_ms: float
    gain_source: Literal["rules", "learned"] = Field(
        "rules",
        description="rules: the finding's estimate x feasibility, ranked by impact x feasibility / risk; learned: "
        "predicted from earlier campaigns' outcomes, ranked by predicted gain x traffic share / risk.",
    )
    score: float
    rationale: str
    advice: str = ""
    finding_ids: list[str] = Field(
        default_factory=list, description="Every finding this lever addresses, the one it is ranked for first."
    )
    endpoints: list[str] = Field(default_factory=list, description="The endpoints of those findings.")
    conflicts_with: list[str] = Field(
        default_factory=list, description="Recommendations never applied in the same trial as this one."
    )


class PlanRequest(Payload):
    campaign_id: str
    findings: list[Finding]
    target: Target
    playbook: Playbook
    retry_disproved: bool = Field(
        False, description="Recommend levers again that earlier campaigns undid for no effect on the same finding."
    )


class PlanResult(Payload):
    recommendations: list[Recommendation]
    notes: list[str] = Field(default_factory=list, description="What planning held back, and why.")
    gain_model: str = Field(
        "rule-based",
        description="How the predicted gains were made, in a sentence: 'learned from 34 outcomes (cross-validated "
        "MAE 12 ms; the rules' 31 ms)' or 'rule-based: 3 outcomes stored, 20 needed'.",
    )


# ---------------------------------------------------------------- changes


class LeverCall(Payload):
    """Apply or roll back one lever for a campaign."""

    campaign_id: str
    change_id: str
    lever: Lever
    target: Target
    parameter: float | None = None
    for_measurement: bool = Field(
        False, description="Undone or re-applied for an arm of the validation, not as a decision of the saga."
    )
    percent: float | None = Field(None, description="A rollout lever's share of requests (0-100); None: all.")


class LeverOutcome(Payload):
    change_id: str
    lever: str
    action: Literal["apply", "rollback"]
    changed: bool = Field(description="False when the lever was already in the wanted state.")
    verified: bool
    detail: str


class ChangeState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    KEPT = "kept"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"


class Trial(Payload):
    """One trial of a tunable lever: the value it held and what a short load test measured."""

    value: float
    p95_ms: float | None = Field(None, description="The worst p95 of the lever's endpoints; None when it failed.")
    error_rate: float = 0.0
    failed: bool = False
    note: str = ""
    run_id: str = ""


class SuggestRequest(Payload):
    """Ask the optimizer for the next value of a tunable lever."""

    campaign_id: str
    lever: str
    parameter: LeverParameter
    trials: list[Trial]


class SuggestResult(Payload):
    value: float
    why: str


class BytesVerdict(Payload):
    """A change judged on what it claims to save: the bytes one of its endpoints sends, with it against without
    it (the other changes in place). Compression gains little latency on a fast link, and much on a slow one."""

    endpoint: str
    without_bytes: float = Field(description="Median wire bytes of the endpoint's answers without the change.")
    with_bytes: float = Field(description="...and with it.")
    verdict: Verdict
    explanation: str

    @property
    def ratio(self) -> float:
        return bytes_ratio(self.without_bytes, self.with_bytes)


def bytes_ratio(without: float, with_it: float) -> float:
    """With/without of an answer's wire bytes; 1 when there was nothing to shrink."""
    return with_it / without if without else 1.0


class WireBytesRequest(Payload):
    campaign_id: str
    target: Target
    endpoints: list[str]


class WireBytesResult(Payload):
    bytes: dict[str, float] = Field(description="Median wire bytes of each endpoint's answers (its examples).")
    freshness_s: dict[str, int] = Field(
        default_factory=dict,
        description="The shortest lifetime (s) any of its answers gave caches (Cache-Control max-age; 0: none).",
    )


class ChangeRecord(Payload):
    """One change of the campaign, from plan to its fate."""

    change_id: str
    recommendation_id: str
    lever: str
    kind: str
    role: Role
    endpoint: str
    endpoints: list[str] = Field(
        default_factory=list, description="Every endpoint the change addresses (empty: just ``endpoint``)."
    )
    state: ChangeState = ChangeState.PENDING
    parameter: float | None = Field(None, description="A tunable lever's value in effect (the best trial's).")
    trials: list[Trial] = Field(default_factory=list, description="A tunable lever's trials, in order.")
    attribution: list[EndpointVerdict] = Field(
        default_factory=list, description="Leave-one-out: its endpoints with it against without it (others in place)."
    )
    cost_effect_per_1000: float | None = Field(
        None, description="What this change alone saved per 1,000 requests (negative: added), from leave-one-out."
    )
    bytes_attribution: list[BytesVerdict] = Field(
        default_factory=list,
        description="For a change that addresses payload findings: those endpoints' wire bytes with it and without.",
    )
    applied_at: datetime | None = None
    rolled_back_at: datetime | None = None
    reason: str = ""


# ---------------------------------------------------------------- validation


class Verdict(StrEnum):
    IMPROVED = "improved"
    NOT_WORSE = "not worse"
    REGRESSED = "regressed"
    INCONCLUSIVE = "inconclusive"
    UNCHANGED = "unchanged"  # campaigns validated before the margins: no interval, "not worse" in effect


def ratio_digits(value: float) -> str:
    """An after/before ratio: two decimals, or two significant digits below 0.1 (0.012)."""
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.2g}"


class EndpointVerdict(Payload):
    """Before/after comparison of one endpoint, with the numbers behind the verdict."""

    endpoint: str
    before: EndpointStats
    after: EndpointStats
    p95_ratio: float
    p50_ratio: float
    p_value_faster: float = Field(description="One-sided Mann-Whitney: after is faster than before.")
    p_value_slower: float = Field(description="One-sided Mann-Whitney: after is slower than before.")
    hodges_lehmann_ms: float = Field(description="Median of pairwise differences after - before (ms).")
    metric: str = Field("p95", description="The percentile the ratio and its interval are about.")
    ratio: float | None = Field(None, description="After/before of the metric, as the mean of per-run values.")
    ratio_low: float | None = Field(None, description="Lower end of the ratio's hierarchical bootstrap interval.")
    ratio_high: float | None = Field(None, description="Upper end of the interval (None: unbounded, no data).")
    median_ratio: float | None = Field(
        None,
        description="After/before of the typical request (the median, mean of per-run values), beside a tail "
        "metric: a slowdown of every request shows there long before the tail's noisy interval can tell.",
    )
    median_ratio_low: float | None = None
    median_ratio_high: float | None = None
    confidence: float | None = Field(None, description="The interval's confidence level.")
    runs_before: int = 1
    runs_after: int = 1
    detectable_change: float | None = Field(
        None,
        description="The smallest improvement (a share) these runs detect with power 0.9: larger than the bar, "
        "the sample was too small to decide.",
    )
    measured_at: Literal["client", "server"] = Field(
        "client",
        description="Whose clock the numbers are: the load generator's (client), or the service's own root spans "
        "(server: the handler's time, without what the host and the load generator add around it).",
    )
    verdict: Verdict
    explanation: str

    def ratio_text(self) -> str:
        """x0.42 [0.38-0.47]; the p95 ratio alone for verdicts from before the intervals."""
        if self.ratio is None or self.ratio_low is None:
            return f"x{ratio_digits(self.p95_ratio)}"
        high = ratio_digits(self.ratio_high) if self.ratio_high is not None else "?"
        return f"x{ratio_digits(self.ratio)} [{ratio_digits(self.ratio_low)}-{high}]"


class CompareRequest(Payload):
    campaign_id: str
    baseline: LoadTestResult
    candidate: LoadTestResult
    playbook: Playbook
    target: Target


class ValidationOutcome(StrEnum):
    MET = "met"
    PARTIAL = "partial"
    FAILED = "failed"
    REGRESSED = "regressed"


class ArmCost(Payload):
    """What one arm's requests cost, per 1,000, from the target's resource samples and its outbound calls."""

    requests: int
    per_1000: float = Field(description="Total per 1,000 requests.")
    parts: dict[str, float] = Field(
        default_factory=dict, description="Per 1,000 requests: cpu, memory, requests, and calls to each host."
    )


class CostComparison(Payload):
    """Cost per 1,000 requests without the changes and with them (the validation's arms: same load, same mix)."""

    currency: str
    before: ArmCost
    after: ArmCost
    note: str = Field("", description="What was not priced, and why (no resource samples, untraced calls).")

    @property
    def saved_per_1000(self) -> float:
        return self.before.per_1000 - self.after.per_1000


class ServiceVerdict(Payload):
    """Before/after comparison of one service-level target (CPU, memory, database p95, a cache's hit rate) over
    the validation's interleaved arms."""

    subject: str = Field(description="(target processes), (database) or (cache NAME).")
    metric: str = Field(description="The playbook's target it is about, e.g. cpu_percent or cache_hit_rate.")
    before: float
    after: float
    low: float = Field(description="Interval of after/before (a hit rate: after - before), low end.")
    high: float
    difference: bool = Field(False, description="The interval is of after - before, not of after / before.")
    verdict: Verdict
    limit: float
    met_before: bool
    met_after: bool
    explanation: str


class CompareResult(Payload):
    verdicts: list[EndpointVerdict]
    slo: list[SloCheck]
    service: list[ServiceVerdict] = Field(default_factory=list, description="Service-level targets before/after.")
    soak: SoakComparison | None = Field(None, description="Two soak runs compared: their drift over time.")
    cost: CostComparison | None = Field(None, description="Set when the playbook prices anything (costs:).")


class ArmRun(Payload):
    """One interleaved validation run: which arm, and its per-endpoint numbers."""

    arm: Literal["before", "after"]
    run: LoadTestResult


class ArmsRequest(Payload):
    """Compare two arms of interleaved runs, named by their run ids (the samples are in the store)."""

    campaign_id: str
    before_run_ids: list[str]
    after_run_ids: list[str]
    playbook: Playbook


class GuardRequest(Payload):
    campaign_id: str
    validated: LoadTestResult
    watch: LoadTestResult
    playbook: Playbook


class GuardResult(Payload):
    breached: bool
    reasons: list[str]


# ---------------------------------------------------------------- status, approvals


class PhaseRecord(Payload):
    phase: Phase
    title: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: str = "pending"
    note: str = ""


class Event(Payload):
    at: datetime
    message: str


class GateState(Payload):
    phase: Phase
    since: datetime
    deadline: datetime
    approvers: list[str]
    escalated: bool = False
    question: str = Field("", description="What the person is asked to decide, when it is more than the phase.")


class ApprovalInput(Payload):
    """An approval from a person (CLI, temporal CLI, any client)."""

    phase: Phase
    approver: str = Field(min_length=1)
    only: list[str] | None = Field(None, description="Approve only these recommendation ids.")
    comment: str = ""
    signed_at: datetime | None = Field(None, description="When the approver signed (playbooks with signed approvals).")
    signature: str | None = Field(None, description="The approver's ed25519 signature (ratchet.approvals), base64.")


class RejectionInput(Payload):
    phase: Phase | None = Field(None, description="The waiting phase; any waiting phase when omitted.")
    approver: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    signed_at: datetime | None = Field(None, description="When the approver signed (playbooks with signed approvals).")
    signature: str | None = Field(None, description="The approver's ed25519 signature (ratchet.approvals), base64.")


class GateDecision(Payload):
    """What a gate resolved to, as recorded in the status."""

    phase: Phase
    decision: Literal["approved", "rejected", "timed-out", "auto-approved"]
    by: str
    at: datetime
    only: list[str] | None = None
    note: str = ""


class CampaignState(StrEnum):
    RUNNING = "running"
    WAITING = "waiting-approval"
    COMPLETED = "completed"
    REJECTED = "rejected"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled-back"
    FAILED = "failed"
    CANCELLED = "cancelled"


class CampaignInput(Payload):
    campaign_id: str = Field(description="The campaign's id; empty: its workflow id (a schedule's runs).")
    playbook: Playbook
    target: Target
    playbook_file: str = ""
    target_file: str = ""
    task_queue_prefix: str = "ratchet"
    auto_approve_as: str | None = Field(None, description="Approve every gate as this name (demo, CI).")
    auto_approve_signed_at: datetime | None = None
    auto_approve_signature: str | None = Field(
        None, description="With signed approvals: the auto-approver's signature over this campaign's auto-approval."
    )
    retry_disproved: bool = Field(
        False, description="Recommend levers again that earlier campaigns undid for no effect on the same finding."
    )
    queue: bool = Field(
        False,
        description="Another campaign runs on the target: wait for it to end (else the campaign is refused).",
    )


class SoakDrift(Payload):
    """How one soak run changed from its start to its end: the requests' p95 and the target's memory, each read
    in equal windows of the run with a trend test over the windows (Kendall's tau)."""

    latency_growth: float | None = Field(None, description="Fitted last window's p95 / first window's (Theil-Sen).")
    latency_p: float | None = Field(None, description="One-sided p of a rising p95 over the windows.")
    memory_growth: float | None = Field(None, description="Fitted growth of memory over the run, as a share.")
    memory_mb_per_min: float | None = None
    memory_p: float | None = None
    latency_drifts: bool = False
    memory_grows: bool = False

    def said(self) -> str:
        parts = []
        if self.latency_growth is not None:
            parts.append(
                f"p95 x{self.latency_growth:.2f} from start to end{' (drifting)' if self.latency_drifts else ''}"
            )
        if self.memory_mb_per_min is not None:
            parts.append(f"memory {self.memory_mb_per_min:+.1f} MB/min{' (growing)' if self.memory_grows else ''}")
        return ", ".join(parts) or "too few requests to tell"


class SoakComparison(Payload):
    before: SoakDrift
    after: SoakDrift
    verdict: Literal["improved", "unchanged", "regressed"]
    sentence: str


class ShapeRerun(Payload):
    """A load shape of the assessment run again after the changes: its verdict and why, in a sentence."""

    label: str = Field(description="peak, stress or soak.")
    verdict: Literal["improved", "unchanged", "regressed"]
    sentence: str
    before_run_id: str
    after_run_id: str


class CampaignStatus(Payload):
    """Everything a person or a program wants to know about a campaign (the status query)."""

    campaign_id: str
    target: str
    playbook: str
    state: CampaignState = CampaignState.RUNNING
    phase: Phase | None = None
    outcome: str = ""
    outcome_detail: str = ""
    phases: list[PhaseRecord] = Field(default_factory=list)
    waiting: GateState | None = None
    gates: list[GateDecision] = Field(default_factory=list)
    findings: list[Finding] = Field(default_factory=list)
    recommendations: list[Recommendation] = Field(default_factory=list)
    baseline: LoadTestResult | None = None
    load_shapes: list[LoadTestResult] = Field(
        default_factory=list, description="The assessment's peak, stress and soak runs, as the playbook asks."
    )
    capacity: LoadTestResult | None = Field(None, description="The ramp that chose the rate (`load.rate: auto`).")
    load_rate: str = Field("", description="The rate the load ran at and, for `auto`, why (one sentence).")
    load_rps: float | None = Field(None, description="That rate in requests per second (`auto` resolved).")
    database: InspectionSummary | None = Field(None, description="The baseline's database inspection.")
    pages: list[PageVitals] = Field(default_factory=list, description="Web vitals of the target's pages (the probe).")
    validation: LoadTestResult | None = None
    validation_rules: Validation | None = Field(None, description="The playbook's rules the verdicts followed.")
    workflow_costs: WorkflowAnalysis | None = Field(
        None, description="How a workflow call's cost is read: the playbook's cost field and prices by variant."
    )
    gain_model: str = Field("", description="Where planning's predicted gains came from (rules or a learned model).")
    cost: CostComparison | None = Field(None, description="Cost per 1,000 requests before and after the changes.")
    cost_rules: Costs | None = Field(None, description="The playbook's prices the cost and the return were read with.")
    watch_id: str = Field("", description="The standing watch a partial result was put under.")
    shape_reruns: list[ShapeRerun] = Field(
        default_factory=list, description="The peak, stress and soak loads again after the changes (rerun_shapes)."
    )
    decision_tier: str = Field(
        "", description="What the findings called for: quick-fix, ranked-plan, architecture (escalated) or manual."
    )
    decision_note: str = Field("", description="Why that tier: the bottlenecks and levers, or the gap no lever closes.")
    anomalies: list[BaselineAnomaly] = Field(
        default_factory=list, description="The baseline per endpoint against its history (IsolationForest)."
    )
    assessment_notes: list[str] = Field(
        default_factory=list,
        description="What the assessment could not see or decide, and why (no spans, too few requests, contention).",
    )
    blind_spots: list[BlindSpot] = Field(
        default_factory=list,
        description="Observability gaps of the target: what Ratchet could not see, and how to fix it.",
    )
    rollout: RolloutResult | None = Field(None, description="The gradual rollout to production, when there was one.")
    validation_runs: list[ArmRun] = Field(
        default_factory=list, description="The interleaved validation runs, in the order they ran."
    )
    validation_load: ValidationLoad | None = Field(
        None, description="The rates the validation gave the endpoints under test, and what they needed."
    )
    guard_reference: LoadTestResult | None = Field(
        None, description="The bake guard's reference: the kept changes, measured after every undo."
    )
    verdicts: list[EndpointVerdict] = Field(default_factory=list)
    slo_before: list[SloCheck] = Field(default_factory=list)
    slo_after: list[SloCheck] = Field(default_factory=list)
    page_loads: list[PageVitals] = Field(
        default_factory=list, description="The pages on slo.page_load's devices before the changes (the probe)."
    )
    page_loads_after: list[PageVitals] = Field(default_factory=list, description="…and after the changes.")
    service_verdicts: list[ServiceVerdict] = Field(
        default_factory=list, description="Service-level targets (CPU, memory, database, caches) before/after."
    )
    changes: list[ChangeRecord] = Field(default_factory=list)
    guard: GuardResult | None = None
    events: list[Event] = Field(default_factory=list)
    report_html: str = ""
    report_markdown: str = ""

    @property
    def finished(self) -> bool:
        return self.state not in (CampaignState.RUNNING, CampaignState.WAITING)


class ReportRequest(Payload):
    status: CampaignStatus


class ReportResult(Payload):
    html_path: str
    markdown_path: str


# ---------------------------------------------------------------- alerts


class AlertRequest(Payload):
    """One webhook alert; ``ratchet.alerts.alert_request`` builds it from the playbook's ``alerts``."""

    campaign_id: str
    kind: AlertKind
    title: str = Field(description="One line, e.g. 'Regression on orders-by-email'.")
    text: str = Field(
        "",
        description="A few short lines; Slack mrkdwn (*bold*, `code`) works, while <, > and & are escaped "
        "(shown as written), so a mention goes in `mention`.",
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="A few facts, name to value: target, phase, p95 before and after..."
    )
    mention: str = Field("", description="Put before the text as written (<!here>, <@U0123ABC>).")
    webhook_url: str
    timeout_s: float = Field(10.0, gt=0, description="How long one attempt waits for the webhook's answer.")


class AlertResult(Payload):
    delivered: bool
    status: int | None = Field(None, description="The webhook's HTTP status; None when nothing was sent.")
    detail: str = Field(description="What happened, for the campaign's events (never the webhook's URL).")


class EndpointNoise(Payload):
    """How much one endpoint's per-run percentile moves between identical runs (``ratchet calibrate``)."""

    endpoint: str
    runs: int
    requests_per_run: int
    metric_ms: float | None = Field(None, description="The mean per-run value of the playbook's metric.")
    run_spread: float | None = Field(None, description="Standard deviation of the log per-run metric.")
    noise_floor: float | None = Field(
        None, description="Half-width of the ratio's interval at the playbook's runs per arm (0.08: +-8%)."
    )
    runs_needed: int | None = Field(None, description="Runs per arm to see the asked slowdown as regressed.")
    aa_low: float | None = Field(None, description="The runs split in two (A/A): the ratio's interval.")
    aa_high: float | None = None
    note: str = ""


class CalibrationInput(Payload):
    calibration_id: str
    target: Target
    playbook: Playbook
    runs: int
    detect: float
    power: float
    task_queue_prefix: str


class CalibrateRequest(Payload):
    calibration_id: str
    run_ids: list[str]
    playbook: Playbook
    detect: float
    power: float


class CalibrationResult(Payload):
    calibration_id: str
    target: str
    playbook: str
    runs: int
    run_seconds: float
    rate: float = Field(0.0, description="Requests per second of every run (`load.rate: auto` resolved).")
    detect: float
    power: float
    endpoints: list[EndpointNoise] = Field(default_factory=list)
    runs_per_arm: int | None = Field(None, description="Recommended: enough for every measurable endpoint.")
    regression_margin: float | None = Field(None, description="Recommended: above every noise floor at those runs.")
    notes: list[str] = Field(default_factory=list)


class RolloutChange(Payload):
    """A kept change to roll out to production."""

    change_id: str
    lever: Lever
    role: Role
    parameter: float | None = None


class RolloutInput(Payload):
    campaign_id: str
    changes: list[RolloutChange]
    production: Target = Field(description="The target at its production address.")
    playbook: Playbook
    validated: LoadTestResult = Field(
        description="The validation's after-arm run: the guard's reference for rollouts started before the "
        "rollout measured production's own baseline."
    )
    task_queue_prefix: str


class RolloutStep(Payload):
    percent: float
    run_id: str | None = None
    guard: GuardResult | None = None
    decided_by: str = Field("", description="Who promoted or aborted at this step (empty: the guard decided).")


class RolloutResult(Payload):
    outcome: Literal["completed", "rolled-back", "aborted"]
    steps: list[RolloutStep] = Field(default_factory=list)
    reason: str = ""
    baseline_run_id: str | None = Field(None, description="Production measured before the first step.")


class RolloutDecision(Payload):
    """A person's promote or abort of a running rollout (an update on the rollout workflow)."""

    by: str = Field(min_length=1)
    reason: str = ""
    signed_at: datetime | None = Field(None, description="When it was signed (playbooks with signed approvals).")
    signature: str | None = Field(None, description="The approver's ed25519 signature (ratchet.approvals), base64.")


class WatchPoint(Payload):
    """One probe load of the watch: when it ran and each endpoint's p95 (ms)."""

    at: datetime
    run_id: str
    p95: dict[str, float]
    requests: int


class WatchDrift(Payload):
    """A degradation the watch found: an endpoint's p95 on a new, higher level since ``since``."""

    endpoint: str
    since: datetime
    before_ms: float
    after_ms: float
    shift: float = Field(description="after / before - 1.")
    p_value: float
    sentence: str


class WatchJudgeRequest(Payload):
    """The series so far and the rules, for the watch's judgement (pure; run as an activity: numpy)."""

    points: list[WatchPoint]
    playbook: Playbook
    now: datetime


class WatchJudgement(Payload):
    drifts: list[WatchDrift] = Field(default_factory=list)


class WatchInput(Payload):
    """A standing watch of one target; carried across continue-as-new with what it has seen."""

    watch_id: str
    playbook: Playbook
    target: Target
    task_queue_prefix: str = "ratchet"
    points: list[WatchPoint] = Field(default_factory=list, description="The latest probes, oldest first.")
    alerted: list[str] = Field(
        default_factory=list, description="Drifts already alerted, as 'endpoint@since': each is alerted once."
    )
    campaigns: list[str] = Field(default_factory=list, description="Campaigns the watch launched, oldest first.")
    probes: int = Field(0, description="Probe loads run since the watch started, all runs included.")
    runs: int = Field(1, description="This run's number: 1, then one more per continue-as-new.")
    events: list[str] = Field(default_factory=list, description="The latest events, all runs included.")


class WatchStatus(Payload):
    """What the watch query answers."""

    watch_id: str
    target: str
    probes: int
    runs: int
    latest: WatchPoint | None = None
    drifts: list[WatchDrift] = Field(default_factory=list, description="Those of the latest judgement.")
    alerted: list[str] = Field(default_factory=list)
    campaigns: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list, description="The latest events, all runs included.")


class WeeklyRequest(Payload):
    """Write a target's weekly report from the store."""

    target: str


class WeeklyResult(Payload):
    html_path: str
    markdown_path: str
    summary: str


class WeeklyInput(Payload):
    """A scheduled weekly report: the target, and where the playbook posts alerts."""

    target: str
    alerts: Alerts
    task_queue_prefix: str = "ratchet"
