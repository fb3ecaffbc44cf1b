"""The playbook: a reusable description of how to run a campaign (gates, targets, load, bars)."""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import Field, NonNegativeFloat, ValidationInfo, field_validator, model_validator

from ratchet.approvals import public_key_problem
from ratchet.config.common import Phase, StrictModel
from ratchet.config.durations import Duration
from ratchet.errors import LocatedValueError
from ratchet.k6.page_profiles import PageProfile
from ratchet.secrets import holds_reference

GATEABLE_PHASES = (Phase.PLANNING, Phase.OPTIMIZATION, Phase.FRONTEND, Phase.VALIDATION, Phase.DEPLOYMENT)


class TimeoutAction(StrEnum):
    """What a gate does when nobody answers in time."""

    ABORT = "abort"
    ESCALATE = "escalate"


class Gate(StrictModel):
    """A point where a person must approve before the campaign goes on."""

    timeout: Duration = Field(timedelta(hours=24), description="How long to wait for an answer.")
    on_timeout: TimeoutAction = Field(
        TimeoutAction.ABORT,
        description="abort: roll back and stop; escalate: tell the escalation approvers and wait once more.",
    )
    escalate_to: list[str] = Field(
        default_factory=list, description="Extra approvers allowed to answer after an escalation."
    )
    escalation_timeout: Duration = Field(
        timedelta(hours=24), description="How long to wait after escalating before aborting."
    )


class Slo(StrictModel):
    """Service-level targets for one endpoint (or for all, as defaults)."""

    p95_ms: float | None = Field(None, gt=0, description="The 95th percentile latency must stay below this.")
    p99_ms: float | None = Field(None, gt=0, description="The 99th percentile latency must stay below this.")
    max_error_rate: float = Field(0.01, ge=0, le=1, description="Largest share of failed requests allowed.")


class ResourceSlo(StrictModel):
    """Targets for the target's processes under the baseline load (the source material's: CPU under 70%, 85% at
    peak; memory under 80%, 90% at peak). CPU in percent of the host's cores, memory of its RAM; unset: not
    checked."""

    cpu_percent: float | None = Field(None, gt=0, le=100, description="Mean CPU of the target's processes.")
    cpu_peak_percent: float | None = Field(None, gt=0, le=100, description="Highest one-second CPU.")
    memory_percent: float | None = Field(None, gt=0, le=100, description="Mean resident memory.")
    memory_peak_percent: float | None = Field(None, gt=0, le=100, description="Highest resident memory.")


class PageLoadSlo(StrictModel):
    """Targets for the target's pages (GET endpoints answering HTML), measured in Chromium on each device profile
    (first visits, medians): the source material's page load, Google's "good" bounds by default."""

    lcp_ms: float | None = Field(2500, gt=0, description="Largest Contentful Paint must stay below this.")
    fcp_ms: float | None = Field(1800, gt=0, description="First Contentful Paint must stay below this.")
    profiles: list[PageProfile] = Field(
        default_factory=lambda: [PageProfile.MOBILE, PageProfile.DESKTOP],
        min_length=1,
        description="Devices: mobile (a mid-range phone on slow 4G, CPU slowed 4x) and desktop (a fast link).",
    )
    visits: int = Field(5, ge=3, le=20, description="First visits per page and profile, before and after.")


class SloTargets(StrictModel):
    """Defaults for every endpoint, overridden per endpoint name; targets for the target's resources."""

    default: Slo = Field(default_factory=Slo)
    endpoints: dict[str, Slo] = Field(default_factory=dict)
    resources: ResourceSlo = Field(default_factory=ResourceSlo)
    db_p95_ms: float | None = Field(
        None,
        gt=0,
        description="The 95th percentile of the database statements' time, read from the target's statement "
        "spans under the baseline load. Unset: not checked.",
    )
    page_load: PageLoadSlo | None = Field(
        None, description="Targets for the target's pages in Chromium, per device profile. Unset: not checked."
    )
    cache_hit_rate: float | None = Field(
        None,
        gt=0,
        le=1,
        description="The share of lookups each of the target's caches (its caches:) must serve from the cache, "
        "under the baseline load (the source material's: above 0.9). Unset: not checked.",
    )
    throughput_rps: float | None = Field(
        None,
        gt=0,
        description="The rate (requests per second) the service must sustain: the knee of the stress run "
        "(load.stress) must reach it. Unset: not checked.",
    )
    architecture_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A knee below this share of throughput_rps that no lever addresses is an architecture-level "
        "problem: the campaign escalates it to the planning gate's escalate_to instead of trying levers.",
    )

    def for_endpoint(self, name: str) -> Slo:
        """The targets that apply to an endpoint: its own where given, the defaults otherwise."""
        own = self.endpoints.get(name)
        if own is None:
            return self.default
        merged = self.default.model_dump() | own.model_dump(exclude_unset=True)
        return Slo.model_validate(merged)


