"""The campaign's mechanics on fake activities (fast tier): gates, escalation and timeouts, rejection, the
guard's second window, cancellation mid-apply. The real workflow on a real Temporal server; only the target and
its measurements are fakes (tests/fake_campaign.py), so every path runs in seconds. What the real parts do
(an index really created and dropped, a real slowdown caught by the real guard: tests/test_rollout.py) is
tested on the shop."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import pytest_asyncio
from rich.console import Console
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from ratchet import campaigns
from ratchet.approvals import create_key, load_key, sign, signed_message
from ratchet.cli.views import campaign_view
from ratchet.config.common import Phase, Role
from ratchet.config.loading import load_playbook, load_target
from ratchet.config.playbook import Approvals
from ratchet.contracts import (
    ApprovalInput,
    CampaignInput,
    CampaignState,
    CampaignStatus,
    ChangeState,
    LoadTestResult,
    RejectionInput,
    RolloutChange,
    RolloutDecision,
    RolloutInput,
    Verdict,
)
from ratchet.errors import ConfigError, NotFoundError, RatchetError
from ratchet.report import render_html, render_markdown
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue, connect
from ratchet.temporal.server import temporal_binary
from tests.campaign_helpers import assert_replays, finish, ratchet_cli, ratchet_env, wait_for, waiting_at
from tests.conftest import ROOT, TEST_PLAYBOOK, free_port
from tests.fake_campaign import FAKE_TARGET, FakeService, fake_tier_settings, fake_workers
from workflows.rollout import RolloutWorkflow, rollout_id

pytestmark = pytest.mark.asyncio(loop_scope="session")


@dataclass
class Fake:
    client: Client
    settings: Settings
    service: FakeService
    folder: Path

    @property
    def target_text(self) -> str:
        """The fake target, named for this test: one campaign runs per target at a time, and a campaign another
        test left at a gate would hold the shared name."""
        return FAKE_TARGET.replace("name: fake-service\n", f"name: fake-{self.settings.task_queue_prefix}\n")

    async def launch(self, playbook: Path = TEST_PLAYBOOK, auto_approve_as: str | None = None) -> str:
        target = self.folder / "target.yaml"
        target.write_text(self.target_text)
        return await campaigns.launch(
            self.client, self.settings, playbook_file=playbook, target_file=target, auto_approve_as=auto_approve_as
        )

    async def through_validation(self, campaign_id: str) -> CampaignStatus:
        """Approve the plan and wait at the deployment gate."""
        await wait_for(self.client, campaign_id, waiting_at("planning"), what="the planning gate")
        await campaigns.approve(self.client, campaign_id, ApprovalInput(phase="planning", approver="alice"))
        return await wait_for(self.client, campaign_id, waiting_at("deployment"), what="the deployment gate")


@pytest_asyncio.fixture
async def fake(fake_tier_temporal: str, tmp_path: Path) -> AsyncIterator[Fake]:
    settings = fake_tier_settings(fake_tier_temporal, tmp_path)
    client = await connect(settings)
    service = FakeService()
    async with fake_workers(client, settings, service, tmp_path):
        yield Fake(client, settings, service, tmp_path)


def playbook_with(folder: Path, gates: str) -> Path:
    """The test playbook with other gates."""
    text = TEST_PLAYBOOK.read_text()
    path = folder / "gates.yaml"
    path.write_text(text[: text.index("gates:")] + gates.lstrip() + text[text.index("slo:") :])
    return path


async def test_two_proven_changes_are_kept_and_the_target_keeps_them(fake: Fake) -> None:
    campaign_id = await fake.launch(auto_approve_as="alice")
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    assert sorted((c.lever, c.state) for c in final.changes) == [
        ("batch-history", ChangeState.KEPT),
        ("search-cache", ChangeState.KEPT),
    ]
    assert fake.service.in_place == {"search-cache", "batch-history"}
    assert final.decision_tier == "ranked-plan", final.decision_note
    assert {v.endpoint: v.verdict.value for v in final.verdicts} == {
        "search": "improved",
        "history": "improved",
        "home": "not worse",
    }
    await assert_replays(fake.client, campaign_id)


async def test_page_loads_are_measured_on_each_device_before_and_after_the_changes_and_judged(fake: Fake) -> None:
    """The home page's LCP is 900 ms on desktop and 3,600 on mobile (a 2,500 ms target); the search cache also
    halves it: the probe's page loads are checked, and measured again with the changes, visit by visit."""
    fake.service.page_lcp = {"home": 900.0}
    fake.service.page_gains = {"search-cache": 0.5}
    playbook = fake.folder / "pages.yaml"
    text = TEST_PLAYBOOK.read_text()
    playbook.write_text(
        text.replace(
            "  default: {p95_ms: 50}\n",
            "  default: {p95_ms: 50}\n  page_load: {lcp_ms: 2500, fcp_ms: 2000, visits: 5}\n",
        )
    )
    campaign_id = await fake.launch(playbook, auto_approve_as="alice")
    final = await finish(fake.client, campaign_id)
    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    assert {(p.endpoint, p.profile) for p in final.page_loads} == {("home", "mobile"), ("home", "desktop")}
    before = {(c.endpoint, c.metric): c.met for c in final.slo_before if c.endpoint.startswith("home (")}
    assert before == {
        ("home (mobile)", "lcp_ms"): False,
        ("home (mobile)", "fcp_ms"): True,
        ("home (desktop)", "lcp_ms"): True,
        ("home (desktop)", "fcp_ms"): True,
    }, final.slo_before
    after = {(v.subject, v.metric): v for v in final.service_verdicts}
    mobile = after[("home (mobile)", "lcp_ms")]
    assert mobile.verdict == Verdict.IMPROVED and mobile.before == 3600 and mobile.after == 1800, mobile
    assert not mobile.met_before and mobile.met_after and mobile.high < 1
    assert {c.endpoint for c in final.slo_after if c.metric == "lcp_ms"} == {"home (mobile)", "home (desktop)"}
    assert len(final.page_loads_after) == 2 and all(p.visits == 5 for p in final.page_loads_after)
    await assert_replays(fake.client, campaign_id)


