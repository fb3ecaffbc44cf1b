"""The pure analysis on plain data: plans, filtered columns, detection, planning, verdicts and decisions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ratchet.analysis.bootstrap import arm_statistic, ratio_interval, run_percentile
from ratchet.analysis.decisions import (
    AfterAssessment,
    TailExcess,
    after_assessment,
    changes_without_effect,
    could_prove,
    could_settle,
    guard_check,
    undecided_endpoints,
    validation_outcome,
)
from ratchet.analysis.detection import (
    StatementEvidence,
    endpoints_to_inspect,
    missing_index_findings,
    overload_note,
    served_endpoints,
    unexplained_slow_findings,
)
from ratchet.analysis.multiple_testing import holm_adjusted
from ratchet.analysis.planning import covers, plan
from ratchet.analysis.plans import FullScan, full_scans_postgresql, full_scans_sqlite
from ratchet.analysis.power import FOCUS_SHARE_CAP, focus_rates, requests_per_run, run_log_spread
from ratchet.analysis.server_side import server_side_arms
from ratchet.analysis.significance import (
    compare_endpoint,
    detectable_change,
    hodges_lehmann,
    judge_endpoints,
    tail_excess,
)
from ratchet.analysis.slo import check_slos, judged_by_slo, projected_checks
from ratchet.analysis.sql_columns import filtered_columns, table_aliases
from ratchet.config.common import FindingType, Role
from ratchet.config.playbook import Playbook, Validation
from ratchet.config.target import Target
from ratchet.contracts import (
    AssessResult,
    ChangeRecord,
    EndpointStats,
    EndpointVerdict,
    Finding,
    LoadTestResult,
    StressReport,
    Verdict,
)
from ratchet.k6.script import plan_scenarios

PLAYBOOK = Playbook(name="p", approvers=["a"], slo={"default": {"p95_ms": 50}})
TARGET = Target.model_validate(
    {
        "name": "t",
        "base_url": "http://127.0.0.1:9",
        "database": {"url": "sqlite:////tmp/x.db"},
        "endpoints": [
            {"name": "search", "path": "/orders?e={e}", "examples": [{"e": "x"}]},
            {"name": "item", "path": "/items/1"},
        ],
        "levers": [
            {
                "name": "status-index",
                "kind": "sql",
                "addresses": [{"finding": "missing-index", "endpoint": "search"}],
                "apply": ["CREATE INDEX IF NOT EXISTS ix_status ON orders (status)"],
                "rollback": ["DROP INDEX IF EXISTS ix_status"],
            }
        ],
    }
)


def stats(name: str, p50: float, p95: float, requests: int = 100, errors: int = 0) -> EndpointStats:
    return EndpointStats(
        endpoint=name,
        requests=requests,
        errors=errors,
        error_rate=errors / requests,
        p50=p50,
        p95=p95,
        p99=p95 * 1.2,
        mean=p50 * 1.1,
    )


def test_sqlite_plan_full_scan_versus_index_search() -> None:
    assert full_scans_sqlite(["SCAN orders", "USE TEMP B-TREE FOR ORDER BY"]) == [FullScan("orders", "SCAN orders")]
    assert full_scans_sqlite(["SEARCH orders USING INDEX ix (customer_email=?)"]) == []
    assert full_scans_sqlite(["SCAN orders USING INDEX ix_created"]) == []


def test_postgresql_plan_seq_scan_with_filter() -> None:
    plan = [
        "Limit  (cost=0.00..10.00 rows=50 width=40)",
        "  ->  Seq Scan on orders  (cost=0.00..5000.00 rows=15 width=40)",
        "        Filter: (customer_email = 'a'::text)",
    ]
    assert [s.table for s in full_scans_postgresql(plan)] == ["orders"]
    assert full_scans_postgresql(["Seq Scan on tiny  (cost=0.00..1.00 rows=1 width=4)"]) == []


def test_table_aliases_name_the_tables_a_plan_calls_by_alias() -> None:
    sql = "SELECT p.id FROM products p JOIN product_details AS d ON d.product_id = p.id JOIN orders ON 1 = 1"
    assert table_aliases(sql) == {"p": "products", "d": "product_details"}
    assert table_aliases("not sql at all (") == {}


def test_filtered_columns_puts_equality_before_ranges() -> None:
    sql = "SELECT * FROM orders o WHERE o.created_at > :t AND o.customer_email = :e ORDER BY id"
    assert filtered_columns(sql, "orders") == ["customer_email", "created_at"]
    assert filtered_columns("SELECT * FROM orders", "orders") == []
    assert filtered_columns("not sql at all (", "orders") == []


def _evidence(rows: int = 300_000) -> StatementEvidence:
    return StatementEvidence(
        endpoint="search",
        sql="SELECT * FROM orders WHERE customer_email = :e",
        plan=["SCAN orders"],
        full_scans=[FullScan("orders", "SCAN orders")],
        table_rows={"orders": rows},
        filtered_columns={"orders": ["customer_email"]},
        median_ms=30.0,
    )


def test_slow_endpoint_with_full_scan_becomes_missing_index_finding() -> None:
    measured = [stats("search", 40, 120), stats("item", 1, 2, requests=300)]
    slow = endpoints_to_inspect(measured, PLAYBOOK)
    assert [s.stats.endpoint for s in slow] == ["search"]
    findings = missing_index_findings(slow, [_evidence()], PLAYBOOK)
    assert len(findings) == 1
    finding = findings[0]
    assert finding.type.value == "missing-index" and finding.endpoint == "search"
    assert finding.evidence["columns"] == ["customer_email"]
    assert finding.evidence["plan_line"] == "SCAN orders"
    assert finding.severity == "high"  # 120 ms is 2.4x the 50 ms target
    assert 0 < finding.impact <= 1


def test_a_p95_over_the_line_on_one_slow_request_of_nine_is_a_note_not_a_finding() -> None:
    """A p95 above the target means more than 5% of requests above it: 1 of 9 cannot show that (p=0.37),
    3 of 9 can (p=0.008); 9 of 9 is a finding whatever the count."""
    slow = endpoints_to_inspect([stats("availability", 60, 108, requests=9)], PLAYBOOK)
    findings, notes = unexplained_slow_findings(slow, set(), 1, over={"availability": 1})
    assert findings == [] and "only 1 of 9 requests" in notes[0] and "needs 3 of 9" in notes[0], notes
    findings, notes = unexplained_slow_findings(slow, set(), 1, over={"availability": 3})
    assert [f.endpoint for f in findings] == ["availability"] and notes == []


def test_a_scan_that_is_the_handlers_work_is_found_though_the_client_mostly_waits_in_a_queue() -> None:
    """At a load the service cannot keep up with, the client's 400 ms are mostly the wait to be served; the
    scan's 17 ms are nearly all of the 17.5 ms inside the service. Its share is taken of the server's time."""
    queued = [stats("search", 380, 410), stats("item", 1, 2, requests=300)]
    slow = endpoints_to_inspect(queued, PLAYBOOK)
    scan = _evidence()
    scan = StatementEvidence(**{**scan.__dict__, "median_ms": 17.0})
    assert missing_index_findings(slow, [scan], PLAYBOOK) == []  # 17 of ~420 ms at the client: under 25%
    [finding] = missing_index_findings(slow, [scan], PLAYBOOK, server_mean_ms={"search": 17.5})
    assert finding.evidence["statement_share_of_endpoint"] > 0.9


def test_small_tables_and_fast_endpoints_yield_no_finding() -> None:
    slow = endpoints_to_inspect([stats("search", 40, 120)], PLAYBOOK)
    assert missing_index_findings(slow, [_evidence(rows=500)], PLAYBOOK) == []
    assert endpoints_to_inspect([stats("search", 5, 20)], PLAYBOOK) == []


def test_plan_prefers_index_on_the_scanned_column_and_keeps_wrong_lever_as_alternative() -> None:
    slow = endpoints_to_inspect([stats("search", 40, 120)], PLAYBOOK)
    finding = missing_index_findings(slow, [_evidence()], PLAYBOOK)[0]
    recommendations = plan([finding], TARGET, limit=10)
    assert [r.id for r in recommendations] == ["R1", "R2"]
    best, alternative = recommendations
    assert best.recommended and best.lever is not None and best.lever.generated
    assert best.lever.apply == [
        "CREATE INDEX IF NOT EXISTS ratchet_ix_orders_customer_email ON orders (customer_email)"
    ]
    assert best.lever.rollback == ["DROP INDEX IF EXISTS ratchet_ix_orders_customer_email"]
    assert best.role == Role.BACKEND_DEVELOPER
    assert not alternative.recommended and alternative.lever is not None
    assert alternative.lever.name == "status-index"
    assert "does not index" in alternative.rationale
    assert not covers(alternative.lever, "orders", ["customer_email"])


def test_hodges_lehmann_is_the_median_pairwise_shift() -> None:
    before = np.array([10.0, 11.0, 12.0])
    assert hodges_lehmann(before - 4, before) == pytest.approx(-4.0)


def test_verdicts_need_an_interval_past_the_margin_significance_and_absolute_effect() -> None:
    rng = np.random.default_rng(1)
    slow_before = rng.normal(40, 3, 300)
    fast_after = rng.normal(4, 0.5, 300)
    rules = PLAYBOOK.validation
    improved = compare_endpoint(stats("s", 40, 45), stats("s", 4, 5), [slow_before], [fast_after], rules, 0.01)
    assert improved.verdict == Verdict.IMPROVED
    assert improved.p_value_faster < 1e-10
    assert improved.ratio_high is not None and improved.ratio_high < 0.2 and improved.ratio_low is not None
    # A 20% slower p95 on a 1 ms endpoint is noise below an absolute min_effect, even if "significant"...
    tiny_before, tiny_after = rng.normal(1.0, 0.05, 300), rng.normal(1.2, 0.05, 300)
    absolute = rules.model_copy(update={"min_effect": "5ms"})
    noise = compare_endpoint(stats("i", 1.0, 1.1), stats("i", 1.2, 1.32), [tiny_before], [tiny_after], absolute, 0.01)
    assert noise.verdict == Verdict.NOT_WORSE and "minimum effect 5.0 ms" in noise.explanation
    # ...and a regression past a relative one.
    relative = compare_endpoint(stats("i", 1.0, 1.1), stats("i", 1.2, 1.32), [tiny_before], [tiny_after], rules, 0.01)
    assert relative.verdict == Verdict.REGRESSED
    worse = compare_endpoint(stats("s", 4, 5), stats("s", 40, 45), [fast_after], [slow_before], rules, 0.01)
    assert worse.verdict == Verdict.REGRESSED
    broken = compare_endpoint(stats("s", 4, 5), stats("s", 4, 5, errors=20), [fast_after], [fast_after], rules, 0.01)
    assert broken.verdict == Verdict.REGRESSED and "error rate" in broken.explanation


def test_runs_that_disagree_give_an_inconclusive_verdict_and_more_runs_settle_it() -> None:
    """Three runs per arm whose levels drift by +-30% cannot tell a 10% slowdown from none; the interval
    says so instead of a verdict. Twelve quiet runs per arm can."""
    rng = np.random.default_rng(3)
    rules = PLAYBOOK.validation

    def runs(count: int, level: float, spread: float) -> list[np.ndarray]:
        return [rng.normal(level * rng.uniform(1 - spread, 1 + spread), level * 0.1, 60) for _ in range(count)]

    drifting = compare_endpoint(
        stats("e", 80, 100), stats("e", 88, 110), runs(3, 100, 0.3), runs(3, 110, 0.3), rules, 0.01
    )
    assert drifting.verdict == Verdict.INCONCLUSIVE, drifting.explanation
    assert drifting.runs_before == drifting.runs_after == 3
    quiet = compare_endpoint(
        stats("e", 80, 100), stats("e", 80, 101), runs(12, 100, 0.02), runs(12, 101, 0.02), rules, 0.01
    )
    assert quiet.verdict == Verdict.NOT_WORSE, quiet.explanation
    assert quiet.ratio_high is not None and quiet.ratio_high < 1 + rules.regression_margin


def test_the_hierarchical_bootstrap_matches_resampling_runs_then_requests_by_hand() -> None:
    """The Beta draw of a resampled run's percentile gives the interval a literal two-stage resampling gives."""
    rng = np.random.default_rng(4)
    before = [rng.lognormal(3, 0.4, 50) * rng.uniform(0.9, 1.1) for _ in range(3)]
    after = [rng.lognormal(3, 0.4, 50) * 1.2 * rng.uniform(0.9, 1.1) for _ in range(3)]
    interval = ratio_interval(before, after, level=0.9)

    def by_hand(runs: list[np.ndarray]) -> np.ndarray:
        values = np.empty(3000)
        for b in range(values.size):
            chosen = [runs[i] for i in rng.integers(0, len(runs), len(runs))]
            values[b] = np.mean([run_percentile(rng.choice(run, run.size), 0.95) for run in chosen])
        return values

    low, high = np.quantile(by_hand(after) / by_hand(before), [0.05, 0.95])
    assert interval.low == pytest.approx(low, rel=0.03) and interval.high == pytest.approx(high, rel=0.03)
    assert interval.ratio == pytest.approx(arm_statistic(after, 0.95) / arm_statistic(before, 0.95))