class PeakProfile(StrictModel):
    """A constant-arrival-rate run at a multiple of the baseline rate (the busy hour)."""

    factor: float = Field(2.0, gt=1, le=50, description="Rate as a multiple of the baseline rate.")
    duration: Duration | None = Field(None, description="How long to send load; unset: the baseline's duration.")


class StressProfile(StrictModel):
    """A stepped, ramping arrival rate that stops by itself at a breaking condition and reports the knee."""

    start_rate: float | None = Field(
        None, gt=0, le=100_000, description="Requests per second of the first step; unset: half the baseline rate."
    )
    max_rate: float | None = Field(
        None, gt=0, le=100_000, description="Requests per second of the last step; unset: 8x the baseline rate."
    )
    steps: int = Field(6, ge=2, le=50, description="Number of equal rate steps from start_rate to max_rate.")
    step: Duration = Field(timedelta(seconds=10), description="How long each step holds its rate.")
    max_error_rate: float = Field(
        0.05, gt=0, le=1, description="Breaking condition: k6 aborts once this share of requests has failed."
    )
    max_p95_ms: float | None = Field(
        None,
        gt=0,
        description="Breaking condition: k6 aborts once the p95 passes this; unset: 4x the default SLO p95 "
        "(1000 ms without one). A step meets the targets with its p95 under the SLO p95.",
    )

    @model_validator(mode="after")
    def _rates_rise(self) -> Self:
        if self.start_rate is not None and self.max_rate is not None and self.max_rate <= self.start_rate:
            raise ValueError("max_rate must be above start_rate")
        if self.step.total_seconds() < 2:
            raise ValueError("step must be at least 2s (each step needs its own samples)")
        return self


class AutoRate(StrictModel):
    """How ``rate: auto`` finds the rate a target sustains: a short stepped ramp before the baseline.

    The rate doubles each step from ``max_rate / 2**(steps-1)`` up to ``max_rate``. A step is sustained when
    the target kept up (at least 90% of the rate achieved, under 1% dropped iterations, errors within the SLO) and its
    requests' mean latency stayed within ``max_latency_growth`` times the first step's: a queue in front of
    the handler (one event loop, a full worker pool, a busy CPU) adds its wait to every request (the mean of a
    single queue doubles near 50-60% busy). The baseline then runs at the highest step sustained without a break before it: at most half the
    rate at which the target broke."""

    max_rate: float = Field(
        40, gt=0, le=10_000, description="Requests per second the baseline never exceeds (the last step)."
    )
    steps: int = Field(4, ge=2, le=10, description="Steps of the ramp, each twice the rate of the one before.")
    step: Duration = Field(
        timedelta(seconds=5),
        description="How long each step holds its rate (the first step longer when needed for 30 requests).",
    )
    max_latency_growth: float = Field(
        2.0,
        gt=1,
        le=100,
        description="A step is sustained while its mean latency is at most this many times the first step's "
        "(2: the wait to be served at most as long as the work itself).",
    )
    min_growth_ms: float = Field(
        5.0,
        ge=0,
        description="...or grew by less than this (ms): a busy host moves a 2 ms mean past x2 without a queue.",
    )

    @model_validator(mode="after")
    def _long_enough_steps(self) -> Self:
        if self.step.total_seconds() < 2:
            raise ValueError("step must be at least 2s (each step needs its own samples)")
        return self

    def rates(self) -> list[float]:
        """The ramp's rates, lowest first, doubling up to ``max_rate``."""
        return [round(self.max_rate / 2 ** (self.steps - 1 - i), 3) for i in range(self.steps)]


class SoakProfile(StrictModel):
    """A long constant-arrival-rate run in bounded memory: k6 keeps no summary and no thresholds."""

    duration: Duration = Field(timedelta(minutes=30), description="How long to send load.")
    rate: float | None = Field(None, gt=0, le=10_000, description="Requests per second; unset: the baseline rate.")


