"""Cost per 1,000 requests and the campaign's return: the arithmetic, what cannot be priced, and the report."""

from __future__ import annotations

import pytest

from ratchet.analysis.cost import RunUsage, arm_cost, campaign_return, compare_costs
from ratchet.config.playbook import Costs
from ratchet.contracts import ChangeState
from ratchet.report import render_html, render_markdown
from tests.test_report import completed_campaign

PRICES = Costs(
    cpu_hour=0.036,
    memory_gb_hour=0.0036,
    million_requests=0.2,
    outbound_calls={"tax.example": 0.001},
    engineering_per_change=100,
)


def test_an_arm_is_priced_per_1000_requests_from_what_its_runs_used() -> None:
    # 1,000 requests in 100 s on half a core and 2 GB, two tax calls each:
    # CPU 0.5 x 100 s x 0.036 / 3600 = 0.0005; memory 2 x 100 x 0.0036 / 3600 = 0.0002; calls 2,000 x 0.001 = 2;
    # requests 0.2 per million = 0.0002 per 1,000.
    run = RunUsage(1000, 100.0, 0.5, 2.0, {"tax.example": 2.0, "free.example": 5.0})
    cost, unpriced = arm_cost([run, run], PRICES)
    assert unpriced == [] and cost.requests == 2000
    assert cost.parts == pytest.approx(
        {"cpu": 0.0005, "memory": 0.0002, "requests": 0.0002, "calls to tax.example": 2.0}, abs=1e-9
    )
    assert cost.per_1000 == pytest.approx(2.0009, abs=1e-9)


def test_what_was_not_measured_is_not_priced_and_says_so() -> None:
    unsampled = RunUsage(1000, 100.0, None, None, None)
    comparison = compare_costs([unsampled], [unsampled], PRICES)
    assert comparison is not None and set(comparison.before.parts) == {"requests"}
    assert "CPU and memory: the target's processes were not sampled" in comparison.note
    assert "calls to tax.example: no spans" in comparison.note
    # Nothing priced: nothing computed.
    assert compare_costs([unsampled], [unsampled], Costs()) is None


def test_the_return_is_the_saving_per_month_at_the_traffic_against_what_the_changes_cost() -> None:
    before = RunUsage(1000, 100.0, 1.0, 1.0, {"tax.example": 1.0})
    after = RunUsage(1000, 100.0, 0.5, 1.0, {"tax.example": 0.5})
    comparison = compare_costs([before], [after], PRICES)
    assert comparison is not None
    # Half the tax calls (0.5 per 1,000 saved... x 1,000 = 0.5) and half the CPU (0.0005): 0.5005 per 1,000.
    assert comparison.saved_per_1000 == pytest.approx(0.5005, abs=1e-9)
    returned = campaign_return(comparison, PRICES, kept_changes=2, baseline_rps=10.0)
    # 10 req/s for 30 days is 25.92 million requests: 25,920 x 0.5005 = 12,972.96 a month.
    assert returned.saved_per_month == pytest.approx(12_972.96, rel=1e-9)
    assert returned.engineering == 200 and returned.payback_months == pytest.approx(200 / 12_972.96)
    assert returned.return_12_months == pytest.approx((12 * 12_972.96 - 200) / 200)
    # A cost that grew is never paid back.
    worse = campaign_return(compare_costs([after], [before], PRICES), PRICES, 1, 10.0)  # type: ignore[arg-type]
    assert worse.saved_per_month < 0 and worse.payback_months is None and worse.return_12_months is not None
    # Traffic from the playbook, when it gives one.
    assert campaign_return(comparison, PRICES.model_copy(update={"traffic_rps": 5}), 2, 10.0).traffic_rps == 5


@pytest.mark.parametrize("render", [render_markdown, render_html])
def test_the_report_shows_cost_per_1000_requests_each_changes_share_and_the_return(render: object) -> None:
    status = completed_campaign()
    comparison = compare_costs(
        [RunUsage(1000, 100.0, 1.0, 1.0, {"tax.example": 1.0})],
        [RunUsage(1000, 100.0, 0.5, 1.0, {"tax.example": 0.5})],
        PRICES,
    )
    kept = [c for c in status.changes if c.state == ChangeState.KEPT]
    changes = [c.model_copy(update={"cost_effect_per_1000": 0.5}) if c is kept[0] else c for c in status.changes]
    status = status.model_copy(update={"cost": comparison, "cost_rules": PRICES, "changes": changes})
    report = render(status)  # type: ignore[operator]
    assert "Cost" in report and "1.001" in report and "0.5005" in report, report  # before per 1,000, saved
    assert "calls to tax.example" in report and f"{kept[0].lever} 0.5" in report
    assert "a 12-month return of" in report and "paid back in" in report
    # The rolled-back change was undone before validation (not by leave-one-out): no note about the after arm.
    assert "undone since" not in report
    # Without prices there is no Cost section.
    assert "Per 1,000 requests" not in render(completed_campaign())  # type: ignore[operator]


def test_kept_changes_without_a_cost_of_their_own_are_named() -> None:
    """Only leave-one-out measures a change's own cost: the others are said to share the difference."""
    status = completed_campaign()
    comparison = compare_costs([RunUsage(1000, 100.0, 1.0, 1.0, {})], [RunUsage(1000, 100.0, 0.5, 1.0, {})], PRICES)
    first, second = status.changes[0], status.changes[1]
    changes = [
        first.model_copy(update={"state": ChangeState.KEPT, "cost_effect_per_1000": 0.0002}),
        second.model_copy(update={"state": ChangeState.KEPT, "rolled_back_at": None}),
    ]
    status = status.model_copy(update={"cost": comparison, "cost_rules": PRICES, "changes": changes})
    report = render_markdown(status)
    assert f"no cost of its own is given for {second.lever}" in " ".join(report.split()), report
