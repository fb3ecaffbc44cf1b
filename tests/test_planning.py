"""Planning on plain data: one recommendation per lever, the surest fix first, conflicts held back, manual
advice that quotes its evidence, payload changes judged on bytes, and a target whose declared conflicts name a lever it does not have refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ratchet.analysis.conflicts import conflict, touches
from ratchet.analysis.decisions import bytes_verdict, changes_without_effect, payload_endpoints
from ratchet.analysis.disproved import disproofs, hold_back_disproved
from ratchet.analysis.planning import plan
from ratchet.config.common import FindingType, Role
from ratchet.config.playbook import Validation
from ratchet.config.target import Lever, Target
from ratchet.contracts import (
    CampaignStatus,
    ChangeRecord,
    ChangeState,
    EndpointStats,
    EndpointVerdict,
    Finding,
    Verdict,
)

FLAGS = "http://127.0.0.1:9/admin/flags"


def flag_lever(name: str, addresses: list[dict[str, str]], flags: dict[str, Any], **more: Any) -> dict[str, Any]:
    off = {key: None for key in flags}
    return {
        "name": name,
        "kind": "http",
        "addresses": addresses,
        "apply": [{"url": FLAGS, "json": flags}],
        "rollback": [{"url": FLAGS, "json": off}],
    } | more


def target(*levers: dict[str, Any]) -> Target:
    return Target.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:9",
            "endpoints": [{"name": n, "path": f"/{n}"} for n in ("export", "script", "invoice", "quote", "history")],
            "levers": list(levers),
        }
    )


def finding(id_: str, kind: FindingType, endpoint: str, impact: float, **evidence: Any) -> Finding:
    return Finding(
        id=id_,
        type=kind,
        endpoint=endpoint,
        severity="high",
        impact=impact,
        estimated_gain_ms=10.0,
        summary=f"{kind.value} on {endpoint}",
        evidence=evidence,
    )


def parsed(lever: dict[str, Any]) -> Lever:
    return target(lever).levers[0]


GZIP = flag_lever("gzip", [{"finding": "uncompressed"}], {"gzip": True})
ASSETS = flag_lever("asset-pipeline", [{"finding": "uncompressed", "endpoint": "script"}], {"assets": True})
POOL_8 = flag_lever("pool-8", [{"finding": "saturation", "endpoint": "invoice"}], {"tax_connections": 8})
POOL_16 = flag_lever("pool-16", [{"finding": "saturation", "endpoint": "quote"}], {"tax_connections": 16})


def test_a_lever_for_several_findings_is_one_recommendation_and_a_specific_lever_beats_a_wildcard() -> None:
    findings = [
        finding("F1", FindingType.UNCOMPRESSED, "export", 0.3),
        finding("F2", FindingType.UNCOMPRESSED, "script", 0.2),
    ]
    recommendations = plan(findings, target(GZIP, ASSETS), limit=10)
    by_lever = {r.lever.name: r for r in recommendations if r.lever is not None}
    assert set(by_lever) == {"gzip", "asset-pipeline"} and len(recommendations) == 2
    gzip, assets = by_lever["gzip"], by_lever["asset-pipeline"]
    # gzip is the only fix for the export, and fixes the script too: one change for both findings.
    assert gzip.recommended and gzip.finding_ids == ["F1", "F2"] and gzip.endpoints == ["export", "script"]
    assert gzip.impact == pytest.approx(0.5) and "also addresses F2" in gzip.rationale
    # For the script, the lever written for it is the surer fix, so it is recommended as well.
    assert assets.recommended and assets.finding_ids == ["F2"] and assets.feasibility > gzip.feasibility - 0.1
    assert recommendations[0].id == "R1" and recommendations[0].lever.name == "gzip"  # type: ignore[union-attr]


def test_a_change_for_payload_findings_is_judged_on_the_bytes_it_saves_there() -> None:
    """gzip addresses the export's and the script's size, and a slow quote: bytes on the first two, latency on
    the quote. Proven by bytes, it stays though no endpoint got faster; shrinking nothing, it goes, whatever
    another change did for the export's latency."""
    findings = [
        finding("F1", FindingType.UNCOMPRESSED, "export", 0.3),
        finding("F2", FindingType.LARGE_PAYLOAD, "script", 0.2),
        finding("F3", FindingType.SATURATION, "quote", 0.1),
    ]
    wide_gzip = flag_lever(
        "gzip", [{"finding": "uncompressed"}, {"finding": "large-payload"}, {"finding": "saturation"}], {"gzip": True}
    )
    [recommendation] = plan(findings, target(wide_gzip), limit=10)
    change = ChangeRecord(
        change_id="C1",
        recommendation_id=recommendation.id,
        lever="gzip",
        kind="http",
        role=Role.BACKEND_DEVELOPER,
        endpoint="export",
        endpoints=recommendation.endpoints,
    )
    assert payload_endpoints(change, [recommendation], findings) == ["export", "script"]
    rules = Validation()
    smaller = bytes_verdict("export", 1_328_519, 96_101, rules)
    assert smaller.verdict == Verdict.IMPROVED and "smaller by 93%" in smaller.explanation
    same = bytes_verdict("script", 680_820, 680_820, rules)
    assert same.verdict == Verdict.NOT_WORSE and bytes_verdict("x", 100, 200, rules).verdict == Verdict.REGRESSED

    export_faster = [_latency_verdict("export", Verdict.IMPROVED), _latency_verdict("quote", Verdict.NOT_WORSE)]
    shrank = change.model_copy(update={"bytes_attribution": [smaller, same]})
    assert changes_without_effect([shrank], [_latency_verdict("export", Verdict.NOT_WORSE)]) == []
    shrank_nothing = change.model_copy(
        update={"bytes_attribution": [same.model_copy(update={"endpoint": "export"}), same]}
    )
    assert changes_without_effect([shrank_nothing], export_faster) == [shrank_nothing]
    # Its latency endpoint still counts.
    quote_faster = [_latency_verdict("quote", Verdict.IMPROVED)]
    assert changes_without_effect([shrank_nothing], quote_faster) == []