class LoadProfile(StrictModel):
    """The baseline: a constant-arrival-rate load test split over the target's endpoints by weight.

    ``peak``, ``stress`` and ``soak`` are further shapes the assessment runs after the baseline when set.
    """

    rate: float | Literal["auto"] = Field(
        40,
        description="Requests per second over all endpoints (> 0), or 'auto': the highest rate up to "
        "auto.max_rate that the target sustains, found by a short ramp before the baseline.",
    )
    auto: AutoRate = Field(default_factory=AutoRate, description="How `rate: auto` finds the rate.")
    duration: Duration = Field(timedelta(seconds=20), description="How long to send load (after warm-up).")
    warmup: Duration = Field(timedelta(seconds=3), description="Load sent first and left out of the numbers.")
    max_vus: int = Field(100, ge=1, le=5000, description="Upper bound on k6 virtual users.")
    request_timeout: Duration = Field(timedelta(seconds=10), description="k6 gives up on a request after this.")
    generators: int = Field(
        1,
        ge=1,
        le=64,
        description="Split every load test over this many load generators (k6 execution segments, a "
        "synchronized start), each an activity on the load-generator task queue.",
    )
    peak: PeakProfile | None = Field(None, description="Also run a peak load (a multiple of the baseline rate).")
    stress: StressProfile | None = Field(None, description="Also ramp the rate until it breaks; reports the knee.")
    soak: SoakProfile | None = Field(None, description="Also run a long soak at a constant rate.")

    @field_validator("rate", mode="before")
    @classmethod
    def _rate_in_range(cls, rate: object) -> object:
        # One message for both forms (pydantic would name each branch of the union separately).
        valid = "a number of requests per second above 0 and at most 10000, or 'auto'"
        if rate == "auto":
            return rate
        if isinstance(rate, bool) or not isinstance(rate, float | int):
            raise ValueError(f"rate must be {valid} (got {rate!r})")
        if not 0 < rate <= 10_000:
            raise ValueError(f"rate must be {valid} (got {rate:g})")
        return rate

    @property
    def rps(self) -> float:
        """The rate in requests per second; ``rate: auto`` is resolved by the capacity ramp before anything
        reads it (a campaign or calibration replaces the playbook's load with the rate it found)."""
        if self.rate == "auto":
            raise ValueError("load.rate is 'auto': it is resolved by the capacity ramp before any load runs")
        return self.rate

    def with_rate(self, rate: float) -> LoadProfile:
        """This load at a fixed rate (what ``rate: auto`` resolved to)."""
        return self.model_copy(update={"rate": rate})

    @model_validator(mode="after")
    def _positive_duration(self) -> Self:
        if self.duration.total_seconds() < 1:
            raise ValueError("duration must be at least 1s")
        if self.stress is not None:
            # A default start or maximum may still cross an explicit one, at any rate `auto` may resolve to.
            for rate in (self.auto.rates()[0], self.auto.max_rate) if self.rate == "auto" else (self.rate,):
                self.stress_rates(rate)
        return self

    def stress_rates(self, rate: float | None = None) -> list[float]:
        """The request rate of each stress step, evenly spaced from the start rate to the maximum (defaults
        relative to ``rate``, the baseline's unless given)."""
        assert self.stress is not None
        base = self.rps if rate is None else rate
        start = self.stress.start_rate if self.stress.start_rate is not None else base / 2
        top = self.stress.max_rate if self.stress.max_rate is not None else base * 8
        if top <= start:
            raise ValueError(f"load.stress: max_rate {top:g} must be above the start rate {start:g}")
        steps = self.stress.steps
        return [round(start + (top - start) * i / (steps - 1), 3) for i in range(steps)]


