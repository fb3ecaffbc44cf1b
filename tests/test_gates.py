"""Gates: signals, escalation on timeout, abort with rollback on timeout, rejection at deployment."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from ratchet import campaigns
from ratchet.contracts import ApprovalInput, CampaignState, ChangeState, RejectionInput
from ratchet.settings import Settings
from tests.campaign_helpers import effects, finish, wait_for, waiting_at
from tests.conftest import TEST_PLAYBOOK, Shop

pytestmark = pytest.mark.asyncio(loop_scope="session")

GATES = """
gates:
  planning: {timeout: 6s, on_timeout: escalate, escalate_to: [carol], escalation_timeout: 10m}
  deployment: {timeout: 2s, on_timeout: abort}
"""


def playbook_with_gates(folder: Path) -> Path:
    """The test playbook with short gate timeouts: planning escalates, deployment aborts."""
    text = TEST_PLAYBOOK.read_text()
    start = text.index("gates:")
    end = text.index("slo:")
    path = folder / "gates.yaml"
    path.write_text(text[:start] + GATES.lstrip() + text[end:])
    return path


async def test_escalation_then_timeout_at_deployment_aborts_and_rolls_back(
    client: Client, settings: Settings, worker: None, shop: Shop, tmp_path: Path, index_only_target: Path
) -> None:
    indexes_before = shop.indexes()
    campaign_id = await campaigns.launch(
        client, settings, playbook_file=playbook_with_gates(tmp_path), target_file=index_only_target
    )
    await wait_for(client, campaign_id, waiting_at("planning"), what="the planning gate")
    # carol may answer only once the gate has escalated to her.
    with pytest.raises(campaigns.RefusedError, match="not an approver"):
        await campaigns.approve(client, campaign_id, ApprovalInput(phase="planning", approver="carol"))
    escalated = await wait_for(
        client, campaign_id, lambda s: s.waiting is not None and s.waiting.escalated, what="the escalation"
    )
    assert "carol" in escalated.waiting.approvers  # type: ignore[union-attr]

    # Fire-and-forget: a refused signal is logged, an accepted one moves the campaign on.
    handle = campaigns.handle(client, campaign_id)
    await handle.signal("approve_signal", ApprovalInput(phase="planning", approver="mallory"))
    await handle.signal("approve_signal", ApprovalInput(phase="planning", approver="carol"))
    final = await finish(client, campaign_id)

    messages = [e.message for e in final.events]
    assert any("ignored approval signal from mallory" in m for m in messages)
    assert any("escalated to carol" in m for m in messages)
    assert [(g.phase.value, g.decision, g.by) for g in final.gates] == [
        ("planning", "approved", "carol"),
        ("deployment", "timed-out", ""),
    ]
    assert final.state == CampaignState.ABORTED and "deployment gate timed out" in final.outcome
    assert [c.state for c in final.changes] == [ChangeState.ROLLED_BACK]
    assert shop.indexes() == indexes_before
    assert len(effects(settings, campaign_id, "rollback")) == 1


async def test_rejection_at_deployment_rolls_back(
    client: Client, settings: Settings, worker: None, shop: Shop, index_only_target: Path
) -> None:
    indexes_before = shop.indexes()
    campaign_id = await campaigns.launch(client, settings, playbook_file=TEST_PLAYBOOK, target_file=index_only_target)
    await wait_for(client, campaign_id, waiting_at("planning"), what="the planning gate")
    await campaigns.approve(client, campaign_id, ApprovalInput(phase="planning", approver="alice"))
    before_deploy = await wait_for(client, campaign_id, waiting_at("deployment"), what="the deployment gate")
    assert [c.state for c in before_deploy.changes] == [ChangeState.APPLIED]
    assert len(shop.indexes()) == len(indexes_before) + 1
    await campaigns.reject(client, campaign_id, RejectionInput(approver="bob", reason="release freeze"))
    final = await finish(client, campaign_id)

    assert final.state == CampaignState.ROLLED_BACK
    assert final.outcome == "deployment rejected: changes rolled back"
    assert final.changes[0].state == ChangeState.ROLLED_BACK and "release freeze" in final.changes[0].reason
    assert shop.indexes() == indexes_before