async def test_rate_auto_ramps_first_and_every_load_after_runs_at_the_rate_the_target_sustains(fake: Fake) -> None:
    """The target sustains 12 req/s: the ramp (5, 10, 20, 40) breaks at 20, and the baseline, validation and
    bake all run at 10; status and report say why."""
    fake.service.sustains = 12
    playbook = fake.folder / "auto.yaml"
    playbook.write_text(TEST_PLAYBOOK.read_text().replace("  rate: 30\n", "  rate: auto\n"))
    assert "rate: auto" in playbook.read_text()
    campaign_id = await fake.launch(playbook, auto_approve_as="alice")
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    assert fake.service.rates[0] == ("capacity", 5)
    assert {rate for _, rate in fake.service.rates[1:]} == {10}, fake.service.rates
    assert final.capacity is not None and final.capacity.stress is not None
    assert final.capacity.stress.knee_rate == 10 and final.capacity.stress.broke_at_rate == 20
    assert "backed off from 40: the target did not sustain 20 req/s" in final.load_rate
    assert "requests wait to be served" in final.load_rate
    assert any(e.message == final.load_rate for e in final.events)
    markdown, html = render_markdown(final), render_html(final)
    assert final.load_rate in markdown and "### Capacity run" in markdown
    assert "backed off from 40" in html and "<h3>Capacity run</h3>" in html
    await assert_replays(fake.client, campaign_id)


async def test_a_capacity_gap_no_lever_closes_is_escalated_with_its_evidence_and_no_lever_is_tried(
    fake: Fake,
) -> None:
    """The target sustains 12 req/s; the playbook asks for 100. The stress run's knee (10) is a tenth of it, and
    no lever addresses a capacity finding: an architecture-level problem. The campaign hands it to the planning
    gate's escalation approver with the knee and where it broke, and tries none of the levers it has for the
    other findings (they are still planned, for the report)."""
    fake.service.sustains = 12
    playbook = playbook_with(
        fake.folder,
        """
gates:
  planning: {timeout: 10m, escalate_to: [carol]}
  deployment: {timeout: 10m}
""",
    )
    text = (
        playbook.read_text()
        .replace("slo:\n", "slo:\n  throughput_rps: 100\n", 1)
        .replace("load:\n", "load:\n  stress: {start_rate: 10, max_rate: 100, steps: 4, step: 2s}\n", 1)
    )
    playbook.write_text(text + "alerts: {webhook_url: 'http://127.0.0.1:9/hook'}\n")
    campaign_id = await fake.launch(playbook)
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    assert final.outcome == "escalated: architecture-level problem", final.outcome
    assert final.decision_tier == "architecture"
    [capacity] = [f for f in final.findings if f.type.value == "capacity"]
    assert capacity.severity == "high" and capacity.evidence["knee_rate"] == 10, capacity
    assert capacity.evidence["broke_at_rate"] == 40 and capacity.evidence["asked_rate"] == 100
    assert "10 req/s, 10% of the 100 req/s asked" in final.outcome_detail and "to carol" in final.outcome_detail
    assert [c for c in final.slo_before if c.metric == "throughput_rps" and not c.met]
    # Nothing tried, nothing changed; the escalation went to the webhook (the fake's is unreachable: noted).
    assert final.changes == [] and not [call for call in fake.service.calls if call.startswith("apply")]
    assert "alert escalation" in fake.service.calls
    assert any(r.lever is not None for r in final.recommendations)  # the plan for the rest, in the report
    assert any(e.message.startswith("decision: architecture:") for e in final.events)
    markdown = render_markdown(final)
    assert "**Decision: architecture**" in markdown and "Scale out" in markdown
    await assert_replays(fake.client, campaign_id)


async def test_the_stress_load_runs_again_after_the_changes_and_its_knee_is_judged(fake: Fake) -> None:
    """The target sustains 12 req/s, 80 with the search cache: the stress run's knee (10 before) is 70 after,
    two steps of 30 higher: improved. Without the option nothing runs again."""
    fake.service.sustains, fake.service.sustains_with = 12, {"search-cache": 80}
    playbook = fake.folder / "shapes.yaml"
    playbook.write_text(
        TEST_PLAYBOOK.read_text()
        .replace("load:\n", "load:\n  stress: {start_rate: 10, max_rate: 100, steps: 4, step: 2s}\n", 1)
        .replace("validation:\n", "validation:\n  rerun_shapes: true\n", 1)
    )
    campaign_id = await fake.launch(playbook, auto_approve_as="alice")
    final = await finish(fake.client, campaign_id)
    assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
    [stress] = final.shape_reruns
    assert (stress.label, stress.verdict) == ("stress", "improved"), stress
    assert "knee 10 -> 70 req/s, 2 steps higher" in stress.sentence
    assert [label for label, _ in fake.service.rates].count("stress-after") == 1
    assert any(e.message.startswith("stress after the changes: improved") for e in final.events)
    assert "stress improved" in render_markdown(final)
    await assert_replays(fake.client, campaign_id)