def test_decisions_after_assessment() -> None:
    met = check_slos([stats("item", 1, 2)], PLAYBOOK)
    missed = check_slos([stats("item", 100, 200)], PLAYBOOK)
    assert after_assessment(AssessResult(findings=[], slo=met)) == AfterAssessment.TARGETS_MET
    assert after_assessment(AssessResult(findings=[], slo=missed)) == AfterAssessment.NOTHING_ACTIONABLE
    # Every target met and only low findings: nothing for a campaign to do (the findings stay in the report).
    low = Finding(
        id="F1",
        type=FindingType.CACHEABLE,
        endpoint="item",
        severity="low",
        impact=0.1,
        estimated_gain_ms=1,
        summary="s",
    )
    high = low.model_copy(update={"severity": "high"})
    assert after_assessment(AssessResult(findings=[low], slo=met), low_findings_met=True) == AfterAssessment.TARGETS_MET
    assert after_assessment(AssessResult(findings=[high], slo=met), low_findings_met=True) == AfterAssessment.CONTINUE
    assert after_assessment(AssessResult(findings=[low], slo=missed), low_findings_met=True) == AfterAssessment.CONTINUE
    assert after_assessment(AssessResult(findings=[low], slo=met)) == AfterAssessment.CONTINUE  # before the rule


