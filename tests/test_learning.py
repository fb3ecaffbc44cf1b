"""Learning from stored outcomes: a gain model that planning ranks by once there are enough outcomes, and an
isolation forest that says when a baseline is unlike the endpoint's earlier ones.

Synthetic data with a known relation, seeded; planning and the anomaly check also through a real SQLite store
filled with synthetic finished campaigns (no Temporal: the activities' methods are called directly)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from activities.assessment import AssessmentActivities
from activities.planning import AnalysisActivities
from ratchet.analysis.anomaly import BaselineSample, baseline_anomalies, check_baseline
from ratchet.analysis.learning import FEATURES, MIN_OUTCOMES, Outcome, Pair, describe, features, outcomes_of, train
from ratchet.analysis.planning import plan
from ratchet.config.common import FindingType, Phase
from ratchet.config.playbook import Playbook
from ratchet.config.target import Target
from ratchet.contracts import (
    AssessRequest,
    CampaignState,
    CampaignStatus,
    ChangeRecord,
    ChangeState,
    EndpointStats,
    EndpointVerdict,
    Finding,
    LoadTestResult,
    PhaseRecord,
    PlanRequest,
    Recommendation,
    Verdict,
)
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import Campaign, Measurement, RecommendationRecord

START = datetime(2026, 9, 1, 9, 0, tzinfo=UTC)
PLAYBOOK = Playbook(name="p", approvers=["a"], slo={"default": {"p95_ms": 50}})
FLAGS = "http://127.0.0.1:9/admin/flags"


def lever(name: str, finding: str, endpoint: str) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "http",
        "addresses": [{"finding": finding, "endpoint": endpoint}],
        "apply": [{"url": FLAGS, "json": {name: True}}],
        "rollback": [{"url": FLAGS, "json": {name: None}}],
    }


TARGET = Target.model_validate(
    {
        "name": "shop",
        "base_url": "http://127.0.0.1:9",
        "endpoints": [{"name": "orders", "path": "/orders"}, {"name": "catalog", "path": "/catalog"}],
        "levers": [lever("batch-items", "n-plus-one", "orders"), lever("cache-catalog", "cacheable", "catalog")],
    }
)


def n_plus_one(ms: float, *, id_: str = "F1", impact: float = 0.1, estimate: float = 5.0) -> Finding:
    """An N+1 on orders whose window is ``ms``; its own estimate is deliberately off (the rules' weakness)."""
    return Finding(
        id=id_,
        type=FindingType.N_PLUS_ONE,
        endpoint="orders",
        severity="high",
        impact=impact,
        estimated_gain_ms=estimate,
        summary=f"orders: N+1, {ms:.0f} ms",
        evidence={"window_ms": ms, "calls_per_request": 20, "share_of_request": 0.6},
    )


def cacheable(ms: float, *, id_: str = "F2", impact: float = 0.4, estimate: float = 40.0) -> Finding:
    return Finding(
        id=id_,
        type=FindingType.CACHEABLE,
        endpoint="catalog",
        severity="medium",
        impact=impact,
        estimated_gain_ms=estimate,
        summary=f"catalog: cacheable, {ms:.0f} ms",
        evidence={"self_ms": ms, "share_of_request": 0.5, "estimated_hit_ratio": 0.9},
    )


# ---------------------------------------------------------------- the model on plain data


def synthetic_outcomes(count: int, seed: int) -> list[Outcome]:
    """Gain = 0.8 x the N+1's window (ms) + noise; a cache gains 3 ms whatever its finding says."""
    rng = np.random.default_rng(seed)
    outcomes = []
    for i in range(count):
        if i % 3 == 2:
            finding, gain = cacheable(float(rng.uniform(20, 120))), 3.0 + float(rng.normal(0, 1))
        else:
            ms = float(rng.uniform(10, 200))
            finding, gain = n_plus_one(ms), 0.8 * ms + float(rng.normal(0, 5))
        outcomes.append(Outcome(f"c-{i}", "C1", "lever", Pair(finding, "http", "low", 0.6), gain, kept=gain > 0))
    return outcomes


def test_the_model_ranks_held_out_pairs_by_their_gain_and_beats_a_constant() -> None:
    training, held_out = synthetic_outcomes(60, seed=1), synthetic_outcomes(30, seed=2)
    model = train(training)
    assert model is not None and model.outcomes == 60 and model.campaigns == 60
    assert len(features(training[0].pair)) == len(FEATURES)
    predicted = np.array(model.predict([o.pair for o in held_out]))
    actual = np.array([o.gain_ms for o in held_out])
    # The N+1 fixes in the order of their gains; every pair whose gains differ by more than the noise in order.
    fixes = [i for i, o in enumerate(held_out) if o.pair.finding.type == FindingType.N_PLUS_ONE]
    assert spearmanr(predicted[fixes], actual[fixes]).statistic > 0.95
    apart = [(i, j) for i in range(30) for j in range(30) if actual[i] > actual[j] + 20]
    assert apart and all(predicted[i] > predicted[j] for i, j in apart)
    constant = np.mean([o.gain_ms for o in training])
    assert np.mean(np.abs(predicted - actual)) < 0.3 * np.mean(np.abs(constant - actual))
    # Cross-validated on the training outcomes, it is far better than the rules' fixed estimates.
    assert model.beats_rules and model.cv_mae_ms < 0.3 * model.rules_mae_ms
    assert describe(model, 60).startswith("learned from 60 outcomes of 60 campaign(s) (cross-validated MAE ")
    # Deterministic: the same outcomes give the same model.
    again = train(training)
    assert again is not None and again.predict([o.pair for o in held_out]) == list(predicted)


def test_below_the_minimum_there_is_no_model_and_the_rules_say_so() -> None:
    few = synthetic_outcomes(MIN_OUTCOMES - 1, seed=3)
    assert train(few) is None
    assert (
        describe(None, len(few))
        == f"rule-based: {MIN_OUTCOMES - 1} outcome(s) stored, {MIN_OUTCOMES} needed to learn from"
    )
    recommendations = plan([n_plus_one(150.0), cacheable(50.0)], TARGET, limit=10)
    assert all(r.gain_source == "rules" for r in recommendations)


def test_a_model_no_better_than_the_rules_is_not_used() -> None:
    # Gains are noise around what the findings themselves estimate: the rules are right, the model cannot beat them.
    rng = np.random.default_rng(4)
    outcomes = []
    for i in range(30):
        estimate = float(rng.uniform(10, 100))
        pair = Pair(n_plus_one(float(rng.uniform(10, 200)), estimate=estimate), "http", "low", 1.0)
        outcomes.append(Outcome(f"c-{i}", "C1", "batch", pair, estimate + float(rng.normal(0, 2)), kept=True))
    model = train(outcomes)
    assert model is not None and not model.beats_rules
    assert describe(model, 30).startswith("rule-based: a model learned from 30 outcomes")


# ---------------------------------------------------------------- outcomes of stored campaigns


def stats(endpoint: str, p95: float, requests: int = 1200, errors: int = 0, p50: float | None = None) -> EndpointStats:
    p50 = p95 / 2.5 if p50 is None else p50
    return EndpointStats(
        endpoint=endpoint,
        requests=requests,
        errors=errors,
        error_rate=errors / max(requests, 1),
        p50=p50,
        p95=p95,
        p99=p95 * 1.5,
        mean=p50 * 1.2,
    )


def verdict(endpoint: str, before: float, after: float) -> EndpointVerdict:
    return EndpointVerdict(
        endpoint=endpoint,
        before=stats(endpoint, before),
        after=stats(endpoint, after),
        p95_ratio=after / before,
        p50_ratio=after / before,
        p_value_faster=0.001,
        p_value_slower=0.999,
        hodges_lehmann_ms=after - before,
        verdict=Verdict.IMPROVED if after < before * 0.95 else Verdict.NOT_WORSE,
        explanation="synthetic",
    )


def recommendation(id_: str, finding: Finding, lever_index: int) -> Recommendation:
    chosen = TARGET.levers[lever_index]
    return Recommendation(
        id=id_,
        finding_id=finding.id,
        endpoint=finding.endpoint,
        title=chosen.name,
        lever=chosen,
        role=chosen.role,
        impact=finding.impact,
        feasibility=0.6,
        risk="low",
        effort="none",
        predicted_gain_ms=finding.estimated_gain_ms * 0.6,
        score=0.1,
        rationale="",
        finding_ids=[finding.id],
        endpoints=[finding.endpoint],
    )


def finished_campaign(number: int, window_ms: float, self_ms: float, at: datetime) -> CampaignStatus:
    """Both levers applied and kept; the N+1 fix took 0.8 x its window off orders, the cache 3 ms off catalog."""
    findings = [n_plus_one(window_ms), cacheable(self_ms)]
    validation = at + timedelta(minutes=30)
    return CampaignStatus(
        campaign_id=f"c-{number:02d}",
        target="shop",
        playbook="p",
        state=CampaignState.COMPLETED,
        phases=[PhaseRecord(phase=Phase.VALIDATION, title="Validation", started_at=validation)],
        findings=findings,
        recommendations=[recommendation("R1", findings[0], 0), recommendation("R2", findings[1], 1)],
        baseline=LoadTestResult(
            run_id=f"c-{number:02d}-baseline",
            label="baseline",
            requests=2400,
            duration_s=60,
            endpoints=[stats("orders", 100 + window_ms), stats("catalog", 80.0)],
        ),
        changes=[
            ChangeRecord(
                change_id="C1",
                recommendation_id="R1",
                lever="batch-items",
                kind="http",
                role=TARGET.levers[0].role,
                endpoint="orders",
                state=ChangeState.KEPT,
            ),
            ChangeRecord(
                change_id="C2",
                recommendation_id="R2",
                lever="cache-catalog",
                kind="http",
                role=TARGET.levers[1].role,
                endpoint="catalog",
                state=ChangeState.KEPT,
            ),
        ],
        verdicts=[verdict("orders", 100 + window_ms, 100 + 0.2 * window_ms), verdict("catalog", 80.0, 77.0)],
    )


def test_outcomes_are_the_measured_changes_with_their_own_verdict_first() -> None:
    status = finished_campaign(1, 100.0, 50.0, START)
    orders, catalog = outcomes_of(status)
    assert (orders.lever, orders.gain_ms, orders.kept) == ("batch-items", pytest.approx(80.0), True)
    assert orders.pair.baseline is not None and orders.pair.baseline.traffic_share == pytest.approx(0.5)
    assert catalog.gain_ms == pytest.approx(3.0)
    # Its leave-one-out verdict (with it against without it) is the change's own gain: it wins over the whole's.
    status.changes[0].attribution = [verdict("orders", 150.0, 140.0)]
    assert outcomes_of(status)[0].gain_ms == pytest.approx(10.0)
    # Undone before the validation began (functional safety): never measured, it teaches nothing.
    status.changes[1].state = ChangeState.ROLLED_BACK
    status.changes[1].rolled_back_at = START + timedelta(minutes=10)
    assert [o.lever for o in outcomes_of(status)] == ["batch-items"]
    # Undone after it (no endpoint of its improved): measured, it counts, as not kept.
    status.changes[1].rolled_back_at = START + timedelta(hours=1)
    assert [(o.lever, o.kept) for o in outcomes_of(status)][1] == ("cache-catalog", False)
    # A campaign still running has no outcome yet.
    assert outcomes_of(status.model_copy(update={"state": CampaignState.RUNNING})) == []


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A store of its own (SQLite in a temporary data folder); no Temporal."""
    return Settings(home=tmp_path / "ratchet")


def fill_campaigns(settings: Settings, count: int) -> None:
    rng = np.random.default_rng(5)
    with session_for(settings.resolved_store_url) as session:
        for i in range(count):
            at = START + timedelta(days=i)
            status = finished_campaign(i + 1, float(rng.uniform(10, 200)), float(rng.uniform(20, 120)), at)
            session.add(
                Campaign(
                    id=status.campaign_id,
                    target="shop",
                    playbook="p",
                    state=status.state.value,
                    created_at=at,
                    status_json=status.model_dump_json(),
                )
            )
        # Another target's and an unfinished campaign's outcomes are not this target's.
        other = finished_campaign(99, 50.0, 50.0, START).model_copy(update={"campaign_id": "x-1", "target": "blog"})
        session.add(
            Campaign(id="x-1", target="blog", playbook="p", state="completed", status_json=other.model_dump_json())
        )
        running = finished_campaign(98, 50.0, 50.0, START).model_copy(update={"campaign_id": "r-1"})
        session.add(
            Campaign(id="r-1", target="shop", playbook="p", state="running", status_json=running.model_dump_json())
        )
        session.commit()


def current_campaign(settings: Settings) -> PlanRequest:
    """Rules: the cache first (impact 0.4 against 0.1); what the outcomes say: the N+1 fix takes far more off."""
    with session_for(settings.resolved_store_url) as session:
        session.add(Campaign(id="now", target="shop", playbook="p", state="running"))
        for s in (stats("orders", 250.0), stats("catalog", 80.0)):
            session.add(
                Measurement(
                    run_id="now-baseline",
                    campaign_id="now",
                    label="baseline",
                    endpoint=s.endpoint,
                    requests=s.requests,
                    errors=0,
                    p50=s.p50,
                    p95=s.p95,
                    p99=s.p99,
                    mean=s.mean,
                    samples_path="",
                )
            )
        session.commit()
    return PlanRequest(
        campaign_id="now", findings=[n_plus_one(150.0), cacheable(50.0)], target=TARGET, playbook=PLAYBOOK
    )


def test_planning_learns_from_the_stores_finished_campaigns_once_there_are_enough(settings: Settings) -> None:
    request = current_campaign(settings)
    activities = AnalysisActivities(settings)
    before = activities._plan(request)
    assert before.gain_model == f"rule-based: 0 outcome(s) stored, {MIN_OUTCOMES} needed to learn from"
    assert [r.lever.name for r in before.recommendations if r.lever] == ["cache-catalog", "batch-items"]
    assert all(r.gain_source == "rules" for r in before.recommendations)

    fill_campaigns(settings, 12)  # two outcomes each: 24 outcomes of 12 campaigns
    after = activities._plan(request)
    assert after.gain_model.startswith("learned from 24 outcomes of 12 campaign(s) (cross-validated MAE ")
    first, second = after.recommendations
    assert (first.lever.name, second.lever.name) == ("batch-items", "cache-catalog")  # type: ignore[union-attr]
    assert first.gain_source == second.gain_source == "learned"
    # Predicted from the outcomes (0.8 x 150 ms, within what the forest saw), not the finding's 5 ms x 0.6.
    assert 80 < first.predicted_gain_ms < 160 and second.predicted_gain_ms < 10
    assert (
        first.score > second.score
        and f"predicted gain {first.predicted_gain_ms:.1f} ms learned from 24 earlier outcomes" in first.rationale
    )
    with session_for(settings.resolved_store_url) as session:
        stored = session.get(RecommendationRecord, "now:R1")
        assert stored is not None and stored.predicted_gain_ms == first.predicted_gain_ms
        assert Recommendation.model_validate_json(stored.body_json).gain_source == "learned"


def test_old_payloads_still_parse_with_the_rule_based_defaults() -> None:
    old = recommendation("R1", n_plus_one(10.0), 0).model_dump(exclude={"gain_source"})
    assert Recommendation.model_validate(old).gain_source == "rules"
    from ratchet.contracts import AssessResult, PlanResult

    assert PlanResult.model_validate({"recommendations": []}).gain_model == "rule-based"
    assert AssessResult.model_validate({"findings": [], "slo": []}).anomalies == []


# ---------------------------------------------------------------- anomalous baselines


def history(count: int, seed: int = 7) -> list[BaselineSample]:
    """Baselines of one endpoint: p95 around 100 ms (5% run-to-run), p50 around 40, p99 around 150."""
    rng = np.random.default_rng(seed)
    spread = np.exp(rng.normal(0, [0.04, 0.05, 0.07], size=(count, 3))) * [40, 100, 150]
    return [BaselineSample(p50=p50, p95=p95, p99=p99, requests=1200, errors=0) for p50, p95, p99 in spread.tolist()]


def test_a_baseline_whose_p95_tripled_is_flagged_and_an_ordinary_one_is_not() -> None:
    earlier = history(12)
    # The tail tripled (p99 with it: it cannot stay below the p95); the median did not move.
    slow = check_baseline("orders", BaselineSample(p50=41.0, p95=300.0, p99=450.0, requests=1200, errors=0), earlier)
    assert slow.checked and slow.anomalous and slow.history == 12
    assert slow.score is not None and slow.threshold is not None and slow.score < slow.threshold <= -0.5
    assert slow.sentence.startswith("orders: baseline unlike its 12 earlier ones (isolation score ")
    assert "p95 300.0 ms against " in slow.sentence and "p99 450.0 ms" in slow.sentence and "p50" not in slow.sentence
    usual = check_baseline("orders", BaselineSample(p50=40.5, p95=102.0, p99=148.0, requests=1200, errors=0), earlier)
    assert usual.checked and not usual.anomalous
    assert usual.sentence.startswith("orders: baseline like its 12 earlier ones (isolation score ")
    # One error where there were none, one request fewer: no anomaly by themselves.
    stray = check_baseline("orders", BaselineSample(p50=40.5, p95=102.0, p99=148.0, requests=1199, errors=1), earlier)
    assert not stray.anomalous


def test_too_little_history_is_said_and_not_judged() -> None:
    current = [stats("orders", 300.0), stats("catalog", 80.0), stats("idle", 1.0, requests=0)]
    found = baseline_anomalies(current, {"orders": history(5)})
    assert [(a.endpoint, a.checked, a.anomalous, a.score) for a in found] == [
        ("orders", False, False, None),
        ("catalog", False, False, None),
    ]
    assert found[0].sentence == "orders: not enough history to judge the baseline (5 earlier baseline(s), 8 needed)"
    assert found[1].sentence.startswith("catalog: not enough history to judge the baseline (0 earlier")


def baseline_rows(
    cid: str, samples: dict[str, BaselineSample], at: datetime, label: str = "baseline"
) -> list[Measurement]:
    return [
        Measurement(
            run_id=f"{cid}-{label}",
            campaign_id=cid,
            label=label,
            endpoint=endpoint,
            requests=s.requests,
            errors=s.errors,
            p50=s.p50,
            p95=s.p95,
            p99=s.p99,
            mean=s.p50 * 1.2,
            samples_path="",
            measured_at=at,
        )
        for endpoint, s in samples.items()
    ]


def test_the_assessment_checks_the_baseline_against_the_targets_stored_history(settings: Settings) -> None:
    """12 earlier campaigns of the shop; not counted: the current campaign's own baseline, a campaign measured
    after it, another target's, and runs that are not baselines."""
    odd = BaselineSample(p50=400.0, p95=900.0, p99=990.0, requests=90, errors=50)
    with session_for(settings.resolved_store_url) as session:
        for i, sample in enumerate(history(12)):
            cid, at = f"c-{i:02d}", START + timedelta(days=i)
            session.add(Campaign(id=cid, target="shop", playbook="p", state="completed", created_at=at))
            catalog = BaselineSample(sample.p50, sample.p95 * 0.8, sample.p99 * 0.8, 1200, 0)
            session.add_all(baseline_rows(cid, {"orders": sample, "catalog": catalog}, at))
            session.add_all(baseline_rows(cid, {"orders": odd, "catalog": odd}, at, label="validation"))
        session.add(
            Campaign(id="now", target="shop", playbook="p", state="running", created_at=START + timedelta(days=30))
        )
        now = {
            "orders": BaselineSample(41.0, 300.0, 450.0, 1200, 0),
            "catalog": BaselineSample(40.0, 80.0, 120.0, 1200, 0),
        }
        session.add_all(baseline_rows("now", now, START + timedelta(days=30)))
        for cid, target, days in (("later", "shop", 40), ("blog-1", "blog", 5)):
            session.add(Campaign(id=cid, target=target, playbook="p", state="completed"))
            session.add_all(baseline_rows(cid, {"orders": odd, "catalog": odd}, START + timedelta(days=days)))
        session.commit()
    baseline = LoadTestResult(
        run_id="now-baseline",
        label="baseline",
        requests=2400,
        duration_s=60,
        endpoints=[stats("orders", 300.0, p50=41.0), stats("catalog", 80.0, p50=40.0)],
    )
    request = AssessRequest(campaign_id="now", baseline=baseline, target=TARGET, playbook=PLAYBOOK)
    anomalies, notes = AssessmentActivities(settings)._anomalies(request)
    assert notes == []
    by_endpoint = {a.endpoint: a for a in anomalies}
    assert by_endpoint["orders"].anomalous and by_endpoint["orders"].history == 12
    assert by_endpoint["catalog"].checked and not by_endpoint["catalog"].anomalous
    assert by_endpoint["catalog"].history == 12