class Detection(StrictModel):
    """Thresholds of the detectors; the defaults follow public reference rules."""

    min_table_rows: int = Field(
        10_000, ge=0, description="A full scan counts only on tables with at least this many rows."
    )
    slow_p95_ms: float | None = Field(
        None, gt=0, description="An endpoint is slow above this p95; unset: above its SLO p95 target."
    )
    min_latency_share: float = Field(
        0.05, ge=0, le=1, description="Ignore endpoints that carry less than this share of total latency."
    )
    dominant_latency_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Inspect an endpoint carrying this share of all serving time even when it meets its SLO.",
    )
    min_inspect_p50_ms: float = Field(
        10.0, ge=0, description="...if its median is at least this slow (fast endpoints are left alone)."
    )
    min_statement_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="A full scan is a finding only when its statement takes this share of the endpoint's time.",
    )
    # Trace detectors (reference rules: Sentry's performance issues; every one may be tuned here).
    min_traces: int = Field(3, ge=1, description="A pattern counts only when it recurs in this many traces.")
    min_trace_share: float = Field(
        0.5, gt=0, le=1, description="...and in at least this share of the endpoint's traced requests."
    )
    n_plus_one_min_repeats: int = Field(
        5, ge=2, description="N+1: at least this many sequential runs of one statement under one parent."
    )
    n_plus_one_min_total_ms: float = Field(50.0, ge=0, description="N+1: their total time at least this (ms)...")
    n_plus_one_min_share: float = Field(
        0.2, ge=0, le=1, description="...or at least this share of the request's latency."
    )
    sequential_min_saved_ms: float = Field(
        20.0, ge=0, description="Sequential calls: running them at once would save at least this (ms)..."
    )
    sequential_min_share: float = Field(
        0.1, ge=0, le=1, description="...and at least this share of the request's latency."
    )
    sequential_queries_min_saved_ms: float = Field(
        100.0, ge=0, description="Sequential independent queries: the saving must be at least this (ms)."
    )
    n_plus_one_api_min_calls: int = Field(
        10, ge=2, description="N+1 API calls: this many calls to one resource template under one parent."
    )
    queue_min_wait_ms: float = Field(
        10.0, ge=0, description="Queueing: a call waits this long (ms) before its service starts serving it..."
    )
    queue_min_wait_share: float = Field(0.3, ge=0, le=1, description="...and that wait is this share of the call.")
    queue_min_held_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="...and this share of those waits were held: from the moment a wait passed queue_min_wait_ms "
        "until its turn, the service served no more than then (a limit holds it; a busy host still getting to the "
        "calls serves more and more).",
    )
    cacheable_min_self_ms: float = Field(
        20.0, ge=0, description="Cacheable: the service's own work per request at least this (ms)..."
    )
    cacheable_min_self_share: float = Field(
        0.5, ge=0, le=1, description="...and this share of the request's latency, with identical answers."
    )
    cache_ttl_s: int = Field(60, ge=1, description="The TTL a cache recommendation proposes when nothing says more.")
    large_payload_bytes: int = Field(300_000, ge=1, description="Large payload: a response body above this.")
    uncompressed_min_bytes: int = Field(
        512_000, ge=1, description="Uncompressed: a text response above this sent without Content-Encoding."
    )
    render_blocking_min_bytes: int = Field(
        100_000, ge=1, description="Render-blocking: a blocking script or style sheet in the head above this."
    )
    page_visits: int = Field(3, ge=1, le=20, description="Web vitals: first visits per page in Chromium (k6 browser).")
    vitals_lcp_ms: float = Field(
        4000, gt=0, description="Web vitals: a page's median LCP above this (ms) is a finding."
    )
    vitals_fcp_ms: float = Field(3000, gt=0, description="...FCP above this (ms); defaults: Google's 'poor' bounds.")
    vitals_cls: float = Field(0.25, gt=0, description="...CLS above this.")
    vitals_inp_ms: float = Field(500, gt=0, description="...INP above this (ms).")
    vitals_ttfb_ms: float = Field(1800, gt=0, description="...TTFB above this (ms).")
    error_rate_rise: float = Field(
        0.05, gt=0, le=1, description="Error hotspot: an endpoint's error rate under load this much above baseline."
    )


class Attribution(StrEnum):
    """How a change's own effect is told apart from the others'."""

    AUTO = "auto"
    BY_ENDPOINT = "by-endpoint"
    LEAVE_ONE_OUT = "leave-one-out"


# "10%" (of the before value) or "5ms" / "5 ms" (absolute).
_EFFECT = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>%|ms)\s*$")


