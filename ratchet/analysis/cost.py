"""Cost per 1,000 requests from what the target used under load, and the return on a campaign's changes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ratchet.config.playbook import Costs
from ratchet.contracts import ArmCost, CostComparison

SECONDS_PER_MONTH = 30 * 24 * 3600


@dataclass(frozen=True)
class RunUsage:
    """One load run's requests and what serving them used."""

    requests: int
    seconds: float  # the window the requests were measured over
    cores: float | None  # mean CPU cores of the target's processes; None: not sampled
    memory_gb: float | None  # mean resident memory of the target's processes
    calls_per_request: dict[str, float] | None  # host -> outbound calls per request; None: not traced


def arm_cost(runs: list[RunUsage], costs: Costs) -> tuple[ArmCost, list[str]]:
    """The arm's cost per 1,000 requests (its runs pooled), and what could not be priced."""
    requests = sum(r.requests for r in runs)
    unpriced: list[str] = []
    parts: dict[str, float] = {}

    def per_1000(total: float) -> float:
        return 1000 * total / requests if requests else 0.0

    sampled = [r for r in runs if r.cores is not None]
    if (costs.cpu_hour or costs.memory_gb_hour) and len(sampled) < len(runs):
        unpriced.append("CPU and memory: the target's processes were not sampled in every run")
    elif costs.cpu_hour or costs.memory_gb_hour:
        parts["cpu"] = per_1000(sum((r.cores or 0) * r.seconds for r in runs) * costs.cpu_hour / 3600)
        parts["memory"] = per_1000(sum((r.memory_gb or 0) * r.seconds for r in runs) * costs.memory_gb_hour / 3600)
    if costs.million_requests:
        parts["requests"] = costs.million_requests / 1000
    priced_hosts = {host: price for host, price in costs.outbound_calls.items() if price}
    if priced_hosts and any(r.calls_per_request is None for r in runs):
        unpriced.append(f"calls to {', '.join(sorted(priced_hosts))}: no spans of the target's requests")
    elif priced_hosts:
        for host, price in sorted(priced_hosts.items()):
            calls = sum((r.calls_per_request or {}).get(host, 0.0) * r.requests for r in runs)
            parts[f"calls to {host}"] = per_1000(calls * price)
    parts = {name: round(value, 6) for name, value in parts.items()}
    return ArmCost(requests=requests, per_1000=round(sum(parts.values()), 6), parts=parts), unpriced


def compare_costs(before: list[RunUsage], after: list[RunUsage], costs: Costs) -> CostComparison | None:
    """Both arms priced alike; None when the playbook prices nothing or an arm measured nothing."""
    if not costs.priced or not before or not after:
        return None
    (before_cost, missing), (after_cost, missing_after) = arm_cost(before, costs), arm_cost(after, costs)
    unpriced = list(dict.fromkeys(missing + missing_after))
    return CostComparison(
        currency=costs.currency,
        before=before_cost,
        after=after_cost,
        note=("not priced: " + "; ".join(unpriced)) if unpriced else "",
    )


class Return(NamedTuple):
    """The campaign's changes as an investment: what they save per month at the traffic, against their cost."""

    traffic_rps: float
    saved_per_month: float
    engineering: float
    payback_months: float | None  # None: nothing saved (never paid back) or nothing spent
    return_12_months: float | None  # (12 months' saving - engineering) / engineering; None: nothing spent


def campaign_return(comparison: CostComparison, costs: Costs, kept_changes: int, baseline_rps: float) -> Return:
    traffic = costs.traffic_rps or baseline_rps
    saved = comparison.saved_per_1000 / 1000 * traffic * SECONDS_PER_MONTH
    engineering = costs.engineering_per_change * kept_changes
    payback = engineering / saved if engineering and saved > 0 else None
    returned = (12 * saved - engineering) / engineering if engineering else None
    return Return(traffic, saved, engineering, payback, returned)