async def test_escalation_then_timeout_at_deployment_aborts_and_rolls_back(fake: Fake) -> None:
    playbook = playbook_with(
        fake.folder,
        """
gates:
  planning: {timeout: 2s, on_timeout: escalate, escalate_to: [carol], escalation_timeout: 10m}
  deployment: {timeout: 1s, on_timeout: abort}
""",
    )
    campaign_id = await fake.launch(playbook)
    await wait_for(fake.client, campaign_id, waiting_at("planning"), what="the planning gate")
    # carol may answer only once the gate has escalated to her.
    with pytest.raises(campaigns.RefusedError, match="not an approver"):
        await campaigns.approve(fake.client, campaign_id, ApprovalInput(phase="planning", approver="carol"))
    escalated = await wait_for(
        fake.client, campaign_id, lambda s: s.waiting is not None and s.waiting.escalated, what="the escalation"
    )
    assert escalated.waiting is not None and "carol" in escalated.waiting.approvers
    # An empty choice (from any client: an unset shell variable in a script) is refused, not taken as all.
    with pytest.raises(campaigns.RefusedError, match="names no recommendation"):
        await campaigns.approve(fake.client, campaign_id, ApprovalInput(phase="planning", approver="carol", only=[]))

    # Fire-and-forget: a refused signal is logged, an accepted one moves the campaign on.
    handle = campaigns.handle(fake.client, campaign_id)
    await handle.signal("approve_signal", ApprovalInput(phase="planning", approver="mallory"))
    await handle.signal("approve_signal", ApprovalInput(phase="planning", approver="carol"))
    final = await finish(fake.client, campaign_id)

    messages = [e.message for e in final.events]
    assert any("ignored approval signal from mallory" in m for m in messages)
    assert any("escalated to carol" in m for m in messages)
    assert [(g.phase.value, g.decision, g.by) for g in final.gates] == [
        ("planning", "approved", "carol"),
        ("deployment", "timed-out", ""),
    ]
    assert final.state == CampaignState.ABORTED and "deployment gate timed out" in final.outcome
    assert [c.state for c in final.changes] == [ChangeState.ROLLED_BACK, ChangeState.ROLLED_BACK]
    assert fake.service.in_place == set()
    await assert_replays(fake.client, campaign_id)


async def test_rejection_at_deployment_rolls_back(fake: Fake) -> None:
    campaign_id = await fake.launch()
    before_deploy = await fake.through_validation(campaign_id)
    assert [c.state for c in before_deploy.changes] == [ChangeState.APPLIED, ChangeState.APPLIED]
    assert fake.service.in_place == {"search-cache", "batch-history"}
    await campaigns.reject(fake.client, campaign_id, RejectionInput(approver="bob", reason="release freeze"))
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.ROLLED_BACK
    assert final.outcome == "deployment rejected: changes rolled back"
    assert all(c.state == ChangeState.ROLLED_BACK and "release freeze" in c.reason for c in final.changes)
    assert fake.service.in_place == set()
    await assert_replays(fake.client, campaign_id)


async def test_rejection_at_planning_applies_nothing(fake: Fake) -> None:
    campaign_id = await fake.launch()
    await wait_for(fake.client, campaign_id, waiting_at("planning"), what="the planning gate")
    await campaigns.reject(fake.client, campaign_id, RejectionInput(approver="bob", reason="change freeze this week"))
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.REJECTED
    assert "nothing applied" in final.outcome and final.outcome_detail == "change freeze this week"
    assert final.changes == []
    assert not [call for call in fake.service.calls if call.startswith("apply")]
    await assert_replays(fake.client, campaign_id)


@pytest.mark.parametrize(
    "breaches", [[True, False], [True, True, True], [True, True, False]], ids=["passing", "lasting", "the-hosts"]
)
async def test_a_bake_breach_is_measured_again_and_only_one_the_changes_cause_rolls_back(
    fake: Fake, breaches: list[bool]
) -> None:
    """A breach in the first bake window is measured again; one that lasts is judged against a window with the
    changes undone: worse than without them, it is theirs (rolled back); not worse, the host's (kept)."""
    fake.service.guard_breaches = list(breaches)
    campaign_id = await fake.launch()
    await fake.through_validation(campaign_id)
    await campaigns.approve(fake.client, campaign_id, ApprovalInput(phase="deployment", approver="alice"))
    final = await finish(fake.client, campaign_id)

    events = [e.message for e in final.events]
    assert any("measuring a second window" in e for e in events), events
    said = ["breached" if breached else "held" for breached in breaches]
    assert [c for c in fake.service.calls if c.startswith("guard")] == [
        f"guard {label} {word}" for label, word in zip(["bake", "bake-2", "bake-2"], said, strict=False)
    ]
    assert final.guard is not None
    controlled = len(breaches) == 3
    assert [label for label, _ in fake.service.rates if label.startswith("bake")] == (
        ["bake", "bake-2", "bake-control"] if controlled else ["bake", "bake-2"]
    )
    if breaches == [True, True, True]:
        assert final.state == CampaignState.ROLLED_BACK
        assert final.guard.breached and "first window" in final.guard.reasons[-1], final.guard.reasons
        assert "worse than the target without the changes" in " ".join(final.guard.reasons)
        assert all(c.state == ChangeState.ROLLED_BACK and "guard breached" in c.reason for c in final.changes)
        assert fake.service.in_place == set()
    else:
        assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
        assert not final.guard.breached
        assert all(c.state == ChangeState.KEPT for c in final.changes)
        assert fake.service.in_place == {"search-cache", "batch-history"}
        if controlled:
            assert any("the host is slower than at the reference, not the changes; kept" in e for e in events)
            assert "not the changes" in final.guard.reasons[0]
        else:
            assert any("did not last" in e for e in events), events
    await assert_replays(fake.client, campaign_id)


async def test_a_cancel_while_a_lever_applies_lets_it_finish_and_undoes_everything(fake: Fake) -> None:
    # batch-history (devops) hangs in its apply; search-cache (backend) applies beside it.
    fake.service.hold_apply = {"batch-history"}
    campaign_id = await fake.launch(auto_approve_as="alice")
    await asyncio.wait_for(fake.service.applying.wait(), timeout=60)
    await campaigns.cancel(fake.client, campaign_id)
    fake.service.release.set()  # the apply finishes after the cancellation: it must be undone too
    final = await finish(fake.client, campaign_id)

    assert final.state == CampaignState.CANCELLED
    assert [c.state for c in final.changes] == [ChangeState.ROLLED_BACK, ChangeState.ROLLED_BACK]
    assert fake.service.in_place == set()
    # Newest first, each once: the apply that was running was awaited, never cut off, then undone.
    rollbacks = [c for c in fake.service.calls if c.startswith("rollback")]
    assert sorted(rollbacks) == ["rollback batch-history", "rollback search-cache"]
    await assert_replays(fake.client, campaign_id)