def test_validation_outcomes_and_changes_without_effect() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(40, 3, 200), rng.normal(4, 0.4, 200)
    rules = PLAYBOOK.validation
    improved = compare_endpoint(stats("s", 40, 45), stats("s", 4, 5), [a], [b], rules, 0.01)
    unchanged = compare_endpoint(stats("i", 1, 2), stats("i", 1, 2), [b], [b], rules, 0.01)
    after_ok = check_slos([stats("s", 4, 5), stats("i", 1, 2)], PLAYBOOK)
    assert validation_outcome([improved, unchanged], after_ok, PLAYBOOK).value == "met"
    after_partial = check_slos([stats("s", 40, 60), stats("i", 1, 2)], PLAYBOOK)
    assert validation_outcome([improved, unchanged], after_partial, PLAYBOOK).value == "partial"
    assert validation_outcome([unchanged], after_partial, PLAYBOOK).value == "failed"
    change = ChangeRecord(
        change_id="C1", recommendation_id="R1", lever="x", kind="sql", role=Role.BACKEND_DEVELOPER, endpoint="i"
    )
    assert changes_without_effect([change], [improved, unchanged]) == [change]


def test_a_proven_gain_is_not_undone_because_the_host_was_busy_during_validation() -> None:
    """Both arms ran on a busy host: every endpoint read over its 50 ms target, the one whose change proved a
    tenfold gain too: 2 of 4 targets met, under an acceptance bar of 75%. At the baseline's conditions, scaled by
    the gain's least supported size, all 4 are: the result is accepted. Without the proven gain it fails."""
    playbook = PLAYBOOK.model_copy(
        update={"validation": PLAYBOOK.validation.model_copy(update={"acceptance_bar": 0.75})}
    )
    rng = np.random.default_rng(3)
    slow, fast = rng.normal(80, 4, 200), rng.normal(8, 0.8, 200)
    improved = compare_endpoint(stats("s", 80, 90), stats("s", 8, 9), [slow], [fast], PLAYBOOK.validation, 0.01)
    assert improved.verdict.value == "improved" and improved.ratio_high is not None
    busy_after = check_slos([stats("s", 60, 70), stats("t", 60, 70)], PLAYBOOK)
    before = check_slos([stats("s", 70, 90), stats("t", 10, 20)], PLAYBOOK)
    projected = projected_checks(before, [improved])
    [p95] = [c for c in projected if c.endpoint == "s" and c.metric == "p95_ms"]
    assert p95.value == pytest.approx(90 * improved.ratio_high, rel=1e-3) and p95.met
    assert validation_outcome([improved], busy_after, playbook).value == "failed"  # campaigns before the rule
    assert validation_outcome([improved], busy_after, playbook, projected=projected).value == "partial"
    unchanged = improved.model_copy(update={"verdict": Verdict.NOT_WORSE})
    assert projected_checks(before, [unchanged]) == before
    assert validation_outcome([unchanged], busy_after, playbook, projected=before).value == "failed"


