"""End to end on the real demo shop: verdicts that keep what proved itself and undo what did not, and a guard
that watches what is deployed. Real Temporal, real workers, real k6, real SQLite."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from ratchet import campaigns
from ratchet.contracts import ApprovalInput, CampaignState, CampaignStatus, ChangeState, Recommendation
from ratchet.settings import Settings
from tests.campaign_helpers import approved_campaign, assert_replays, finish, ratchet_cli, wait_for, waiting_at
from tests.conftest import ROOT, SHOP_TARGET, TEST_PLAYBOOK, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

PRODUCT_SLOWDOWN = {"/products/{product_id}": 2.0}
# Claims the e-mail search, in truth lifts a slowdown of the product pages (set before the campaign): with the
# right index beside it, validation undoes it (leave-one-out: without it the search is as fast), which puts the
# product pages back to three times slower, as they were found.
PRODUCT_FASTPATH = """
  - name: product-fastpath
    kind: http
    description: A fast path for the e-mail search (in truth it lifts a slowdown of the product pages).
    addresses: [{finding: missing-index, endpoint: orders-by-email}]
    apply: [{method: POST, url: "{{ target.base_url }}/admin/flags", json: {injected_slowdown: {}}}]
    rollback:
      - {method: POST, url: "{{ target.base_url }}/admin/flags", json: {injected_slowdown: {"/products/{product_id}": 2.0}}}
    check: {method: GET, url: "{{ target.base_url }}/admin/flags", applied_when: "response.json.injected_slowdown == {}"}
"""
# A tunable number for the e-mail search that changes nothing it does (it sizes the tax client's pool).
SEARCH_POOL = """
  - name: search-pool
    kind: http
    role: devops-engineer
    description: Size the search's connection pool (in truth the tax client's, which the search never uses).
    addresses: [{finding: missing-index, endpoint: orders-by-email}]
    parameter: {kind: range, minimum: 1, maximum: 32, baseline: 1, default: 16, integer: true}
    apply: [{url: "{{ target.base_url }}/admin/flags", json: {tax_client_connections: "{{ parameter }}"}}]
    rollback: [{url: "{{ target.base_url }}/admin/flags", json: {tax_client_connections: 1}}]
    check: {url: "{{ target.base_url }}/admin/flags", applied_when: "response.json.tax_client_connections == parameter"}
