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
class ScenarioPlan:
    """The share of the load one endpoint gets."""

    name: str
    rate_per_minute: int
    duration_s: int
    pre_allocated: int
    max_vus: int


def plan_scenarios(target: Target, *, rate: float, duration_s: float, max_vus: int) -> list[ScenarioPlan]:
    """Split a total request rate over the endpoints by weight (k6 rates are whole numbers per minute)."""
    total_weight = sum(e.weight for e in target.endpoints)
    plans = []
    for endpoint in target.endpoints:
        per_second = rate * endpoint.weight / total_weight
        per_vu_cap = max(1, max_vus // len(target.endpoints))
        plans.append(
            ScenarioPlan(
                name=endpoint.name,
                rate_per_minute=max(1, round(per_second * 60)),
                duration_s=max(1, math.ceil(duration_s)),
                pre_allocated=min(per_vu_cap, max(2, math.ceil(per_second / 10))),
                max_vus=per_vu_cap,
            )
        )
    return plans


def render_constant_rate_script(
    target: Target,
    *,
    label: str,
    rate: float,
    duration_s: float,
    max_vus: int,
    request_timeout_s: float,
    trace_prefix: str = "",
) -> str:
    """The k6 script that sends ``rate`` requests per second for ``duration_s`` seconds.

    With a ``trace_prefix`` every request starts a trace whose id begins with it (see ratchet.traces.store).
    """
    endpoints = {
        e.name: {"name": e.name, "method": e.method, "path": e.path, "body": e.body, "examples": e.examples,
                 "position": position}
        for position, e in enumerate(target.endpoints)
    }  # fmt: skip
    return _templates.get_template("constant_rate.js.j2").render(
        target_name=target.name,
        label=label,
        base_url=target.base,
        endpoints=endpoints,
        scenarios=plan_scenarios(target, rate=rate, duration_s=duration_s, max_vus=max_vus),
        request_timeout_s=request_timeout_s,
        trace_prefix=trace_prefix,
    )
