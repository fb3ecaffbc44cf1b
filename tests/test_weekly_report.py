"""The weekly report across a target's campaigns: trends over 7/30/90 days, a forecast, kept changes and open
findings, from a store filled as test_history fills it (24 daily campaigns; orders-by-email steps up 40%)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.alerts import AlertActivities
from activities.reporting import ReportActivities
from ratchet import schedules
from ratchet.cli.app import EXIT_NOT_FOUND, app
from ratchet.config.common import Role
from ratchet.errors import NotFoundError
from ratchet.report.weekly import render_weekly, weekly_report
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import Campaign
from ratchet.temporal.client import campaign_queue, connect
from tests.conftest import TEST_PLAYBOOK
from tests.test_history import CAMPAIGNS, SLOW, START, fill, store  # noqa: F401  (store: a fixture)
from tests.test_report import completed_campaign
from tests.webhook_receiver import Receiver
from workflows import WORKFLOW_RUNNER
from workflows.weekly import WeeklyReportWorkflow

NOW = START + timedelta(days=CAMPAIGNS - 1, hours=3)


def with_latest_campaign(settings: Settings) -> None:
    """test_history's campaigns, and a last one whose status says what it kept and what it found."""
    fill(settings)
    status = completed_campaign()
    phases = [p.model_copy(update={"ended_at": NOW - timedelta(hours=1)}) for p in status.phases]
    status = status.model_copy(update={"campaign_id": "c-last", "target": "shop", "phases": phases})
    with session_for(settings.resolved_store_url) as session:
        session.add(
            Campaign(
                id="c-last",
                target="shop",
                playbook="web-api",
                state="completed",
                created_at=NOW - timedelta(hours=2),
                status_json=status.model_dump_json(),
            )
        )
        session.commit()


def test_trends_forecast_kept_changes_and_open_findings(store: Settings) -> None:  # noqa: F811
    with_latest_campaign(store)
    with session_for(store.resolved_store_url) as session:
        report = weekly_report(session=session, target="shop", now=NOW)
    orders = next(e for e in report.endpoints if e.endpoint == SLOW)
    week, month, _ = orders.windows
    # The last 7 baselines sit on the new level (140), the 7 before straddle the step: slower than before.
    assert week.campaigns == 7 and week.median_p95 == pytest.approx(140, rel=0.04)
    assert week.change is not None and week.change > 0.1
    # 30 days hold every campaign (24) and nothing before them.
    assert month.campaigns == CAMPAIGNS and month.previous_median_p95 is None and month.change is None
    assert orders.change_points and "rose" in orders.change_points[0]
    # The trend rises: the forecast is above today's level, inside its interval.
    assert orders.forecast_p95 is not None and orders.forecast_low is not None and orders.forecast_high is not None
    assert orders.forecast_low <= orders.forecast_p95 <= orders.forecast_high and orders.forecast_p95 > 140
    # The last campaign's kept changes, with their verdicts; its findings that no kept change addressed.
    kept = {c.lever for c in completed_campaign().changes if c.state.value == "kept"}
    assert {k.lever for k in report.kept} == kept and "idx_orders_email" in kept
    index = next(k for k in report.kept if k.lever == "idx_orders_email")
    assert index.gains and index.gains[0].startswith("orders improved x")
    assert report.open_findings and all(f.campaign_id == "c-last" for f in report.open_findings)
    markdown, html = render_weekly(report, "md"), render_weekly(report, "html")
    for page in (markdown, html):
        assert (
            "Weekly report: shop" in page and "Changes kept in the last 30 days" in page and "idx_orders_email" in page
        )
        assert "Open findings" in page and SLOW in page


def test_too_few_baselines_give_no_forecast_and_say_how_many_it_needs(store: Settings) -> None:  # noqa: F811
    fill(store)
    with session_for(store.resolved_store_url) as session:
        report = weekly_report(session=session, target="blog", now=START + timedelta(days=5))
        [home] = report.endpoints
        assert home.forecast_p95 is None and "3 baseline(s) in 90 days: a forecast needs 4" in home.forecast_note
        assert report.kept == [] and report.open_findings == []
        with pytest.raises(NotFoundError, match="known targets: blog, shop"):
            weekly_report(session=session, target="nope", now=NOW)


def test_the_command_writes_both_files_and_says_what_moved(store: Settings, tmp_path: Path) -> None:  # noqa: F811
    with_latest_campaign(store)
    out = tmp_path / "weekly"
    result = CliRunner().invoke(app, ["weekly", "shop", "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.suffix for p in out.iterdir())
    assert written == [".html", ".md"], written
    assert "campaign(s) in 90 days" in result.output
    missing = CliRunner().invoke(app, ["weekly", "nope"])
    assert missing.exit_code == EXIT_NOT_FOUND and "known targets" in missing.output


@pytest.mark.asyncio(loop_scope="session")
async def test_a_weekly_schedule_writes_the_report_and_posts_its_summary(
    store: Settings,  # noqa: F811
    fake_tier_temporal: str,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """`ratchet weekly shop --cron ... --playbook P` as a schedule; triggered, its run writes both files from
    the store and posts the summary to the playbook's webhook."""
    with_latest_campaign(store)
    settings = store.model_copy(
        update={"temporal_address": fake_tier_temporal, "task_queue_prefix": f"w{uuid.uuid4().hex[:8]}"}
    )
    playbook = tmp_path / "playbook.yaml"
    playbook.write_text(TEST_PLAYBOOK.read_text() + f"alerts: {{webhook_url: '{receiver.url(200)}'}}\n")
    client = await connect(settings)
    reports = ReportActivities(settings)
    worker = Worker(
        client,
        task_queue=campaign_queue(settings),
        workflows=[WeeklyReportWorkflow],
        workflow_runner=WORKFLOW_RUNNER,
    )
    activities = Worker(
        client,
        task_queue=settings.task_queue(Role.PERF_OPTIMIZER.value),
        activities=[reports.write_weekly_report, AlertActivities().send_alert],
    )
    async with worker, activities:
        name, made = await schedules.create_weekly(
            client, settings, target_name="shop", playbook_file=playbook, cron="0 9 * * 1"
        )
        try:
            with pytest.raises(NotFoundError, match="known targets"):
                await schedules.create_weekly(
                    client, settings, target_name="nope", playbook_file=playbook, cron="0 9 * * 1"
                )
            handle = client.get_schedule_handle(made)
            await handle.trigger()
            runs = []
            while not runs:  # the triggered run's workflow appears once the schedule has started it
                described = await handle.describe()
                runs = [a.action.workflow_id for a in described.info.recent_actions]  # type: ignore[attr-defined]
            result = await client.get_workflow_handle(runs[0]).result()
        finally:
            await schedules.delete(client, name)
    assert Path(result["html_path"]).is_file() and Path(result["markdown_path"]).is_file()
    [posted] = receiver.received
    assert "Weekly report: shop" in json.dumps(posted.body) and "campaign(s) in 90 days" in json.dumps(posted.body)