class Validation(StrictModel):
    """How a before/after comparison decides (method: interleaved runs, a hierarchical bootstrap, margins)."""

    interleave: bool = Field(
        True,
        description="Measure both arms in the validation phase, alternating (A B B A A B ...) by undoing and "
        "re-applying the changes, so that the machine's drift hits both; false: compare the assessment's "
        "baseline with one validation run.",
    )
    runs_per_arm: int = Field(3, ge=1, le=20, description="Interleaved runs per arm to start with.")
    rerun_shapes: bool = Field(
        False,
        description="After a kept result, run the assessment's peak, stress and soak loads (load.peak, "
        "load.stress, load.soak) again with the changes in place: verdicts on the knee, the peak and the soak.",
    )
    max_runs_per_arm: int = Field(
        6, ge=1, le=40, description="While a verdict is inconclusive, runs are added up to this many per arm."
    )
    run_duration: Duration | None = Field(
        None, description="Length of each interleaved run (warm-up apart); default: the load's duration."
    )
    metric: Literal["p50", "p95", "p99"] = Field("p95", description="The percentile the verdicts are about.")
    min_requests_per_run: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Requests per run that each endpoint a change addresses gets, in a k6 scenario of its own (the "
        "rest of the mix runs at its production weights beside it, within the load's rate). Default: derived per "
        "endpoint from the spread of its baseline requests, so that a min_improvement change is detected with "
        "power 0.9 at runs_per_arm runs; `ratchet calibrate` measures the spread from run to run.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Level of the after/before ratio's bootstrap confidence interval."
    )
    significance: float = Field(0.01, gt=0, lt=0.5, description="Largest p-value that counts as a real change.")
    min_improvement: float = Field(
        0.20, ge=0, lt=1, description="Margin: improved when the whole interval is below 1 - this."
    )
    regression_margin: float = Field(
        0.10,
        ge=0,
        lt=10,
        description="Margin: regressed when the whole interval is above 1 + this; not worse when its top is below.",
    )
    min_effect: str = Field(
        "5%",
        description="The smallest change of the metric that counts, whatever the p-value: '10%' (of the before "
        "value) or '5ms' (absolute). Applies to improvements, regressions and the deployment guard.",
        json_schema_extra={"pattern": _EFFECT.pattern},
    )
    min_effect_ms: float | None = Field(
        None,
        ge=0,
        description="Deprecated: write min_effect: '5ms'. Kept so that older playbooks keep their meaning.",
    )
    on_inconclusive: Literal["ask", "accept", "roll-back"] = Field(
        "ask",
        description="When verdicts stay inconclusive after max_runs_per_arm: ask a person at the validation gate "
        "(approve: accept them as not worse; reject: roll back), accept them, or roll every change back.",
    )
    attribution: Attribution = Field(
        Attribution.AUTO,
        description="auto: leave-one-out where kept changes share an endpoint, by endpoint elsewhere; "
        "by-endpoint: a change is credited with its endpoints' verdicts; leave-one-out: where "
        "several changes share an endpoint, each is also measured with the others in place and itself undone. "
        "A change for payload findings (uncompressed, large-payload) is judged there on the wire bytes of the "
        "answers instead of latency, the same way: all changes undone against all in place, or it alone.",
    )
    acceptance_bar: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of SLO targets that must be met to accept a partial result (below: roll back).",
    )

    @field_validator("min_effect")
    @classmethod
    def _effect_has_a_unit(cls, value: str) -> str:
        if _EFFECT.match(value) is None:
            raise ValueError(f"{value!r} is no effect: write a share such as '10%' or a time such as '5ms'")
        return value.strip()

    @model_validator(mode="after")
    def _effect_from_the_old_field(self) -> Self:
        if self.min_effect_ms is not None and "min_effect" not in self.model_fields_set:
            self.min_effect = f"{self.min_effect_ms:g}ms"
        return self

    def effect_floor_ms(self, before_ms: float) -> float:
        """The smallest shift (ms) of the metric that counts, for an endpoint whose before value is ``before_ms``."""
        match = _EFFECT.match(self.min_effect)
        assert match is not None  # checked on load
        value = float(match["value"])
        return before_ms * value / 100 if match["unit"] == "%" else value

    @model_validator(mode="after")
    def _budget_covers_the_start(self) -> Self:
        if self.max_runs_per_arm < self.runs_per_arm:
            raise ValueError(
                f"max_runs_per_arm ({self.max_runs_per_arm}) must be at least runs_per_arm ({self.runs_per_arm})"
            )
        return self


class Guard(StrictModel):
    """What deployment monitoring watches while changes bake."""

    max_error_rate: float = Field(0.01, ge=0, le=1)
    p95_tolerance: float = Field(
        0.25, ge=0, le=10, description="The bake p95 may exceed the validated p95 by this share at most."
    )
    p95_min_excess_ms: float = Field(
        5.0, ge=0, description="...and by this many ms at least, so noise on fast endpoints is no breach."
    )