def test_guard_breach_needs_significance_margin_and_a_real_excess() -> None:
    validated = LoadTestResult(run_id="v", label="validation", requests=1, duration_s=1, endpoints=[stats("s", 4, 5)])
    noisy = LoadTestResult(run_id="b", label="bake", requests=1, duration_s=1, endpoints=[stats("s", 5, 8)])
    assert not guard_check(validated, noisy, PLAYBOOK, {"s": TailExcess(1e-6, 0.5, 0.05)}).breached  # tolerated
    bad = LoadTestResult(run_id="b", label="bake", requests=1, duration_s=1, endpoints=[stats("s", 30, 40)])
    assert not guard_check(validated, bad, PLAYBOOK, {"s": TailExcess(0.2, 0.1, 0.05)}).breached  # chance
    result = guard_check(validated, bad, PLAYBOOK, {"s": TailExcess(1e-6, 0.5, 0.05)})
    assert result.breached and "p95 40.0 ms" in result.reasons[0] and "50% of requests" in result.reasons[0]
    failing = LoadTestResult(run_id="b", label="bake", requests=1, duration_s=1, endpoints=[stats("s", 4, 5, errors=5)])
    assert "error rate" in guard_check(validated, failing, PLAYBOOK, {}).reasons[0]


def test_the_tail_test_sees_a_slowdown_of_half_the_requests_that_the_median_shift_misses() -> None:
    """A rollout step at 50% makes half the requests 20x slower: the Hodges-Lehmann shift sits on the border
    between the fast and the slow half (a few ms), the share above the reference p95 is ten times the 5%."""
    rng = np.random.default_rng(7)
    before = rng.lognormal(np.log(3), 0.2, 240)
    fast, slow = rng.lognormal(np.log(3), 0.2, 124), rng.lognormal(np.log(60), 0.2, 116)
    after = np.concatenate([fast, slow])
    assert hodges_lehmann(after, before) < 3.0  # a few ms, of a 57 ms slowdown of half the requests
    tail = tail_excess(before, after, float(np.percentile(before, 95)))
    assert tail.share_after > 0.45 and tail.share_before == pytest.approx(0.05, abs=0.01) and tail.p_value < 1e-20
    # The same share at 1% of the traffic: no evidence, no breach.
    one_percent = np.concatenate([rng.lognormal(np.log(3), 0.2, 238), rng.lognormal(np.log(60), 0.2, 2)])
    assert tail_excess(before, one_percent, float(np.percentile(before, 95))).p_value > PLAYBOOK.validation.significance


def test_dominant_endpoint_is_inspected_even_within_its_slo() -> None:
    relaxed = Playbook(name="p", approvers=["a"], slo={"default": {"p95_ms": 500}})
    measured = [stats("search", 60, 80), stats("item", 2, 4, requests=400)]
    [chosen] = endpoints_to_inspect(measured, relaxed)
    assert chosen.stats.endpoint == "search" and not chosen.over_threshold
    findings = missing_index_findings([chosen], [_evidence()], relaxed)
    assert [f.type.value for f in findings] == ["missing-index"]
    # A scan that is a small part of the endpoint's time is not what makes it slow.
    cheap = StatementEvidence(**{**_evidence().__dict__, "median_ms": 2.0})
    assert missing_index_findings([chosen], [cheap], relaxed) == []


def test_a_guard_watching_many_endpoints_corrects_for_chance() -> None:
    """p = 0.004 on one endpoint of twelve is what chance gives one bake in twenty: no breach; p = 1e-6 is one."""
    names = [f"e{i}" for i in range(12)]
    validated = LoadTestResult(
        run_id="v", label="validation", requests=1, duration_s=1, endpoints=[stats(n, 4, 5) for n in names]
    )
    bake = LoadTestResult(
        run_id="b", label="bake", requests=1, duration_s=1, endpoints=[stats(n, 30, 40) for n in names]
    )
    chance = {n: TailExcess(0.5, 0.06, 0.05) for n in names} | {"e3": TailExcess(0.004, 0.1, 0.05)}
    assert not guard_check(validated, bake, PLAYBOOK, chance).breached
    real = chance | {"e3": TailExcess(1e-6, 0.3, 0.05)}
    result = guard_check(validated, bake, PLAYBOOK, real)
    assert result.breached and result.reasons[0].startswith("e3:") and "Holm-adjusted p=1.2e-05" in result.reasons[0]


def test_holm_keeps_a_real_change_among_unchanged_endpoints() -> None:
    adjusted = holm_adjusted({"a": 1e-8, "b": 0.3, "c": 0.02, "d": 0.9})
    assert adjusted["a"] == pytest.approx(4e-8)  # smallest of four: times four
    assert adjusted["c"] == pytest.approx(0.06)  # second: times three
    assert adjusted["b"] == pytest.approx(0.6) and adjusted["d"] == pytest.approx(0.9)  # never below an earlier one


def test_a_clear_gain_with_a_wide_interval_is_improved_and_says_which_rule_decided() -> None:
    """x0.30 with an interval reaching 0.89 (the demo's batch-order-products): beyond chance and past the bar.
    Asking the interval's top to clear the bar asked for confidence that the gain is at least 20%."""
    rng = np.random.default_rng(5)
    rules = PLAYBOOK.validation
    before = [rng.lognormal(np.log(18), 0.6, 12) for _ in range(3)]
    after = [rng.lognormal(np.log(5.4), 0.6, 12) for _ in range(3)]
    verdict = compare_endpoint(stats("c", 12, 18), stats("c", 4, 5.4), before, after, rules, 0.01)
    assert verdict.verdict == Verdict.IMPROVED, verdict.explanation
    assert verdict.explanation.startswith("improved: the CI lies below x1")
    assert "past the bar x0.80" in verdict.explanation
    assert verdict.detectable_change is not None and 0 < verdict.detectable_change < 1