"""


def is_email_index(recommendation: Recommendation) -> bool:
    return recommendation.lever is not None and recommendation.lever.name.startswith("index-orders")


async def approve_through(
    client: Client, settings: Settings, playbook: Path, target: Path, picked: set[str]
) -> tuple[str, CampaignStatus]:
    """A campaign with the index and the levers named in ``picked`` approved at planning, then deployment."""
    return await approved_campaign(
        client,
        settings,
        playbook,
        target,
        lambda r: r.lever is not None and (is_email_index(r) or r.lever.name in picked),
        1 + len(picked),
    )


async def test_the_bake_after_a_partial_undo_measures_what_is_deployed_and_holds(
    client: Client, settings: Settings, worker: None, shop: Shop, index_only_target: Path, tmp_path: Path
) -> None:
    """The index and the misattributed fast path are both applied; validation keeps the index and undoes the fast
    path, which slows the product pages again. The bake's reference is measured after that undo, so the
    product pages are as slow there as in the bake and the guard holds (a reference taken from the last
    validation run, with the fast path still in, saw them three times faster and breached)."""
    httpx.post(f"{shop.url}/admin/flags", json={"injected_slowdown": PRODUCT_SLOWDOWN}).raise_for_status()
    target = tmp_path / "fastpath.yaml"
    target.write_text(index_only_target.read_text() + PRODUCT_FASTPATH)
    campaign_id, final = await approve_through(client, settings, TEST_PLAYBOOK, target, {"product-fastpath"})

    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    changes = {c.lever: c for c in final.changes}
    fastpath = changes.pop("product-fastpath")
    [index] = changes.values()
    assert index.state == ChangeState.KEPT, index
    attribution = [e.message for e in final.events if "attribution" in e.message or "validation" in e.message]
    assert fastpath.state == ChangeState.ROLLED_BACK and "leave-one-out" in fastpath.reason, (fastpath, attribution)
    # The shop is left as found where the change was undone: the product pages slowed again.
    assert httpx.get(f"{shop.url}/admin/flags").json()["injected_slowdown"] == PRODUCT_SLOWDOWN
    # The guard's reference shows the product pages as deployed: slower than in validation's after arm.
    reference = final.guard_reference
    assert reference is not None and final.validation is not None
    product_reference, product_validated = reference.stats("product"), final.validation.stats("product")
    assert product_reference is not None and product_validated is not None
    # The handler three times slower reads as 1.7-1.9x at the client (the request's fixed costs are not slowed).
    assert product_reference.p50 > 1.3 * product_validated.p50, (product_reference, product_validated)
    assert final.guard is not None and not final.guard.breached, final.guard.reasons
    await assert_replays(client, campaign_id)


async def test_a_tuned_number_beside_an_index_on_the_same_endpoint_is_tried_without_it_and_undone(
    client: Client, settings: Settings, worker: None, shop: Shop, index_only_target: Path, tmp_path: Path
) -> None:
    """A pool size that does nothing for the search is tuned after the search's index is applied. Its trials run
    with the index held back, so they measure the unindexed search at every value; the index's gain is never
    credited to it, and it is undone, while the index stays."""
    target = tmp_path / "pool.yaml"
    target.write_text(index_only_target.read_text() + SEARCH_POOL)
    campaign_id, final = await approve_through(client, settings, TEST_PLAYBOOK, target, {"search-pool"})

    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    changes = {c.lever: c for c in final.changes}
    pool = changes.pop("search-pool")
    [index] = changes.values()
    assert index.state == ChangeState.KEPT, index
    assert pool.state == ChangeState.ROLLED_BACK, pool
    assert pool.reason.startswith(("tuning:", "leave-one-out")), pool.reason
    assert any("search-pool: trials run with" in e.message and index.lever in e.message for e in final.events)
    # Every trial measured the search without its index: far slower than the validated search with it.
    search = next(v for v in final.verdicts if v.endpoint == "orders-by-email")
    assert search.verdict.value == "improved", search.explanation
    measured = [t.p95_ms for t in pool.trials if t.p95_ms is not None]
    assert measured and min(measured) > 2 * search.after.p95, (measured, search.after.p95)
    assert httpx.get(f"{shop.url}/admin/flags").json()["tax_client_connections"] == 1
    await assert_replays(client, campaign_id)


async def test_a_verdict_on_too_few_requests_says_so_and_the_change_is_undone(
    client: Client, settings: Settings, worker: None, shop: Shop, tmp_path: Path
) -> None:
    """A playbook that allows one request per run and two-second runs: the recommendations cache is many times
    faster, yet three requests an arm cannot rule out chance. The change is undone, and its reason says the
    sample was too small to decide and what it could have detected, rather than that nothing improved."""
    playbook = tmp_path / "starved.yaml"
    playbook.write_text(
        (ROOT / "tests" / "playbooks" / "detect.yaml").read_text()
        + "gates:\n  planning: {timeout: 10m}\n"
        + "validation:\n  runs_per_arm: 2\n  max_runs_per_arm: 2\n  run_duration: 2s\n"
        + "  min_requests_per_run: 1\n  min_improvement: 0.3\n  on_inconclusive: accept\n"
    )
    campaign_id = await campaigns.launch(client, settings, playbook_file=playbook, target_file=SHOP_TARGET)
    status = await wait_for(client, campaign_id, waiting_at("planning"), what="the planning gate")
    [cache] = [r.id for r in status.recommendations if r.lever and r.lever.name == "cache-recommendations"]
    await campaigns.approve(client, campaign_id, ApprovalInput(phase="planning", approver="alice", only=[cache]))
    final = await finish(client, campaign_id, timeout_s=300)

    assert final.state == CampaignState.ROLLED_BACK, (final.outcome, final.outcome_detail)
    [change] = final.changes
    assert change.state == ChangeState.ROLLED_BACK
    assert "too few requests to decide" in change.reason and "can detect only a change of" in change.reason, (
        change.reason
    )
    verdict = next(v for v in final.verdicts if v.endpoint == "recommendations")
    assert verdict.verdict.value != "improved"
    assert verdict.detectable_change is not None and verdict.detectable_change > 0.3
    # The validation load said what each endpoint under test got.
    assert final.validation_load is not None and "recommendations" in final.validation_load.focus
    shown = await ratchet_cli(settings, "status", campaign_id, "--json")
    assert shown.returncode == 0 and '"detectable_change"' in shown.stdout, shown.stderr
    await assert_replays(client, campaign_id)
