"""The weekly report on a timetable: a Temporal Schedule (`ratchet weekly TARGET --cron ... --playbook P`) starts
this workflow, which writes the target's report from the store and posts its summary to the playbook's webhook."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from ratchet.alerts import alert_request
    from ratchet.config.common import Role
    from ratchet.config.playbook import AlertKind
    from ratchet.contracts import AlertResult, WeeklyInput, WeeklyRequest, WeeklyResult

from workflows.catalogue import SEND_ALERT, WRITE_WEEKLY_REPORT, call


@workflow.defn(name="WeeklyReportWorkflow")
class WeeklyReportWorkflow:
    @workflow.run
    async def run(self, weekly: WeeklyInput) -> WeeklyResult:
        written: WeeklyResult = await call(
            WRITE_WEEKLY_REPORT,
            WeeklyRequest(target=weekly.target),
            prefix=weekly.task_queue_prefix,
            role=Role.PERF_OPTIMIZER,
            summary=f"Weekly report of {weekly.target}",
        )
        request = alert_request(
            weekly.alerts,
            campaign_id=workflow.info().workflow_id,
            kind=AlertKind.WEEKLY_REPORT,
            title=f"Weekly report: {weekly.target}",
            text=written.summary,
            fields={"target": weekly.target, "report": written.html_path},
        )
        if request is not None:
            try:
                sent: AlertResult = await call(
                    SEND_ALERT,
                    request,
                    prefix=weekly.task_queue_prefix,
                    role=Role.PERF_OPTIMIZER,
                    summary=f"Post the weekly report of {weekly.target}",
                    timeout=timedelta(seconds=request.timeout_s + 5),
                )
                workflow.logger.info("weekly report of %s posted: %s", weekly.target, sent.detail)
            except ActivityError as failure:  # the report is written either way; the run says why it was not sent
                workflow.logger.warning("weekly report of %s not posted: %s", weekly.target, failure.cause)
        return written