def test_a_verdict_on_too_few_requests_says_so() -> None:
    """Six requests an arm cannot reach p < 0.01 whatever the gain: the verdict names the small sample and the
    smallest change it could have detected."""
    rng = np.random.default_rng(6)
    rules = PLAYBOOK.validation
    before, after = rng.lognormal(np.log(160), 0.5, 6), rng.lognormal(np.log(67), 0.5, 6)
    verdict = compare_endpoint(stats("a", 150, 160), stats("a", 60, 67), [before], [after], rules, 0.01)
    assert verdict.verdict != Verdict.IMPROVED
    assert "too few requests to decide: 6/6" in verdict.explanation, verdict.explanation
    assert verdict.detectable_change is not None and verdict.detectable_change > rules.min_improvement


def test_runs_that_disagree_say_more_runs_would_decide_not_more_requests() -> None:
    """Two hundred requests a run, but one run of each arm twice as slow as the other (a host busy during it):
    pooled, the requests would decide; it is the runs that differ, and the verdict says so."""
    rng = np.random.default_rng(8)
    rules = PLAYBOOK.validation

    def arm() -> list[np.ndarray]:
        return [rng.lognormal(np.log(10), 0.05, 200), rng.lognormal(np.log(20), 0.05, 200)]

    verdict = compare_endpoint(stats("a", 15, 20), stats("a", 15, 20), arm(), arm(), rules, 0.01)
    assert verdict.verdict not in (Verdict.IMPROVED, Verdict.REGRESSED), verdict.explanation
    assert "the runs disagree too much to decide: 400/400 requests in 2/2 runs" in verdict.explanation
    assert "more runs per arm would decide" in verdict.explanation


def test_a_real_gain_short_of_the_bar_is_not_worse_and_says_it_missed_the_bar() -> None:
    rng = np.random.default_rng(7)
    rules = PLAYBOOK.validation
    before = [rng.normal(100, 3, 400) for _ in range(3)]
    after = [rng.normal(90, 3, 400) for _ in range(3)]
    verdict = compare_endpoint(stats("m", 100, 105), stats("m", 90, 95), before, after, rules, 0.01)
    assert verdict.verdict == Verdict.NOT_WORSE
    assert "faster beyond chance, but the estimate x0.9" in verdict.explanation


def test_min_effect_is_a_share_or_a_time_and_the_old_field_keeps_its_meaning() -> None:
    assert Validation(min_effect="10%").effect_floor_ms(200) == pytest.approx(20)
    assert Validation(min_effect="5 ms").effect_floor_ms(200) == pytest.approx(5)
    assert Validation(min_effect_ms=7).min_effect == "7ms"
    with pytest.raises(ValidationError, match="write a share such as '10%' or a time such as '5ms'"):
        Validation(min_effect="10")


def test_requests_per_run_grow_with_the_spread_and_focus_stays_within_the_load() -> None:
    rng = np.random.default_rng(8)
    rules = Validation()
    tight, wide = rng.lognormal(3, 0.1, 2000), rng.lognormal(3, 0.5, 2000)
    assert requests_per_run(tight, rules) < requests_per_run(wide, rules)
    # The need is met: a run of that many requests from the wide law detects the bar with power 0.9.
    needed = requests_per_run(wide, rules)
    spread = run_log_spread(wide, 0.95, needed) * np.sqrt(2 / rules.runs_per_arm)
    assert detectable_change(spread, rules.confidence) <= rules.min_improvement + 0.01
    weights = {"hot": 2.0, "rare": 0.05, "slow": 0.1, "other": 1.0}
    fits = focus_rates({"rare": 80, "slow": 40}, weights, rate=40, run_s=8)
    assert fits.rates == {"rare": 10.0, "slow": 5.0} and not fits.capped
    plan = focus_rates({"rare": 240, "slow": 40, "other": 5000}, weights, rate=40, run_s=8)
    assert plan.capped and sum(plan.rates.values()) == pytest.approx(40 * FOCUS_SHARE_CAP, abs=0.01)
    # Water-filling: the huge need of one endpoint does not starve the others; the small need is met in full,
    # the rest shared to a common level, none below its production share.
    assert plan.rates["slow"] == pytest.approx(5.0)
    assert plan.rates["rare"] == pytest.approx(30 - 5 - 40 / 3.15, abs=0.01)
    assert plan.rates["other"] == pytest.approx(40 / 3.15, abs=0.01)
    script_plans = {
        p.name: p for p in plan_scenarios(_target(weights), rate=40, duration_s=8, max_vus=100, focus=plan.rates)
    }
    assert sum(p.rate_per_minute for p in script_plans.values()) == pytest.approx(40 * 60, abs=3)
    assert script_plans["slow"].rate_per_minute == round(plan.rates["slow"] * 60)
    assert script_plans["hot"].rate_per_minute == 40 * (1 - FOCUS_SHARE_CAP) * 60  # the background: what is left


def _target(weights: dict[str, float]) -> Target:
    return Target.model_validate(
        {
            "name": "w",
            "base_url": "http://127.0.0.1:1",
            "endpoints": [{"name": n, "path": f"/{n}", "weight": w} for n, w in weights.items()],
        }
    )


