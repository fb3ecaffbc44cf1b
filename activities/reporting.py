"""Writing a campaign's report: HTML and Markdown files in the reports folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import quote

from temporalio import activity

from ratchet import secrets
from ratchet.contracts import CampaignStatus, ReportRequest, ReportResult
from ratchet.report import render_html, render_markdown
from ratchet.report.workflow_section import WorkflowSection, workflow_sections
from ratchet.settings import Settings

# Campaign ids may come from a person (--id); anything outside this set could leave the reports folder.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def report_stem(campaign_id: str) -> str:
    """The file name (without extension) of a campaign's report: its id, made safe as a single file name."""
    return _UNSAFE_FILENAME.sub("_", campaign_id).lstrip(".") or "campaign"


def write_atomically(path: Path, text: str) -> Path:
    """Write text to a temporary file beside ``path`` and rename it over ``path``.

    A reader (or a retried attempt) sees the old report or the new one, never half a file; the temporary
    file lives in the same folder because a rename is only atomic within one file system.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is meant to be read and shared
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path.resolve()


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

    @activity.defn(name="write_report")
    async def write_report(self, request: ReportRequest) -> ReportResult:
        """Render the campaign's report and write ``<reports_dir>/<campaign_id>.html`` and ``.md``.

        Idempotent: a retry rewrites the same two files. Rendering and file I/O run in a thread so the
        worker's event loop keeps serving heartbeats and other activities.
        """
        return await asyncio.to_thread(self._write, request.status)