async def cancellation_seen(handle: WorkflowHandle[Any, Any]) -> None:
    """Returns once a workflow task has run after the cancellation request: the workflow has reacted to it."""
    while True:
        kinds = [event.event_type async for event in handle.fetch_history_events()]
        requested = kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED)
        if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in kinds[requested:]:
            return
        await asyncio.sleep(0.1)  # polling the history: each poll is a fresh read, not a wait for time to pass


async def test_a_cancelled_rollout_lets_the_apply_in_flight_finish_then_undoes_it(fake: Fake) -> None:
    # Production is changed by the rollout's own apply; cancelled while it runs, the rollout must not undo the
    # lever before the apply is over (the undo would find nothing, and the apply would then leave it in place).
    fake.service.hold_apply = {"search-cache"}
    target_file = fake.folder / "production.yaml"
    target_file.write_text(fake.target_text)
    production = load_target(target_file)
    request = RolloutInput(
        campaign_id=f"rollout-{uuid.uuid4().hex[:6]}",
        changes=[RolloutChange(change_id="C1", lever=production.levers[0], role=Role.BACKEND_DEVELOPER)],
        production=production,
        playbook=load_playbook(TEST_PLAYBOOK),
        validated=LoadTestResult(run_id="validated", label="validation", requests=0, duration_s=4, endpoints=[]),
        task_queue_prefix=fake.settings.task_queue_prefix,
    )
    handle = await fake.client.start_workflow(
        RolloutWorkflow.run, request, id=request.campaign_id, task_queue=campaign_queue(fake.settings)
    )
    await asyncio.wait_for(fake.service.applying.wait(), timeout=60)
    await handle.cancel()
    await asyncio.wait_for(cancellation_seen(handle), timeout=60)
    fake.service.release.set()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    levers = [c for c in fake.service.calls if c.endswith("search-cache")]
    assert levers == ["apply search-cache", "applied search-cache", "rollback search-cache"], fake.service.calls
    assert fake.service.in_place == set()


async def test_with_signed_approvals_a_rollout_takes_only_a_signed_abort(fake: Fake) -> None:
    key = fake.folder / "alice.key"
    playbook = load_playbook(TEST_PLAYBOOK).model_copy(
        update={
            "approvals": Approvals(mode="signed", keys={"alice": create_key(key), "bob": create_key(fake.folder / "b")})
        }
    )
    fake.service.hold_apply = {"search-cache"}
    target_file = fake.folder / "production.yaml"
    target_file.write_text(fake.target_text)
    production = load_target(target_file)
    campaign_id = f"signed-{uuid.uuid4().hex[:6]}"
    request = RolloutInput(
        campaign_id=campaign_id,
        changes=[RolloutChange(change_id="C1", lever=production.levers[0], role=Role.BACKEND_DEVELOPER)],
        production=production,
        playbook=playbook,
        validated=LoadTestResult(run_id="validated", label="validation", requests=0, duration_s=4, endpoints=[]),
        task_queue_prefix=fake.settings.task_queue_prefix,
    )
    handle = await fake.client.start_workflow(
        RolloutWorkflow.run, request, id=rollout_id(campaign_id), task_queue=campaign_queue(fake.settings)
    )
    await asyncio.wait_for(fake.service.applying.wait(), timeout=60)
    with pytest.raises(campaigns.RefusedError, match="unsigned"):
        await campaigns.decide_rollout(fake.client, campaign_id, "abort", RolloutDecision(by="alice"))
    said = await ratchet_cli(fake.settings, "rollout", "abort", campaign_id, "--as", "alice", "--key", str(key))
    assert said.returncode == 0 and "abort requested by alice" in said.stdout, said.stdout + said.stderr
    fake.service.release.set()
    result = await handle.result()
    assert result.outcome == "aborted" and fake.service.in_place == set(), result


async def test_a_lever_undone_for_no_effect_is_not_recommended_again_on_the_same_evidence(fake: Fake) -> None:
    # batch-history gives the history endpoint nothing: the first campaign undoes it, the second does not try it
    # again (and says why), a third told to retry it tries it again.
    fake.service.gains["batch-history"] = ("history", 1.0)
    first = await finish(fake.client, await fake.launch(auto_approve_as="alice"))
    assert {c.lever: c.state for c in first.changes} == {
        "search-cache": ChangeState.KEPT,
        "batch-history": ChangeState.ROLLED_BACK,
    }
    undone = next(c for c in first.changes if c.lever == "batch-history")
    assert undone.reason.startswith("did not improve"), undone.reason

    fake.service.in_place.clear()  # the same deployment as before the first campaign
    second = await finish(fake.client, await fake.launch(auto_approve_as="alice"))
    assert [c.lever for c in second.changes] == ["search-cache"], [(c.lever, c.state) for c in second.changes]
    held = next(r for r in second.recommendations if r.lever is not None and r.lever.name == "batch-history")
    assert not held.recommended and first.campaign_id in held.rationale
    assert any("batch-history not recommended for n-plus-one on history" in e.message for e in second.events)

    fake.service.in_place.clear()
    target = fake.folder / "target.yaml"
    retried = await campaigns.launch(
        fake.client,
        fake.settings,
        playbook_file=TEST_PLAYBOOK,
        target_file=target,
        auto_approve_as="alice",
        retry_disproved=True,
    )
    third = await finish(fake.client, retried)
    assert sorted(c.lever for c in third.changes) == ["batch-history", "search-cache"]
    await assert_replays(fake.client, second.campaign_id)