def test_extra_rounds_go_only_where_the_budget_could_decide() -> None:
    """An endpoint with a few requests a run and an interval from x0.5 to x3 stays undecided whatever rounds are
    left; one whose interval just reaches past the margin can be settled; a change's endpoint whose gain is
    still undecided gets rounds while the budget could prove it."""
    rules = PLAYBOOK.validation.model_copy(update={"runs_per_arm": 3, "max_runs_per_arm": 6})

    def verdict(name: str, ratio: float, low: float, high: float, kind: Verdict) -> EndpointVerdict:
        base = stats(name, 10, 20)
        return EndpointVerdict(
            endpoint=name,
            before=base,
            after=base,
            p95_ratio=ratio,
            p50_ratio=ratio,
            p_value_faster=0.5,
            p_value_slower=0.5,
            hodges_lehmann_ms=0.0,
            ratio=ratio,
            ratio_low=low,
            ratio_high=high,
            runs_before=3,
            runs_after=3,
            verdict=kind,
            explanation="",
        )

    sparse = verdict("sparse", 1.5, 0.6, 3.0, Verdict.INCONCLUSIVE)
    close = verdict("close", 1.0, 0.9, 1.15, Verdict.INCONCLUSIVE)
    gaining = verdict("gaining", 0.78, 0.6, 1.02, Verdict.NOT_WORSE)
    change = ChangeRecord(
        change_id="C1",
        recommendation_id="R1",
        lever="x",
        kind="sql",
        role=Role.BACKEND_DEVELOPER,
        endpoint="gaining",
    )
    everything = [sparse, close, gaining]
    assert undecided_endpoints(everything, [change], rules) == ["close", "gaining", "sparse"]
    assert undecided_endpoints(everything, [change], rules, decidable_only=True) == ["close", "gaining"]
    assert not could_settle(sparse, rules) and could_settle(close, rules) and could_prove(gaining, rules)
    spent = close.model_copy(update={"runs_after": 6})
    assert not could_settle(spent, rules)


def _runs(rng: np.random.Generator, sizes: list[int], scale: float) -> list[np.ndarray]:
    return [rng.lognormal(np.log(scale), 0.3, size) for size in sizes]


def test_an_endpoint_whose_traces_cover_its_requests_is_judged_on_the_servers_time() -> None:
    """Covered in every run: the verdict's numbers are the root spans'; one run with half its requests traced,
    or an endpoint found saturated (its gain is the wait before the handler), stays on the client's numbers."""
    rng = np.random.default_rng(7)
    client_before, client_after = _runs(rng, [80, 80], 12.0), _runs(rng, [80, 80], 6.0)
    server_before, server_after = _runs(rng, [80, 79], 10.0), _runs(rng, [80, 80], 4.0)
    client = {
        "search": (
            stats("search", 12, 20, requests=160),
            stats("search", 6, 10, requests=160),
            client_before,
            client_after,
        ),
    }
    arms, measured_at = server_side_arms(
        client, [{"search": run} for run in server_before], [{"search": run} for run in server_after]
    )
    assert measured_at == {"search": "server"}
    before, after, before_runs, _ = arms["search"]
    assert before.requests == 159 and before_runs is not client_before and after.p50 < 5
    [verdict] = judge_endpoints(arms, PLAYBOOK, measured_at)
    assert verdict.measured_at == "server" and "inside the service" in verdict.explanation

    half = [{"search": server_before[0]}, {"search": server_before[1][:40]}]
    _, measured_at = server_side_arms(client, half, [{"search": run} for run in server_after])
    assert measured_at == {"search": "client"}
    _, measured_at = server_side_arms(
        client, [{"search": run} for run in server_before], [{"search": run} for run in server_after], {"search"}
    )
    assert measured_at == {"search": "client"}
    [verdict] = judge_endpoints(client, PLAYBOOK)
    assert verdict.measured_at == "client" and "inside the service" not in verdict.explanation


def test_every_endpoint_over_its_target_the_lightest_too_says_the_load_is_too_much() -> None:
    """A single event loop under more load than it serves: even the health check waits. The note says that the
    load, not the endpoints, is the problem; one endpoint under its target is no such sign."""
    overloaded = [stats("health", 900, 1300), stats("search", 1500, 2600), stats("item", 1200, 5900)]
    note = overload_note(overloaded, PLAYBOOK, {"health": 0.8})
    assert "even health" in note and "p95 is 0.8 ms" in note and "load.rate" in note and "auto" in note
    assert overload_note([*overloaded[1:], stats("health", 2, 4)], PLAYBOOK, None) == ""
    assert overload_note(overloaded[:2], PLAYBOOK, None) == ""  # two endpoints say little about a whole service


def test_latency_findings_on_an_endpoint_meeting_its_target_with_margin_are_low() -> None:
    def finding(kind: FindingType, endpoint: str) -> Finding:
        return Finding(
            id="", type=kind, endpoint=endpoint, severity="critical", impact=0.5, estimated_gain_ms=20, summary="s"
        )

    found = [
        finding(FindingType.CACHEABLE, "home"),  # p95 30 of 50 ms: meets with margin
        finding(FindingType.CACHEABLE, "close"),  # 45 of 50 ms: meets, but only just
        finding(FindingType.N_PLUS_ONE, "slow"),  # 200 of 50 ms: misses
        finding(FindingType.UNCOMPRESSED, "home"),  # bytes on the wire: not in the load test's latency
    ]
    baseline = [stats("home", 10, 30), stats("close", 20, 45), stats("slow", 100, 200)]
    judged = judged_by_slo(found, baseline, PLAYBOOK)

    assert [f.severity for f in judged] == ["low", "critical", "critical", "critical"]
    assert "meets its p95 target, 30.0 ms against 50 ms" in judged[0].summary and "was critical" in judged[0].summary


def test_a_large_scan_behind_an_endpoint_within_its_target_is_found_and_low() -> None:
    """At a light load the search meets its 50 ms target, but its handler's time is nearly all a full scan of
    300,000 rows on a filtered column: found (it grows with the table), and low while the target holds."""
    light = [stats("search", 15, 20), stats("item", 10, 12, requests=3000)]
    assert "search" not in [s.stats.endpoint for s in endpoints_to_inspect(light, PLAYBOOK)]  # not slow, not dominant
    scan = StatementEvidence(**{**_evidence().__dict__, "median_ms": 14.0})
    [finding] = judged_by_slo(
        missing_index_findings(served_endpoints(light, PLAYBOOK), [scan], PLAYBOOK), light, PLAYBOOK
    )
    assert finding.type.value == "missing-index" and finding.severity == "low"
    assert "within its target today" in finding.summary and finding.evidence["columns"] == ["customer_email"]