def _latency_verdict(endpoint: str, verdict: Verdict) -> EndpointVerdict:
    numbers = EndpointStats(endpoint=endpoint, requests=100, errors=0, error_rate=0, p50=5, p95=9, p99=11, mean=5)
    return EndpointVerdict(
        endpoint=endpoint,
        before=numbers,
        after=numbers,
        p95_ratio=1,
        p50_ratio=1,
        p_value_faster=0.5,
        p_value_slower=0.5,
        hodges_lehmann_ms=0,
        verdict=verdict,
        explanation=f"{endpoint} {verdict.value}",
    )


def test_levers_that_set_the_same_flag_are_never_recommended_together() -> None:
    findings = [
        finding("F1", FindingType.SATURATION, "invoice", 0.4),
        finding("F2", FindingType.SATURATION, "quote", 0.1),
    ]
    first, second = plan(findings, target(POOL_8, POOL_16), limit=10)
    assert conflict(parsed(POOL_8), parsed(POOL_16)).startswith("both change flag POST")
    assert (first.lever.name, first.recommended) == ("pool-8", True)  # type: ignore[union-attr]
    assert (second.lever.name, second.recommended) == ("pool-16", False)  # type: ignore[union-attr]
    assert "held back: it conflicts with pool-8" in second.rationale
    assert first.conflicts_with == [second.id] and second.conflicts_with == [first.id]


def test_declared_conflicts_and_the_playbook_limit_hold_levers_back_as_alternatives() -> None:
    cache = flag_lever(
        "history-cache", [{"finding": "n-plus-one", "endpoint": "history"}], {"cache": 600}, conflicts_with=["batch"]
    )
    batch = flag_lever("batch", [{"finding": "n-plus-one", "endpoint": "history"}], {"batch": True})
    [f1] = [finding("F1", FindingType.N_PLUS_ONE, "history", 0.3)]
    best, other = plan([f1], target(cache, batch), limit=10)
    assert best.recommended and not other.recommended and best.conflicts_with == [other.id]
    assert conflict(*target(cache, batch).levers) == "the target declares they conflict"

    findings = [
        finding("F1", FindingType.UNCOMPRESSED, "export", 0.3),
        finding("F2", FindingType.SATURATION, "invoice", 0.4),
    ]
    limited = plan(findings, target(GZIP, POOL_8), limit=1)
    assert [(r.lever.name, r.recommended) for r in limited] == [("pool-8", True), ("gzip", False)]  # type: ignore[union-attr]
    assert "at most 1 change" in limited[1].rationale  # still listed: a person may pick it


def test_a_finding_without_a_lever_gets_advice_quoting_its_evidence() -> None:
    n1 = finding(
        "F1",
        FindingType.N_PLUS_ONE,
        "history",
        0.3,
        statement="SELECT * FROM items WHERE id = ?",
        calls_per_request=48,
        trace_ids=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )
    sequential = finding(
        "F2",
        FindingType.SEQUENTIAL_CALLS,
        "quote",
        0.2,
        saved_ms=61.5,
        targets=["GET stock/{id}", "GET prices/{id}"],
        trace_ids=[],
    )
    advice_for_n1, advice_for_calls = plan([n1, sequential], target(), limit=10)
    assert not advice_for_n1.recommended and advice_for_n1.lever is None
    assert advice_for_n1.advice.startswith("The 48 runs of `SELECT * FROM items WHERE id = ?` per request in history")
    assert "IN (...)" in advice_for_n1.advice and "Trace 4bf92f3577b34da6a3ce929d0e0e4736" in advice_for_n1.advice
    assert "GET stock/{id}; GET prices/{id}" in advice_for_calls.advice and "61.5 ms" in advice_for_calls.advice