async def test_a_second_campaign_on_a_fixed_target_ends_at_targets_met_without_trying_the_disproved_lever(
    fake: Fake,
) -> None:
    # The history endpoint meets its target with margin (30 of 50 ms) though its N+1 is real: batching it gives
    # nothing measurable, and the first campaign undoes it. The second finds only that low finding, every target
    # met: it ends there, changing nothing.
    fake.service.base_p95["history"] = 30.0
    fake.service.gains["batch-history"] = ("history", 1.0)
    fake.service.requests["home"] = 1000  # most of the traffic: the history is not where the service spends its time
    first = await finish(fake.client, await fake.launch(auto_approve_as="alice"))
    assert {c.lever: c.state for c in first.changes} == {
        "search-cache": ChangeState.KEPT,
        "batch-history": ChangeState.ROLLED_BACK,
    }
    applied_before = len([c for c in fake.service.calls if c.startswith("apply ")])

    second = await finish(fake.client, await fake.launch(auto_approve_as="alice"))
    assert second.state == CampaignState.COMPLETED and second.outcome == "targets already met", second.outcome
    assert "1 low finding(s) left for a person" in second.outcome_detail
    [left] = second.findings
    assert left.endpoint == "history" and left.severity == "low" and "meets its p95 target" in left.summary
    assert second.changes == [] and len([c for c in fake.service.calls if c.startswith("apply ")]) == applied_before
    await assert_replays(fake.client, second.campaign_id)


async def test_ratchet_analyzes_its_own_campaign_workflows(fake: Fake) -> None:
    campaign_id = await fake.launch(auto_approve_as="alice")
    await finish(fake.client, campaign_id)
    # Visibility lists a closed campaign a moment after it ends: wait for it (a deadline, not a sleep).
    async with asyncio.timeout(30):
        while not (await fake.client.count_workflows(f'WorkflowId = "{campaign_id}"')).count:
            await asyncio.sleep(0.05)

    shown = await ratchet_cli(
        fake.settings, "workflows", "analyze", "--type", "CampaignWorkflow", "--since", "1h", "--json"
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    assert report["executions"] >= 1 and sum(report["time_split"].values()) == pytest.approx(1, abs=0.01)
    # This campaign's own steps are among those read and kept: its load tests on the perf-optimizer's queue.
    ours = duckdb.sql(
        "SELECT step, any_value(task_queue) FROM read_parquet(?) WHERE workflow_id = ? GROUP BY step",
        params=[report["steps_file"], campaign_id],
    ).fetchall()
    queues = dict(ours)
    assert {"record_campaign", "run_load_test", "apply_lever"} <= set(queues), ours
    assert queues["run_load_test"] == f"{fake.settings.task_queue_prefix}-perf-optimizer"


async def test_one_campaign_per_target_a_second_is_refused_naming_the_first_or_waits_its_turn(fake: Fake) -> None:
    first = await fake.launch()
    await wait_for(fake.client, first, waiting_at("planning"), what="the first campaign's planning gate")
    target = fake.folder / "target.yaml"

    # Refused at launch, naming the campaign that runs: by the API, and by the CLI with exit 5.
    with pytest.raises(campaigns.TargetBusyError, match=first):
        await fake.launch()
    said = await ratchet_cli(fake.settings, "launch", str(TEST_PLAYBOOK), "--target", str(target))
    assert said.returncode == 5, said.stdout + said.stderr
    assert first in said.stderr.replace("\n", "") and "--queue" in said.stderr, said.stderr

    # A campaign started by another client, past the launch's check, takes no measurement: refused at its start.
    racing = f"racing-{uuid.uuid4().hex[:6]}"
    await fake.client.start_workflow(
        "CampaignWorkflow",
        CampaignInput(
            campaign_id=racing,
            playbook=load_playbook(TEST_PLAYBOOK),
            target=load_target(target),
            task_queue_prefix=fake.settings.task_queue_prefix,
        ),
        id=racing,
        task_queue=campaign_queue(fake.settings),
    )
    refused = await finish(fake.client, racing)
    assert refused.state == CampaignState.FAILED and refused.outcome.startswith("refused"), refused.outcome
    assert refused.baseline is None and not [p for p in refused.phases if p.started_at], refused.phases

    # Queued: it waits, measuring nothing, until the first ends; then it runs.
    queued = await campaigns.launch(
        fake.client, fake.settings, playbook_file=TEST_PLAYBOOK, target_file=target, queue=True
    )
    waiting = await wait_for(
        fake.client, queued, lambda s: any(e.message.startswith("queued") for e in s.events), what="the queue"
    )
    assert waiting.baseline is None and not [p for p in waiting.phases if p.started_at], waiting.phases
    await campaigns.reject(fake.client, first, RejectionInput(approver="bob", reason="the next one goes first"))
    assert (await finish(fake.client, first)).state == CampaignState.REJECTED
    status = await wait_for(fake.client, queued, waiting_at("planning"), what="the queued campaign's planning gate")
    assert status.baseline is not None and any("the target is free" in e.message for e in status.events)
    await campaigns.reject(fake.client, queued, RejectionInput(approver="bob", reason="done"))
    await finish(fake.client, queued)
    await assert_replays(fake.client, queued)


async def temporal_update(
    fake: Fake, campaign_id: str, name: str, answer_json: str
) -> subprocess.CompletedProcess[str]:
    """An update sent with the plain temporal CLI, as the README shows."""
    argv = [temporal_binary(), "workflow", "update", "execute", "--address", fake.settings.temporal_address]
    argv += ["--workflow-id", campaign_id, "--name", name, "--input", answer_json]
    return await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)


