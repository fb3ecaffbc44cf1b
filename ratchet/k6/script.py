"""Write a k6 script for a target and a load profile (pure: text in, text out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined

from ratchet.config.target import Target

_templates = Environment(
    loader=PackageLoader("ratchet.k6", "templates"),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)


@dataclass(frozen=True)
class Stage:
    """One ramping-arrival-rate stage: reach ``rate_per_minute`` over ``duration_s`` seconds (0: at once)."""

    rate_per_minute: int
    duration_s: int


@dataclass(frozen=True)
class ScenarioPlan:
    """The share of the load one endpoint gets: a constant rate, or stages of a stepped ramp."""

    name: str
    rate_per_minute: int
    duration_s: int
    pre_allocated: int
    max_vus: int
    stages: tuple[Stage, ...] = ()


def _per_minute(rate: float, share: float) -> int:
    return max(1, round(rate * share * 60))  # k6 rates are whole numbers per time unit


def _stepped_stages(step_rates: list[float], share: float, step_s: int) -> tuple[Stage, ...]:
    """Hold each step's rate for ``step_s`` seconds, jumping to the next step at once (a 0 s stage)."""
    stages: list[Stage] = []
    for rate in step_rates:
        if stages:
            stages.append(Stage(_per_minute(rate, share), 0))
        stages.append(Stage(_per_minute(rate, share), step_s))
    return tuple(stages)


def endpoint_shares(target: Target, rate: float, focus: dict[str, float]) -> dict[str, float]:
    """Each endpoint's share of ``rate``: a focused one its own rate, the others the rest by weight."""
    focused = {e.name: min(focus[e.name], rate) / rate for e in target.endpoints if e.name in focus and rate > 0}
    rest = [e for e in target.endpoints if e.name not in focused]
    left = max(0.0, 1 - sum(focused.values()))
    rest_weight = sum(e.weight for e in rest) or 1.0
    return focused | {e.name: left * e.weight / rest_weight for e in rest}


def plan_scenarios(
    target: Target,
    *,
    rate: float,
    duration_s: float,
    max_vus: int,
    step_rates: list[float] | None = None,
    focus: dict[str, float] | None = None,
) -> list[ScenarioPlan]:
    """Split a total request rate over the endpoints by weight.

    With ``step_rates`` each endpoint's scenario instead holds its share of every step's rate for
    ``duration_s`` seconds, jumping from one step to the next. ``focus`` gives some endpoints a rate of their own
    (requests per second, within ``rate``); the others share what is left by weight.
    """
    shares = endpoint_shares(target, rate, focus or {})
    per_vu_cap = max(1, max_vus // len(target.endpoints))
    step_s = max(1, math.ceil(duration_s))
    plans = []
    for endpoint in target.endpoints:
        share = shares[endpoint.name]
        stages = _stepped_stages(step_rates, share, step_s) if step_rates else ()
        first = step_rates[0] if step_rates else rate
        # A focused endpoint carries more than an equal part of the load: its VUs follow its share.
        vu_cap = max(per_vu_cap, math.ceil(max_vus * share)) if endpoint.name in (focus or {}) else per_vu_cap
        plans.append(
            ScenarioPlan(
                name=endpoint.name,
                rate_per_minute=_per_minute(first, share),
                duration_s=step_s * (len(step_rates) if step_rates else 1),
                pre_allocated=min(vu_cap, max(2, math.ceil(first * share / 10))),
                max_vus=vu_cap,
                stages=stages,
            )
        )
    return plans


def render_arrival_rate_script(
    target: Target,
    *,
    label: str,
    rate: float,
    duration_s: float,
    max_vus: int,
    request_timeout_s: float,
    trace_prefix: str = "",
    step_rates: list[float] | None = None,
    abort_when: AbortConditions | None = None,
    focus: dict[str, float] | None = None,
) -> str:
    """The k6 script that sends ``rate`` requests per second for ``duration_s`` seconds.

    With ``step_rates`` it sends each step's rate for ``duration_s`` seconds instead (a stress run), and
    with ``abort_when`` k6 stops the test by itself once a breaking condition holds.
    With a ``trace_prefix`` every request starts a trace whose id begins with it (see ratchet.traces.store).
    """
    endpoints = {
        e.name: {
            "name": e.name,
            "method": e.method,
            "path": e.path,
            "body": e.body,
            "examples": e.examples,
            "position": position,
        }
        for position, e in enumerate(target.endpoints)
    }
    return _templates.get_template("arrival_rate.js.j2").render(
        target_name=target.name,
        label=label,
        base_url=target.base,
        endpoints=endpoints,
        scenarios=plan_scenarios(
            target, rate=rate, duration_s=duration_s, max_vus=max_vus, step_rates=step_rates, focus=focus
        ),
        request_timeout_s=request_timeout_s,
        trace_prefix=trace_prefix,
        abort_when=abort_when,
    )


@dataclass(frozen=True)
class AbortConditions:
    """Thresholds with ``abortOnFail``: k6 stops the run once one is crossed (after a short grace)."""

    error_rate: float
    p95_ms: float
    grace_s: int = 5
