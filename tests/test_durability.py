"""Durability: a worker killed with SIGKILL mid-campaign, then the Temporal server restarted under its successor.

One campaign takes both (each costs a whole campaign of load runs): the kill while the validation's load runs, the
restart once the new worker is connected, so that it must reconnect."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.client import WorkflowExecutionStatus

from ratchet import campaigns
from ratchet.contracts import CampaignState, ChangeState
from ratchet.settings import Settings
from ratchet.temporal.client import connect
from ratchet.temporal.server import start_server, stop_server
from tests.campaign_helpers import assert_replays, effects, finish, ratchet_cli, ratchet_env, wait_for, wait_until
from tests.conftest import ROOT, TEST_PLAYBOOK, Shop, restartable_port

pytestmark = pytest.mark.asyncio(loop_scope="session")


def start_worker_process(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py")],
        env=ratchet_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def durability_playbook(folder: Path) -> Path:
    """The test playbook with a bake guard that watches errors only, and verdicts on the median. These tests are
    about finishing a campaign across a killed worker or a restarted server, not about the guard (whose tests
    slow an endpoint thirty times) or the tail of a 4-second run: on this shared two-core host every endpoint,
    the untouched ones too, has read x4 slower through both bake windows right after a kill (CI, 2026-12-06),
    and the latency guard rolled the proven index back; and two slow requests of 23 in the first run after a
    kill (CI, 2026-12-07) put the index's p95 interval at x0.12-1.18 while its median fell from 46.7 to 10.6 ms
    in every run, and validation undid it. A change under 5 ms does not count either: run on a core of its own,
    the restarted server's start took that core from the shop, and a 2.6 ms endpoint read 5.3 ms in the arm
    after it ("regressed", CI 2026-12-07), where the index's gain is 35 ms."""
    text = TEST_PLAYBOOK.read_text()
    assert "guard: {p95_min_excess_ms: 10}" in text and "validation:\n" in text
    path = folder / "durability.yaml"
    path.write_text(
        text.replace("guard: {p95_min_excess_ms: 10}", "guard: {p95_min_excess_ms: 100000}").replace(
            "validation:\n", "validation:\n  metric: p50\n  min_effect: 5ms\n", 1
        )
    )
    return path


def validation_running(status) -> bool:  # type: ignore[no-untyped-def]
    return status.phase is not None and status.phase.value == "validation"


def worker_connected(log: Path, since: int) -> bool:
    """Whether the worker started after byte ``since`` of ``log`` has connected (its first line)."""
    return "worker on " in log.read_bytes()[since:].decode(errors="replace")


async def test_a_campaign_outlives_a_killed_worker_and_a_restarted_server(
    tmp_path: Path, settings: Settings, shop: Shop, index_only_target: Path
) -> None:
    """The worker is killed (SIGKILL) while the validation's load runs, with the index applied; a new worker
    takes over, and lives through a restart of the Temporal server (its own, file-backed). The campaign
    finishes as if nothing happened: the index applied once, never undone, and kept."""
    home = tmp_path / "own-temporal"
    address = f"127.0.0.1:{restartable_port()}"
    ui_port = restartable_port()
    start_server(home, address=address, ui_port=ui_port)
    # Its own server; the shop's spans go to the test's trace receiver (the shop fixture's).
    settings = Settings(
        home=tmp_path / "ratchet", temporal_address=address, task_queue_prefix="durable", otlp_port=settings.otlp_port
    )
    log = tmp_path / "worker.log"
    try:
        client = await connect(settings)
        first = start_worker_process(settings, log)
        campaign_id = await campaigns.launch(
            client,
            settings,
            playbook_file=durability_playbook(tmp_path),
            target_file=index_only_target,
            auto_approve_as="alice",
        )
        # Kill the worker while the validation load test runs (the index is applied by then).
        await wait_for(client, campaign_id, validation_running, what="validation to start")
        await wait_for(
            client, campaign_id, lambda s: s.validation is None and len(s.changes) == 1, what="the change applied"
        )
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = log.stat().st_size
        second = start_worker_process(settings, log)
        try:
            # The restart comes once the new worker is connected: it must reconnect, not merely start later.
            await wait_until(lambda: worker_connected(log, killed_at), timeout_s=60, what="the new worker")
            running = await campaigns.handle(client, campaign_id).describe()
            assert running.status == WorkflowExecutionStatus.RUNNING, running.status  # restarted mid-campaign
            assert stop_server(home)
            start_server(home, address=address, ui_port=ui_port)  # same file: the history is still there
            final = await finish(client, campaign_id, timeout_s=300)
        finally:
            second.terminate()
            second.wait(timeout=30)
        events = "\n".join(f"  {e.at:%H:%M:%S} {e.message}" for e in final.events)
        assert final.state == CampaignState.COMPLETED, f"{final.outcome}: {final.outcome_detail}\n{events}"
        assert final.verdicts and final.report_html
        # No worker runs now: `ratchet status --json` answers from the store.
        shown = await ratchet_cli(settings, "status", campaign_id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "completed"

        [change] = final.changes
        assert change.state == ChangeState.KEPT
        assert len(effects(settings, campaign_id, "apply")) == 1  # applied exactly once
        assert len(effects(settings, campaign_id, "rollback")) == 0  # undone at most once (here: never)
        assert any("ratchet_ix_orders_customer_email" in name for name, _ in shop.indexes())
        await assert_replays(client, campaign_id)
    finally:
        stop_server(home)