class Rollout(StrictModel):
    """A gradual rollout to the target's production environment (when it has one)."""

    steps: list[float] = Field(
        default_factory=lambda: [10.0, 50.0, 100.0],
        min_length=1,
        description="Shares of requests (percent, rising, ending at 100) that see a percentage-capable lever.",
    )
    bake: Duration = Field(timedelta(seconds=10), description="How long each step is watched by the guard.")
    failure_limit: int = Field(
        0, ge=0, le=10, description="Guard breaches tolerated over the rollout; one more rolls it back."
    )
    pause: Duration = Field(
        timedelta(0),
        description="After a step holds, how long to wait for a person to promote (go on at once) or abort; "
        "0: go on at once.",
    )

    @model_validator(mode="after")
    def _rising_to_all(self) -> Self:
        if any(not 0 < step <= 100 for step in self.steps):
            raise ValueError(f"steps: each is a percent in (0, 100], got {self.steps}")
        if any(b <= a for a, b in zip(self.steps, self.steps[1:], strict=False)) or self.steps[-1] != 100:
            raise ValueError(f"steps: must rise and end at 100, got {self.steps}")
        return self


class Watch(StrictModel):
    """The standing watch (`ratchet watch start`): a light probe load at an interval, each endpoint's p95 kept as
    a series, and a degradation past ``degradation`` that lasts (a change point with ``min_points`` after it,
    within ``window``) alerted once and, when ``on_drift`` says so, answered with a campaign."""

    interval: Duration = Field(timedelta(minutes=5), description="Time between two probe loads.")
    window: Duration = Field(timedelta(hours=1), description="A degradation is judged over this last stretch.")
    degradation: float = Field(0.2, gt=0, le=10, description="Slower by at least this share of the level before.")
    min_points: int = Field(
        5, ge=3, le=100, description="Probe loads needed on each side of a change before it counts."
    )
    rate: float = Field(2.0, gt=0, le=10_000, description="Requests per second of each probe load.")
    duration: Duration = Field(timedelta(seconds=10), description="How long each probe load runs.")
    on_drift: Literal["alert", "campaign"] = Field(
        "alert", description="alert: the webhook only; campaign: also launch a campaign on the target."
    )
    after_partial: bool = Field(
        True,
        description="A campaign that keeps a partial result (above the acceptance bar, not every target met) "
        "starts this watch on the target when it ends, unless one runs already.",
    )

    @model_validator(mode="after")
    def _window_holds_the_points(self) -> Self:
        if self.window < self.interval * self.min_points:
            raise ValueError(
                f"window {self.window} holds fewer than min_points ({self.min_points}) probes at interval "
                f"{self.interval}: widen the window or probe more often"
            )
        return self


class Deployment(StrictModel):
    """Deployment & monitoring: how long to bake and what to watch."""

    bake: Duration = Field(timedelta(seconds=15), description="How long to watch the kept changes.")
    guard: Guard = Field(default_factory=Guard)
    rollout: Rollout = Field(default_factory=Rollout)


class Tuning(StrictModel):
    """How the devops-engineer tunes a lever's number (a pool size, a worker count): short trial load tests on
    the endpoints the lever addresses, each value chosen by a Bayesian optimizer (a Gaussian process with
    expected improvement) from the trials so far; the first trial measures the baseline value."""

    trials: int = Field(
        6, ge=0, le=50, description="Trial budget, the baseline's included; 0 applies the lever's default."
    )
    max_failed_trials: int = Field(
        2,
        ge=0,
        le=50,
        description="Stop tuning after more trials than this failed (errors over the SLO, or no answer).",
    )
    trial_duration: Duration = Field(timedelta(seconds=5), description="Measured load per trial (after its warm-up).")
    trial_warmup: Duration = Field(timedelta(seconds=1), description="Load sent first in each trial, left out.")
    rate: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Requests per second of a trial (default: the baseline's rate), all of it "
        "on the lever's endpoints, so that a capacity limit shows.",
    )


class AlertKind(StrEnum):
    """The moments of a campaign that can send a webhook alert."""

    REGRESSION = "regression"  # validation found an endpoint slower than before
    GUARD_BREACHED = "guard-breached"  # the deployment guard tripped while the changes baked
    VALIDATION_FAILED = "validation-failed"  # the changes did not prove themselves and are rolled back
    GATE_WAITING = "gate-waiting"  # a gate waits for a person to approve or reject
    ESCALATION = "escalation"  # an architecture-level problem handed to the escalation approvers, no lever tried
    DEGRADATION = "degradation"  # the standing watch saw an endpoint's p95 move to a slower level and stay there
    WEEKLY_REPORT = "weekly-report"  # a scheduled weekly report was written (its summary, and where it is)