def test_what_levers_touch() -> None:
    sql = Target.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:9",
            "database": {"url": "sqlite:////tmp/x.db"},
            "endpoints": [{"name": "e", "path": "/"}],
            "levers": [
                {
                    "name": "ix",
                    "kind": "sql",
                    "addresses": [{"finding": "missing-index"}],
                    "apply": ["CREATE INDEX IF NOT EXISTS ix_a ON orders (a)", "PRAGMA cache_size = 10000"],
                    "rollback": ["DROP INDEX ix_a"],
                }
            ],
        }
    )
    assert touches(sql.levers[0]) == {"index ix_a", "setting cache_size"}
    assert touches(parsed(POOL_8)) == {f"flag POST {FLAGS} tax_connections"}


def test_conflicts_with_an_unknown_lever_is_refused_with_the_valid_names() -> None:
    with pytest.raises(ValidationError, match=r"conflicts_with names unknown lever\(s\) \['bach'\]; valid: gzip"):
        target(GZIP, flag_lever("cache", [{"finding": "cacheable"}], {"cache": 1}, conflicts_with=["bach"]))


@pytest.mark.parametrize("kind", list(FindingType))
def test_every_finding_type_gets_advice_even_with_thin_evidence(kind: FindingType) -> None:
    """Advice never fails on a finding whose evidence lacks the usual keys (older or hand-made findings)."""
    # A missing index is defined by what the plan scanned: that much evidence it always has.
    scan = {"table": "orders", "columns": ["email"]} if kind == FindingType.MISSING_INDEX else {}
    [manual] = plan([finding("F1", kind, "history", 0.2, **scan)], target(), limit=10)
    assert manual.lever is None and manual.advice
    assert "history" in manual.advice or "orders(email)" in manual.advice


def _campaign(campaign_id: str, state: ChangeState, reason: str, gain_ms: float) -> CampaignStatus:
    """A finished campaign that tried the pool lever for the invoice's saturation."""
    lever_target = target(POOL_8)
    found = finding("F1", FindingType.SATURATION, "invoice", 0.5).model_copy(update={"estimated_gain_ms": gain_ms})
    [recommendation] = plan([found], lever_target, limit=5)
    change = ChangeRecord(
        change_id="C1",
        recommendation_id=recommendation.id,
        lever="pool-8",
        kind="http",
        role=Role.BACKEND_DEVELOPER,
        endpoint="invoice",
        state=state,
        reason=reason,
    )
    return CampaignStatus(
        campaign_id=campaign_id,
        target="t",
        playbook="p",
        findings=[found],
        recommendations=[recommendation],
        changes=[change],
    )


@pytest.mark.parametrize(
    ("earlier", "gain_now", "held"),
    [
        ([("c1", ChangeState.ROLLED_BACK, "did not improve invoice: x0.98")], 10.0, True),
        ([("c1", ChangeState.ROLLED_BACK, "leave-one-out: without it the others give the same")], 10.0, True),
        # The evidence changed materially: twice the gain the lever was disproved on.
        ([("c1", ChangeState.ROLLED_BACK, "did not improve invoice: x0.98")], 20.0, False),
        # Undone for another reason: says nothing of the lever's effect.
        ([("c1", ChangeState.ROLLED_BACK, "deployment rejected: release freeze")], 10.0, False),
        ([("c1", ChangeState.ROLLED_BACK, "guard breached: invoice p95 x3")], 10.0, False),
        # Disproved, then kept by a later campaign: the later one counts.
        ([("c1", ChangeState.ROLLED_BACK, "did not improve invoice"), ("c2", ChangeState.KEPT, "")], 10.0, False),
    ],
)
def test_a_lever_disproved_on_a_finding_is_held_back_until_the_evidence_changes(
    earlier: list[tuple[str, ChangeState, str]], gain_now: float, held: bool
) -> None:
    known = disproofs([_campaign(c, state, reason, 10.0) for c, state, reason in earlier])
    now = finding("F1", FindingType.SATURATION, "invoice", 0.5).model_copy(update={"estimated_gain_ms": gain_now})
    planned, notes = hold_back_disproved(plan([now], target(POOL_8), limit=5), [now], known)

    assert planned[0].recommended is not held
    assert bool(notes) is held
    if held:
        assert "c1" in planned[0].rationale and "--retry-disproved" in notes[0]