async def test_with_signed_approvals_only_an_answer_its_approver_signed_is_taken_once(fake: Fake) -> None:
    alice_key, bob_key = fake.folder / "alice.key", fake.folder / "bob.key"
    keys = {"alice": create_key(alice_key), "bob": create_key(bob_key)}
    (fake.folder / "keyring.yaml").write_text(f"bob: {keys['bob']}\n")
    playbook = fake.folder / "signed.yaml"
    signed = TEST_PLAYBOOK.read_text() + "approvals:\n  mode: signed\n  keyring: keyring.yaml\n"
    playbook.write_text(signed)
    with pytest.raises(ConfigError, match="no public key for alice"):  # every approver needs a key
        load_playbook(playbook)
    playbook.write_text(signed + f"  keys: {{alice: {keys['alice']}}}\n")

    campaign_id = await fake.launch(playbook)
    await wait_for(fake.client, campaign_id, waiting_at("planning"), what="the planning gate")
    planning = Phase.PLANNING

    def answer(key: Path, approver: str, signed_at: datetime | None = None) -> ApprovalInput:
        when = signed_at or datetime.now(UTC)
        message = signed_message(
            campaign_id=campaign_id, action="approve", phase="planning", approver=approver, only=None, signed_at=when
        )
        return ApprovalInput(phase=planning, approver=approver, signed_at=when, signature=sign(load_key(key), message))

    refused = {
        "unsigned": ApprovalInput(phase=planning, approver="alice"),
        "forged": answer(bob_key, "alice"),  # bob's key, alice's name
        "stale": answer(alice_key, "alice", datetime.now(UTC) - timedelta(hours=1)),
    }
    for why, attempt in refused.items():
        with pytest.raises(campaigns.RefusedError, match=why):
            await campaigns.approve(fake.client, campaign_id, attempt)
    # A signal cannot be refused to its sender: it is ignored, and the campaign's events say why.
    await campaigns.handle(fake.client, campaign_id).signal("approve_signal", refused["unsigned"])
    await wait_for(
        fake.client,
        campaign_id,
        lambda s: any("ignored approval signal from alice: unsigned" in e.message for e in s.events),
    )

    # Signed by `ratchet approve --print-input`, sent with the plain temporal CLI: taken. The same again: a replay.
    printed = await ratchet_cli(
        fake.settings,
        "approve",
        campaign_id,
        "--phase",
        "planning",
        "--as",
        "alice",
        "--key",
        str(alice_key),
        "--print-input",
    )
    assert printed.returncode == 0 and '"signature"' in printed.stdout, printed.stderr
    taken = await temporal_update(fake, campaign_id, "approve", printed.stdout.strip())
    assert taken.returncode == 0 and "planning approved by alice" in taken.stdout, taken.stdout + taken.stderr
    again = await temporal_update(fake, campaign_id, "approve", printed.stdout.strip())
    assert again.returncode != 0 and "replayed" in again.stdout + again.stderr, again.stdout + again.stderr

    await wait_for(fake.client, campaign_id, waiting_at("deployment"), what="the deployment gate")
    said = await ratchet_cli(fake.settings, "approve", campaign_id, "--as", "bob", "--key", str(bob_key))
    assert said.returncode == 0 and "deployment approved by bob" in said.stdout, said.stdout + said.stderr
    assert (await finish(fake.client, campaign_id)).state == CampaignState.COMPLETED

    # --auto-approve signs too: without the approver's key nothing starts; with it, the campaign runs through.
    target = fake.folder / "target.yaml"
    with pytest.raises(RatchetError, match="needs their key"):
        await campaigns.launch(
            fake.client, fake.settings, playbook_file=playbook, target_file=target, auto_approve_as="alice"
        )
    automatic = await campaigns.launch(
        fake.client,
        fake.settings,
        playbook_file=playbook,
        target_file=target,
        auto_approve_as="alice",
        signing_key=alice_key,
    )
    assert (await finish(fake.client, automatic)).state == CampaignState.COMPLETED
    await assert_replays(fake.client, campaign_id)