class Costs(StrictModel):
    """Prices that turn what the target used under load into money: cost per 1,000 requests before and after the
    changes, and the campaign's return on what the changes cost to make. Unset prices count as 0; none set: no
    cost is computed."""

    currency: str = Field("USD", min_length=1, max_length=8, description="Shown beside every amount.")
    cpu_hour: float = Field(0.0, ge=0, description="Price of one CPU core for one hour (the target's processes).")
    memory_gb_hour: float = Field(0.0, ge=0, description="Price of 1 GB of resident memory for one hour.")
    million_requests: float = Field(0.0, ge=0, description="Price per million requests served (a gateway, a CDN).")
    outbound_calls: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="Host -> price per outbound call the target makes to it (read from its client spans' "
        "server.address): a paid API, a metered database.",
    )
    engineering_per_change: float = Field(
        0.0, ge=0, description="What making and keeping one change costs (ROI: against the saving per month)."
    )
    traffic_rps: float | None = Field(
        None,
        gt=0,
        description="Requests per second of real traffic, for the saving per month; unset: the baseline's rate.",
    )

    @property
    def priced(self) -> bool:
        return bool(self.cpu_hour or self.memory_gb_hour or self.million_requests or any(self.outbound_calls.values()))


class Alerts(StrictModel):
    """Webhook alerts (Slack-compatible JSON: ``text`` plus ``blocks``) at the moments a person should know of."""

    webhook_url: str | None = Field(
        None,
        description="An incoming-webhook URL (http or https) to post alerts to; unset: no alerts. It is a "
        "secret: write ${VARIABLE} and set it in the environment.",
    )
    on: list[AlertKind] = Field(
        default_factory=lambda: list(AlertKind),
        description="The kinds of alert to send; default: all of them. An empty list sends none.",
    )
    timeout: Duration = Field(
        timedelta(seconds=10), description="How long one attempt to post waits for the webhook's answer."
    )
    mention: str = Field(
        "",
        description="Put before every alert's text as written, e.g. <!here> or <@U0123ABC> on Slack.",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or holds_reference(value):
            return value  # a secret this process does not hold (see ratchet.secrets): checked where it is resolved
        # The message leaves the URL out: a webhook's path is its secret.
        try:
            parts = urlsplit(value.strip())
            parts.port  # noqa: B018 (reading it checks it: a port out of range raises)
        except ValueError as exc:
            raise ValueError(f"must be an http:// or https:// URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
            raise ValueError(f"must be an http:// or https:// URL (got {got})")
        if not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host name (got none)")
        return value.strip()

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if not timedelta(0) < value <= timedelta(minutes=5):
            raise ValueError("must be more than 0s and at most 5m")
        return value

    def wants(self, kind: AlertKind) -> bool:
        """Whether to send an alert of this kind: a webhook is set and ``on`` lists the kind."""
        return self.webhook_url is not None and kind in self.on


class VariantWeights(StrictModel):
    """How a recommendation among a step's variants weighs speed against cost (each scored against the best)."""

    performance: float = Field(0.6, ge=0, description="Weight of the p95 (the fastest variant scores 1).")
    cost: float = Field(0.4, ge=0, description="Weight of the cost per call (the cheapest variant scores 1).")

    @model_validator(mode="after")
    def _some_weight(self) -> Self:
        if self.performance + self.cost <= 0:
            raise ValueError("performance and cost cannot both be 0")
        return self


class WorkflowAnalysis(StrictModel):
    """How `ratchet workflows analyze --playbook` compares a step's variants (its flags override these)."""

    variant: str | None = Field(
        None,
        description="What tells variants apart: an input field (e.g. provider), task_queue, summary (the "
        "activity's summary) or search_attribute:NAME (the execution's).",
    )
    cost_field: str | None = Field(None, description="A numeric field of a step's result: the call's cost.")
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="Variant -> price per call, for calls whose results carry no cost field.",
    )
    weights: VariantWeights = Field(default_factory=VariantWeights)

    @field_validator("prices")
    @classmethod
    def _non_negative(cls, prices: dict[str, float]) -> dict[str, float]:
        negative = sorted(name for name, price in prices.items() if price < 0)
        if negative:
            raise ValueError(f"prices cannot be negative: {negative}")
        return prices


class Approvals(StrictModel):
    """How answers at the gates prove who gave them."""

    mode: Literal["plain", "signed"] = Field(
        "plain",
        description="plain: the approver is the name the answer states; signed: every answer (update, signal, "
        "--auto-approve) carries the approver's ed25519 signature, checked against their public key here.",
    )
    keys: dict[str, str] = Field(
        default_factory=dict,
        description="Approver name -> ed25519 public key (base64 of its 32 bytes), as `ratchet keys create` prints.",
    )
    keyring: Path | None = Field(
        None, description="A YAML file of more `name: public key` lines (relative to the playbook)."
    )
    max_age: Duration = Field(
        timedelta(minutes=10), description="A signature older than this (or this far in the future) is refused."
    )

    @model_validator(mode="after")
    def _read_keyring(self, info: ValidationInfo) -> Self:
        if self.keyring is None:
            return self
        base = (info.context or {}).get("base_dir", Path("."))
        path = self.keyring if self.keyring.is_absolute() else Path(base) / self.keyring
        try:
            ring = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"keyring: cannot read {path}: {exc}") from None
        if not isinstance(ring, dict) or not all(isinstance(v, str) for v in ring.values()):
            raise ValueError(f"keyring: {path} must map approver names to public keys (name: key)")
        twice = sorted(name for name in ring if name in self.keys and self.keys[name] != ring[name])
        if twice:
            raise ValueError(f"keyring: {path} gives other keys than `keys` for {', '.join(twice)}")
        # Read once, when the file is loaded: the keys travel in the payloads, the path does not.
        self.keys = {**{str(name): key for name, key in ring.items()}, **self.keys}
        self.keyring = None
        return self

    @field_validator("keys")
    @classmethod
    def _valid_keys(cls, keys: dict[str, str]) -> dict[str, str]:
        for name, key in keys.items():
            problem = public_key_problem(key)
            if problem:
                raise ValueError(f"keys: {name}: {problem} (`ratchet keys create {name}` prints a valid one)")
        return keys