def test_where_the_service_spends_its_time_a_finding_is_not_played_down() -> None:
    """The search meets its 50 ms target (p95 30 ms) but is most of all serving time: its scan is at least
    medium, and a latency finding there stays as severe as it is (it costs capacity whatever its latency)."""
    dominant = [stats("search", 25, 30), stats("item", 1, 2, requests=300)]
    scan = StatementEvidence(**{**_evidence().__dict__, "median_ms": 20.0})
    [finding] = missing_index_findings(served_endpoints(dominant, PLAYBOOK), [scan], PLAYBOOK)
    assert finding.severity == "medium"
    cached = Finding(
        id="",
        type=FindingType.CACHEABLE,
        endpoint="search",
        severity="high",
        impact=0.5,
        estimated_gain_ms=20,
        summary="s",
    )
    assert judged_by_slo([cached], dominant, PLAYBOOK)[0].severity == "high"


def _busy_host_runs(rng: np.random.Generator, count: int, scale: float) -> list[np.ndarray]:
    """Runs of 40 requests whose body is narrow and whose tail (a tenth of them waited for a busy CPU) is long,
    with a level drifting by a few percent from run to run: each run's p95 falls in the tail and moves by a
    fifth, its median by a few percent (as on a busy two-core host)."""

    def run() -> np.ndarray:
        body = rng.lognormal(np.log(60), 0.25, 40)
        waited = rng.random(40) < 0.1
        return scale * rng.uniform(0.97, 1.03) * np.where(waited, body * (1 + rng.exponential(2.0, 40)), body)

    return [run() for _ in range(count)]


def test_every_request_a_fifth_slower_is_regressed_through_the_typical_request() -> None:
    """Where the tail's interval cannot tell a 20% slowdown in five runs, the median's can: the regression is
    declared (protective), said to come from the typical request, and A/A runs stay clean."""
    rules = PLAYBOOK.validation
    caught, false, tail_alone = 0, 0, 0
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        before, after, again = (_busy_host_runs(rng, 5, 1.0), _busy_host_runs(rng, 5, 1.2), _busy_host_runs(rng, 5, 1))
        slowed = compare_endpoint(stats("e", 60, 140), stats("e", 72, 168), before, after, rules, 0.01)
        caught += slowed.verdict == Verdict.REGRESSED
        tail_alone += slowed.verdict == Verdict.REGRESSED and "typical request" not in slowed.explanation
        if slowed.verdict == Verdict.REGRESSED and "typical request" in slowed.explanation:
            assert slowed.median_ratio is not None and slowed.median_ratio_low is not None
            assert slowed.median_ratio_low > 1, slowed.explanation
        same = compare_endpoint(stats("e", 60, 140), stats("e", 60, 140), before, again, rules, 0.01)
        false += same.verdict in (Verdict.REGRESSED, Verdict.IMPROVED)
    assert caught >= 36, (caught, tail_alone)  # >= 90%
    assert tail_alone < caught / 2, (caught, tail_alone)  # the tail alone would have missed most of them
    assert false <= 2, false  # <= 5% of A/A comparisons


def test_a_host_that_drifted_between_three_runs_per_arm_is_not_a_slower_typical_request() -> None:
    """Every after run was measured while the host was a quarter slower (CI shares two cores): the medians of
    three runs per arm are steady and apart, yet three runs cannot tell a drift of the host from a change, so
    the typical request's view declares nothing (the tail's view, wide on so few runs, decides alone)."""
    rng = np.random.default_rng(7)
    before, after = _busy_host_runs(rng, 3, 1.0), _busy_host_runs(rng, 3, 1.25)
    verdict = compare_endpoint(stats("e", 60, 140), stats("e", 75, 175), before, after, PLAYBOOK.validation, 0.01)
    assert verdict.median_ratio is not None and verdict.median_ratio_low is not None
    assert verdict.median_ratio_low > 1  # the median's interval alone would have called it a regression
    assert "typical request" not in verdict.explanation, verdict.explanation


def test_resource_targets_are_read_as_shares_of_the_host_and_a_miss_is_a_finding() -> None:
    from ratchet.analysis.slo import (
        TARGET_RESOURCES,
        check_resource_slos,
        resource_findings,
        unchecked_resources_note,
    )
    from ratchet.contracts import ResourceSummary

    playbook = Playbook.model_validate(
        {
            "name": "p",
            "approvers": ["a"],
            "slo": {"resources": {"cpu_percent": 70, "cpu_peak_percent": 85, "memory_peak_percent": 90}},
        }
    )
    # Two cores: a mean of 150% of one core is 75% of the host; a peak of 160% is 80%; 1 GB of 8 GB is 12.5%.
    busy = ResourceSummary(
        samples=30,
        processes=2,
        cpu_percent_median=150,
        cpu_percent_max=160,
        rss_mb_max=1024,
        threads_max=8,
        cores=2,
        cpu_percent_mean=150,
        rss_mb_mean=900,
        memory_total_mb=8192,
    )
    checks = check_resource_slos(busy, playbook)
    assert {(c.metric, c.met) for c in checks} == {
        ("cpu_percent", False),
        ("cpu_peak_percent", True),
        ("memory_peak_percent", True),
    }  # memory_percent is not set: not checked
    [finding] = resource_findings(checks, busy)
    assert finding.endpoint == TARGET_RESOURCES and finding.severity == "medium"
    assert "mean CPU 75% over the 70% target" in finding.summary, finding.summary
    # No lever is implied: the planner offers the person advice that names the miss.
    from ratchet.analysis.advice import advice

    assert "cpu_percent 75% (target 70" in advice(finding) and "cores" in advice(finding), advice(finding)
    # Nothing sampled (a target on another host), or no target set: nothing checked, nothing found.
    assert check_resource_slos(None, playbook) == []
    assert "cpu_percent, cpu_peak_percent, memory_peak_percent" in (unchecked_resources_note(None, playbook) or "")
    assert unchecked_resources_note(busy, playbook) is None and unchecked_resources_note(None, PLAYBOOK) is None
    assert check_resource_slos(busy, PLAYBOOK) == []
    assert (
        resource_findings(check_resource_slos(busy.model_copy(update={"cpu_percent_mean": 100}), playbook), busy) == []
    )


