"""Writing a campaign's report: HTML and Markdown files in the reports folder."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from temporalio import activity

from ratchet import secrets
from ratchet.contracts import CampaignStatus, ReportRequest, ReportResult, WeeklyRequest, WeeklyResult
from ratchet.files import write_atomically
from ratchet.report import render_html, render_markdown
from ratchet.report.files import report_stem
from ratchet.report.weekly import weekly_report, write_weekly
from ratchet.report.workflow_section import WorkflowSection, workflow_sections
from ratchet.settings import Settings
from ratchet.store.engine import session_for


class ReportActivities:
    """write_report, served by the perf-optimizer role."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def history_url(self, campaign_id: str) -> str:
        """The campaign's workflow in the Temporal UI (the workflow id is the campaign id)."""
        return f"{self.settings.ui_url}/namespaces/{self.settings.temporal_namespace}/workflows/{quote(campaign_id, safe='')}"

    def _write(self, status: CampaignStatus) -> ReportResult:
        # Render both before writing either, so a template error cannot leave one new file beside an old one.
        # matplotlib takes a second to import: paid when a report is written, not at every worker start.
        from ratchet.report.chart_data import report_charts

        history = self.history_url(status.campaign_id)
        workflows = self._workflow_sections(status)
        html = render_html(
            status, history_url=history, charts=report_charts(status, self.settings), workflows=workflows
        )
        markdown = render_markdown(status, history_url=history, workflows=workflows)
        # A value taken from the environment (a password in a connection string an error quoted) is shown as
        # its ${NAME}: reports are shared.
        html, markdown = secrets.mask_text(html), secrets.mask_text(markdown)
        stem = self.settings.reports_dir / report_stem(status.campaign_id)
        html_path = write_atomically(stem.with_name(stem.name + ".html"), html)
        markdown_path = write_atomically(stem.with_name(stem.name + ".md"), markdown)
        return ReportResult(html_path=str(html_path), markdown_path=str(markdown_path))

    def _workflow_sections(self, status: CampaignStatus) -> list[WorkflowSection]:
        """A workflow target's sections; an extra: a failure is logged, and the report is written without them."""
        try:
            return workflow_sections(status, self.settings.samples_dir)
        except Exception:
            activity.logger.exception("the workflow sections of %s could not be read", status.campaign_id)
            return []

    @activity.defn(name="write_weekly_report")
    async def write_weekly_report(self, request: WeeklyRequest) -> WeeklyResult:
        """The target's weekly report from the store, written beside the campaigns' reports."""
        return await asyncio.to_thread(self._write_weekly, request.target)

    def _write_weekly(self, target: str) -> WeeklyResult:
        with session_for(self.settings.resolved_store_url) as session:
            report = weekly_report(session=session, target=target)
        html, markdown = write_weekly(report, self.settings.reports_dir)
        return WeeklyResult(html_path=str(html), markdown_path=str(markdown), summary=report.summary())

    @activity.defn(name="write_report")
    async def write_report(self, request: ReportRequest) -> ReportResult:
        """Render the campaign's report and write ``<reports_dir>/<campaign_id>.html`` and ``.md``.

        Idempotent: a retry rewrites the same two files. Rendering and file I/O run in a thread so the
        worker's event loop keeps serving heartbeats and other activities.
        """
        return await asyncio.to_thread(self._write, request.status)