def plaintext_payloads(node: object, path: str = "") -> list[str]:
    """Where a history holds a payload that is not encrypted, and what it says."""
    found: list[str] = []
    if isinstance(node, dict):
        encoding = node.get("metadata", {}).get("encoding") if isinstance(node.get("metadata"), dict) else None
        if encoding is not None and base64.b64decode(encoding) != b"binary/encrypted":
            found.append(f"{path}: {base64.b64decode(node.get('data', '')).decode('latin-1')[:80]}")
        for key, value in node.items():
            found += plaintext_payloads(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += plaintext_payloads(value, f"{path}[{index}]")
    return found


async def test_secrets_from_the_environment_never_reach_the_history_and_with_a_key_nothing_is_plaintext(
    fake: Fake, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    token, password = "hook-token-5e3c7", "db-pa55word-91"
    monkeypatch.setenv("RATCHET_TEST_HOOK_TOKEN", token)
    monkeypatch.setenv("RATCHET_TEST_LEVER_PASSWORD", password)
    playbook = fake.folder / "alerting.yaml"
    playbook.write_text(
        TEST_PLAYBOOK.read_text() + "alerts:\n  webhook_url: http://127.0.0.1:9/hooks/${RATCHET_TEST_HOOK_TOKEN}\n"
    )
    target = fake.folder / "secret-target.yaml"
    target.write_text(
        fake.target_text.replace(
            "apply: [{argv: [echo, cache on]}]", "apply: [{argv: [echo, '${RATCHET_TEST_LEVER_PASSWORD}']}]"
        )
    )
    assert "RATCHET_TEST_LEVER_PASSWORD" in target.read_text()

    async def shown(campaign_id: str) -> str:
        argv = [temporal_binary(), "workflow", "show", "--address", fake.settings.temporal_address]
        argv += ["--workflow-id", campaign_id, "--output", "json"]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def decoded_payloads(history: str) -> str:
        """Every payload's data in the history, decoded from base64 (what anyone reading Temporal sees)."""
        found: list[str] = []

        def walk(node: object) -> None:
            if isinstance(node, dict):
                if "data" in node and "metadata" in node:
                    found.append(base64.b64decode(node["data"]).decode("latin-1"))
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(json.loads(history))
        return "\n".join(found)

    campaign_id = await campaigns.launch(
        fake.client, fake.settings, playbook_file=playbook, target_file=target, auto_approve_as="alice"
    )
    final = await finish(fake.client, campaign_id)
    assert final.state == CampaignState.COMPLETED, final.outcome_detail
    history = await shown(campaign_id)
    plain = decoded_payloads(history)
    assert "${RATCHET_TEST_HOOK_TOKEN}" in plain and "${RATCHET_TEST_LEVER_PASSWORD}" in plain
    assert token not in history + plain and password not in history + plain
    report = Path(final.report_html).read_text() + Path(final.report_markdown).read_text()
    assert token not in report and password not in report
    # … nor in the Temporal server's own file (the fast tier's dev server, see conftest).
    [server_file] = (tmp_path_factory.getbasetemp() / "temporal-fast0").glob("*.db")
    stored = server_file.read_bytes() + b"".join(p.read_bytes() for p in server_file.parent.glob("*.db-wal"))
    assert b"${RATCHET_TEST_HOOK_TOKEN}" in stored  # the file holds payloads as written: the check can see them
    assert token.encode() not in stored and password.encode() not in stored

    # With a payload key, on this client and its workers, no payload in the history is readable without it.
    monkeypatch.setenv("RATCHET_PAYLOAD_KEYS", f"k1:{base64.b64encode(bytes(range(32))).decode()}")
    keyed = await connect(fake.settings)
    own_queues = fake.settings.model_copy(update={"task_queue_prefix": f"k{uuid.uuid4().hex[:8]}"})
    async with fake_workers(keyed, own_queues, FakeService(), fake.folder):
        sealed_id = await campaigns.launch(
            keyed, own_queues, playbook_file=playbook, target_file=target, auto_approve_as="alice"
        )
        assert (await finish(keyed, sealed_id)).state == CampaignState.COMPLETED
        sealed = await shown(sealed_id)
    # Search attributes are indexed by Temporal, so never encoded (the campaign's phase, state, target and
    # playbook names), nor are the SDK's own patch markers (the patch names): no secret goes there.
    readable = [
        where
        for where in plaintext_payloads(json.loads(sealed))
        if ".searchAttributes." not in where and ".patch-data." not in where
    ]
    assert not readable, readable
    assert "alice" not in decoded_payloads(sealed)  # the approver's name was in plaintext payloads before


async def test_answering_a_campaign_that_has_ended_says_so(fake: Fake) -> None:
    campaign_id = await fake.launch(auto_approve_as="alice")
    await finish(fake.client, campaign_id)
    # Any Temporal client's answer to an ended workflow (Temporal: "workflow execution already completed").
    with pytest.raises(NotFoundError, match=f"the campaign of campaign '{campaign_id}' has already ended"):
        await campaigns.reject(fake.client, campaign_id, RejectionInput(approver="alice", reason="late"))


async def test_a_finished_campaign_is_shown_and_reported_without_temporal(fake: Fake) -> None:
    campaign_id = await fake.launch(auto_approve_as="alice")
    await finish(fake.client, campaign_id)
    offline = fake.settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})  # nothing listens

    shown = await ratchet_cli(offline, "status", campaign_id, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "completed" and json.loads(shown.stdout)["source"] == "store"
    listed = await ratchet_cli(offline, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(c["campaign_id"], c["state"], c["source"]) for c in json.loads(listed.stdout)] == [
        (campaign_id, "completed", "store")
    ]
    assert "not reachable" in listed.stderr
    reported = await ratchet_cli(offline, "report", campaign_id)
    assert reported.returncode == 0, reported.stderr
    html = Path(reported.stdout.split("HTML: ", 1)[1].split()[0])
    assert html.is_file() and campaign_id in html.read_text()
    # A campaign the store does not hold still needs Temporal, and says so.
    unknown = await ratchet_cli(offline, "status", "no-such-campaign", "--json")
    assert unknown.returncode == 4 and "cannot reach Temporal" in unknown.stderr


async def test_cancel_says_when_no_worker_is_there_to_undo_the_changes(fake: Fake) -> None:
    # A campaign on queues no worker serves (another prefix): cancelling it undoes nothing until one runs.
    unserved = fake.settings.model_copy(update={"task_queue_prefix": f"none{uuid.uuid4().hex[:6]}"})
    target = fake.folder / "target.yaml"
    target.write_text(fake.target_text)
    campaign_id = await campaigns.launch(fake.client, unserved, playbook_file=TEST_PLAYBOOK, target_file=target)

    said = await ratchet_cli(unserved, "cancel", campaign_id)
    assert said.returncode == 0, said.stderr
    words = " ".join(said.stdout.split())  # the console wraps long lines
    assert "no worker serves campaigns now" in words and "`ratchet worker`" in words
    served = await fake.launch()
    said = await ratchet_cli(fake.settings, "cancel", served)
    assert "applied changes are being undone" in " ".join(said.stdout.split())
    assert (await finish(fake.client, served)).state == CampaignState.CANCELLED


async def test_the_live_view_shows_what_a_person_must_do_first(fake: Fake) -> None:
    campaign_id = await fake.launch()
    status = await wait_for(fake.client, campaign_id, waiting_at("planning"), what="the planning gate")
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(campaign_view(status))
    lines = console.export_text().splitlines()

    ask = next(i for i, line in enumerate(lines) if "Waiting for approval of planning" in line)
    assert ask < next(i for i, line in enumerate(lines) if "Phases" in line) and ask < 5, lines[:8]
    assert any(f"ratchet approve {campaign_id} --phase planning --as NAME" in line for line in lines[ask : ask + 4])
    assert any("Planning" in line and "waiting for approval" in line for line in lines), lines
    await campaigns.reject(fake.client, campaign_id, RejectionInput(approver="bob", reason="not now"))
    await finish(fake.client, campaign_id)


async def test_following_a_campaign_without_a_terminal_prints_its_events_then_the_outcome(fake: Fake) -> None:
    target = fake.folder / "target.yaml"
    target.write_text(fake.target_text)
    followed = await ratchet_cli(
        fake.settings,
        "launch",
        str(TEST_PLAYBOOK),
        "--target",
        str(target),
        "--wait",
        "--auto-approve",
        "--as",
        "alice",
    )
    assert followed.returncode == 0, followed.stderr
    out = followed.stdout
    assert "Assessment started" in out and "planning gate auto-approved as alice" in out  # the events, as lines
    outcome = next(line for line in out.splitlines() if line.startswith("Outcome: "))
    assert "change(s) kept" in outcome and "report:" not in outcome  # the report's line is a line of its own
    assert any(line.startswith("report: ") for line in out.splitlines())


@pytest.mark.parametrize("size", [(100, 30), (160, 60)], ids=["100x30", "160x60"])
async def test_in_a_real_terminal_the_approve_command_is_on_screen_at_a_gate(fake: Fake, size: tuple[int, int]) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is needed for a real terminal: `make tmux` (Debian package tmux)")
    campaign_id = await fake.launch()
    await wait_for(fake.client, campaign_id, waiting_at("planning"), what="the planning gate")
    session = f"ratchet-{uuid.uuid4().hex[:8]}"
    variables = [f"{name}={value}" for name, value in ratchet_env(fake.settings).items() if name.startswith("RATCHET_")]
    # The terminal says its size; the test run's COLUMNS and LINES would override it.
    command = [
        "env",
        "-u",
        "COLUMNS",
        "-u",
        "LINES",
        *variables,
        sys.executable,
        "-m",
        "ratchet.cli",
        "status",
        campaign_id,
    ]
    width, height = size
    tmux = ["tmux", "-L", session]  # a server of its own: nothing of a user's tmux is touched
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), shlex.join(command)],
        check=True,
        cwd=ROOT,
    )
    wanted = f"ratchet approve {campaign_id} --phase planning --as NAME"
    screen = ""
    try:
        deadline = time.monotonic() + 60
        while wanted not in screen and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling what the terminal shows, until the deadline
            shown = subprocess.run([*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True)
            screen = shown.stdout
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
    assert wanted in screen, screen
    assert "waiting for approval" in screen, screen
    await campaigns.reject(fake.client, campaign_id, RejectionInput(approver="bob", reason="not now"))
    await finish(fake.client, campaign_id)


async def test_a_schedule_starts_campaigns_that_run_and_shows_in_temporal(fake: Fake) -> None:
    from ratchet import schedules

    target = fake.folder / "target.yaml"
    target.write_text(fake.target_text)
    name = f"weekly-{fake.settings.task_queue_prefix}"
    create = ["schedule", "create", name, "--playbook", str(TEST_PLAYBOOK), "--target", str(target)]
    made = await ratchet_cli(fake.settings, *create, "--cron", "0 9 * * 1", "--auto-approve-as", "alice")
    assert made.returncode == 0, made.stdout + made.stderr

    # Visible to Temporal's own tools, as a schedule that skips a run while the last one goes on.
    argv = [temporal_binary(), "schedule", "list", "--address", fake.settings.temporal_address]
    listed = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=60)
    assert schedules.schedule_id(name) in listed.stdout, listed.stdout + listed.stderr
    handle = fake.client.get_schedule_handle(schedules.schedule_id(name))
    described = await handle.describe()
    assert described.schedule.policy.overlap.name == "SKIP" and await described.memo_value("cron") == "0 9 * * 1"
    assert [t.weekday() for t in described.info.next_action_times] == [0] * len(described.info.next_action_times)

    # Bad answers are refused with what would be valid, and change nothing.
    bad = await ratchet_cli(fake.settings, *create[:2], f"{name}-bad", *create[3:], "--cron", "at nine")
    assert bad.returncode == 2 and "--cron" in bad.stderr and "0 9 * * 1" in bad.stderr, bad.stderr
    again = await ratchet_cli(fake.settings, *create, "--cron", "0 9 * * 1")
    assert again.returncode == 5 and "exists" in again.stderr, again.stderr
    unknown = await ratchet_cli(fake.settings, "schedule", "pause", "no-such-schedule")
    assert unknown.returncode == 3 and "schedule list" in unknown.stderr, unknown.stderr

    # A run: a campaign of its own, named after the schedule, approved as the schedule says.
    ran = await ratchet_cli(fake.settings, "schedule", "trigger", name)
    assert ran.returncode == 0, ran.stderr
    deadline = time.monotonic() + 60
    while not (runs := [a.action.workflow_id for a in (await handle.describe()).info.recent_actions]):  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the triggered run did not start"
        await asyncio.sleep(0.2)
    [run] = runs
    final = await finish(fake.client, run)
    assert final.state == CampaignState.COMPLETED, final.outcome_detail
    assert final.campaign_id == run and run.startswith(f"camp-fake-{fake.settings.task_queue_prefix}-{name}-")
    await assert_replays(fake.client, run)

    shown = await ratchet_cli(fake.settings, "schedule", "list")
    assert name in shown.stdout and run[:20] in shown.stdout and "active" in shown.stdout, shown.stdout
    paused = await ratchet_cli(fake.settings, "schedule", "pause", name)
    assert paused.returncode == 0 and (await handle.describe()).schedule.state.paused
    deleted = await ratchet_cli(fake.settings, "schedule", "delete", name)
    assert deleted.returncode == 0
    assert name not in [v.name for v in await schedules.listed(fake.client)]