class Playbook(StrictModel):
    """A reusable campaign recipe."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    approvers: list[str] = Field(min_length=1, description="Names allowed to approve or reject at the gates.")
    gates: dict[Phase, Gate] = Field(
        default_factory=lambda: {Phase.PLANNING: Gate(), Phase.DEPLOYMENT: Gate()},
        description="Phases that wait for a person before they start; planning and deployment by default.",
    )
    slo: SloTargets = Field(default_factory=SloTargets)
    load: LoadProfile = Field(default_factory=LoadProfile)
    detection: Detection = Field(default_factory=Detection)
    validation: Validation = Field(default_factory=Validation)
    deployment: Deployment = Field(default_factory=Deployment)
    watch: Watch = Field(default_factory=Watch)
    tuning: Tuning = Field(default_factory=Tuning)
    alerts: Alerts = Field(default_factory=Alerts)
    costs: Costs = Field(default_factory=Costs)
    workflows: WorkflowAnalysis = Field(
        default_factory=WorkflowAnalysis, description="How workflow analyses compare and recommend variants."
    )
    max_recommendations: int = Field(10, ge=1, le=100, description="Plan at most this many changes.")
    approvals: Approvals = Field(default_factory=Approvals)

    @model_validator(mode="after")
    def _every_signer_has_a_key(self) -> Self:
        if self.approvals.mode != "signed":
            return self
        names = set(self.approvers) | {name for gate in self.gates.values() for name in gate.escalate_to}
        missing = sorted(names - set(self.approvals.keys))
        if missing:
            raise LocatedValueError(
                ("approvals", "mode"),
                f"approvals: signed, but no public key for {', '.join(missing)}: add it under approvals.keys (or "
                "approvals.keyring); `ratchet keys create NAME` makes a key and prints it",
            )
        return self

    @model_validator(mode="after")
    def _gates_on_gateable_phases(self) -> Self:
        for phase in self.gates:
            if phase not in GATEABLE_PHASES:
                valid = ", ".join(p.value for p in GATEABLE_PHASES)
                raise LocatedValueError(
                    ("gates", phase.value), f"gates: {phase.value!r} cannot be gated; valid: {valid}"
                )
        return self