def test_the_throughput_target_is_read_at_the_stress_knee_and_a_wide_gap_is_architecture_level() -> None:
    from ratchet.analysis.knee import StepSample, stress_report
    from ratchet.analysis.throughput import (
        capacity_findings,
        is_architecture_level,
        throughput_check,
        unchecked_throughput_note,
    )
    from ratchet.contracts import StressPlan

    playbook = Playbook.model_validate({"name": "p", "approvers": ["a"], "slo": {"throughput_rps": 100}})
    rates = [20.0, 40.0, 60.0, 80.0, 160.0]
    plan = StressPlan(
        rates=rates, step_s=10, abort_error_rate=0.5, abort_p95_ms=4000, slo_p95_ms=50, max_error_rate=0.05
    )

    def run(sustains: float) -> StressReport:
        samples = [
            StepSample(i, int(rate * 10), 10, 20.0 if rate <= sustains else 400.0, 0, 0) for i, rate in enumerate(rates)
        ]
        return stress_report(samples, plan, ended_by_itself=False)

    def found(sustains: float) -> list[Finding]:
        stress = run(sustains)
        return capacity_findings(throughput_check(stress, playbook), stress, playbook)

    # Broke at 80 with the knee at 60: 60% of the target, a gap the other fixes may close (medium).
    [near] = found(70)
    assert near.severity == "medium" and not is_architecture_level(near) and near.evidence["broke_at_rate"] == 80
    # Broke at 40: a fifth of the target, past the playbook's architecture share (0.5).
    [far] = found(30)
    assert far.severity == "high" and is_architecture_level(far) and "20 req/s, 20% of the 100" in far.summary
    # The knee at 160 meets it; no target, no check.
    assert found(1000) == [] and throughput_check(run(1000), playbook).met  # type: ignore[union-attr]
    assert throughput_check(run(30), PLAYBOOK) is None and unchecked_throughput_note(None, PLAYBOOK) is None
    # No stress run, or one that never broke below the target: not judged, and said.
    assert "no stress load" in (unchecked_throughput_note(None, playbook) or "")
    low = stress_report(
        [StepSample(i, int(r * 10), 10, 20.0, 0, 0) for i, r in enumerate(rates[:3])],
        plan.model_copy(update={"rates": rates[:3]}),
        ended_by_itself=False,
    )
    assert throughput_check(low, playbook) is None
    assert "up to its highest step, 60 req/s" in (unchecked_throughput_note(low, playbook) or "")


def test_the_database_target_reads_every_statement_span_and_names_the_slowest(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ratchet.analysis.database_slo import database_check, database_findings, unchecked_database_note
    from ratchet.store.statement_times import statement_times

    # 95 quick lookups (2 ms), 5 slow scans (80 ms), an HTTP span and a warm-up scan that do not count.
    rows = [("SELECT * FROM t WHERE id = ?", "sqlite", 2.0, False)] * 95
    rows += [("SELECT * FROM t WHERE email = ?", "sqlite", 80.0, False)] * 5
    rows += [("", "", 500.0, False), ("SELECT slow", "sqlite", 900.0, True)]
    spans = tmp_path / "spans.parquet"
    pq.write_table(
        pa.table(
            {
                "statement": [r[0] for r in rows],
                "name": ["GET /x" if not r[1] else "SELECT" for r in rows],
                "db_system": [r[1] for r in rows],
                "duration_ms": [r[2] for r in rows],
                "warmup": [r[3] for r in rows],
            }
        ),
        spans,
    )
    times = statement_times(spans)
    assert times is not None and times.spans == 100
    assert times.p95_ms == pytest.approx(2.0 + 0.05 * 78, abs=0.5)  # between the two kinds, interpolated
    assert times.slowest[0] == ("SELECT * FROM t WHERE email = ?", 5, 80.0)
    playbook = Playbook.model_validate({"name": "p", "approvers": ["a"], "slo": {"db_p95_ms": 2.5}})
    check = database_check(times, playbook)
    assert check is not None and not check.met
    [finding] = database_findings(check, times)
    assert finding.severity == "high" and "email = ?" in finding.summary  # 5.9 ms: past twice the 2.5 ms target
    assert database_check(times, PLAYBOOK) is None
    assert "no statement span" in (unchecked_database_note(None, playbook) or "")
    assert statement_times(tmp_path / "none.parquet") is None


def test_a_knee_moved_by_one_step_is_within_the_runs_resolution_and_two_steps_is_a_verdict() -> None:
    from ratchet.analysis.reshapes import knee_verdict
    from ratchet.contracts import StressStep

    def run(knee: float | None) -> StressReport:
        steps = [
            StressStep(rate=r, achieved_rate=r, requests=10, p95=10, error_rate=0, dropped=0, met=True)
            for r in (10.0, 20.0, 30.0, 40.0, 50.0)
        ]
        return StressReport(steps=steps, knee_rate=knee)

    assert knee_verdict(run(30), run(40)) == (
        "unchanged",
        "knee 30 -> 40 req/s: within one step of 10 req/s, one stress run a side",
    )
    assert knee_verdict(run(30), run(50))[0] == "improved"
    assert knee_verdict(run(50), run(30)) == ("regressed", "knee 50 -> 30 req/s, 2 steps lower")
    assert knee_verdict(run(None), run(20))[0] == "improved"  # no step met before: from nothing
