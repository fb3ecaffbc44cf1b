"""The weekly report of one target, across its campaigns: each endpoint's baseline p95 over the last 7, 30 and
90 days against the stretch before, its change points, a forecast of where the trend takes it in 30 days, the
changes kept and what they gained, and the findings the latest campaign left open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import numpy as np
from pydantic import BaseModel, Field
from scipy.stats import theilslopes
from sqlmodel import Session

from ratchet.analysis.changepoints import describe_change
from ratchet.contracts import CampaignStatus, ChangeState
from ratchet.files import write_atomically
from ratchet.report.files import report_stem
from ratchet.report.render import _environment
from ratchet.store.outcomes import finished_statuses
from ratchet.target_history import CampaignEntry, target_history

WINDOWS_DAYS = (7, 30, 90)
FORECAST_DAYS = 30
MIN_FORECAST_POINTS = 4


class WindowTrend(BaseModel):
    """An endpoint's baselines in the last ``days`` against the ``days`` before them."""

    days: int
    campaigns: int
    median_p95: float | None
    previous_median_p95: float | None
    change: float | None = Field(None, description="median / previous median - 1 (0.2: 20% slower).")


class EndpointTrend(BaseModel):
    endpoint: str
    latest_p95: float
    latest_at: datetime
    windows: list[WindowTrend]
    change_points: list[str] = Field(default_factory=list, description="Each as a sentence.")
    forecast_p95: float | None = Field(None, description="Where the 90 days' trend takes the p95 in 30 days.")
    forecast_low: float | None = None
    forecast_high: float | None = None
    forecast_note: str = ""


class KeptChange(BaseModel):
    campaign_id: str
    at: datetime
    lever: str
    endpoints: list[str]
    gains: list[str] = Field(default_factory=list, description="Its endpoints' validated verdicts, in words.")


class OpenFinding(BaseModel):
    campaign_id: str
    severity: str
    type: str
    endpoint: str
    summary: str


class WeeklyReport(BaseModel):
    target: str
    generated_at: datetime
    campaigns: int = Field(description="Campaigns in the last 90 days.")
    endpoints: list[EndpointTrend]
    kept: list[KeptChange]
    open_findings: list[OpenFinding]
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        """A few lines for a webhook: what moved, what was kept, what is open."""
        slower = [
            f"{e.endpoint} +{w.change:.0%}"
            for e in self.endpoints
            for w in e.windows[:1]
            if w.change and w.change > 0.1
        ]
        lines = [f"{self.campaigns} campaign(s) in 90 days; {len(self.kept)} change(s) kept in 30 days."]
        lines.append(("Slower than the week before: " + ", ".join(slower)) if slower else "No endpoint 10% slower.")
        lines.append(f"{len(self.open_findings)} finding(s) open since the latest campaign.")
        return "\n".join(lines)


def weekly_report(*, session: Session, target: str, now: datetime | None = None) -> WeeklyReport:
    """The report of ``target`` as the store holds it (NotFoundError naming the known targets when it has none):
    the trends read the baselines `ratchet history` reads, with its change points."""
    now = now or datetime.now(UTC)
    history = target_history(session=session, target=target)  # NotFoundError for a target without campaigns
    statuses = finished_statuses(session=session, target=target)
    horizon = now - timedelta(days=max(WINDOWS_DAYS))
    recent = [s for s in statuses if (_when(s) or now) >= horizon]
    notes = []
    if not recent:
        notes.append("no campaign finished in the last 90 days: the trends below are older")
    return WeeklyReport(
        target=target,
        generated_at=now,
        campaigns=len(recent),
        endpoints=[
            _trend(h.endpoint, h.campaigns, now, [describe_change(c) for c in h.change_points])
            for h in history.endpoints
        ],
        kept=_kept(statuses, now - timedelta(days=30)),
        open_findings=_open(statuses[-1]) if statuses else [],
        notes=notes,
    )


def _when(status: CampaignStatus) -> datetime | None:
    """When a campaign ended: its last phase's end (None for one that recorded no phase)."""
    ends = [_aware(p.ended_at) for p in status.phases if p.ended_at is not None]
    return max(ends) if ends else None


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _trend(endpoint: str, series: list[CampaignEntry], now: datetime, changes: list[str]) -> EndpointTrend:
    windows = []
    for days in WINDOWS_DAYS:
        span = timedelta(days=days)
        inside = [p.p95 for p in series if now - span <= _aware(p.measured_at) <= now]
        before = [p.p95 for p in series if now - 2 * span <= _aware(p.measured_at) < now - span]
        level, previous = (median(inside) if inside else None), (median(before) if before else None)
        change = level / previous - 1 if level is not None and previous else None
        windows.append(
            WindowTrend(days=days, campaigns=len(inside), median_p95=level, previous_median_p95=previous, change=change)
        )
    latest = series[-1]
    trend = EndpointTrend(
        endpoint=endpoint,
        latest_p95=latest.p95,
        latest_at=_aware(latest.measured_at),
        windows=windows,
        change_points=changes,
    )
    return _with_forecast(trend, series, now)


def _with_forecast(trend: EndpointTrend, series: list[CampaignEntry], now: datetime) -> EndpointTrend:
    """A robust line through the last 90 days' baselines (Theil-Sen, its slope's 95% interval), read 30 days
    ahead. Too few baselines: no forecast, and the note says how many it needs."""
    horizon = now - timedelta(days=max(WINDOWS_DAYS))
    used = [p for p in series if _aware(p.measured_at) >= horizon]
    if len(used) < MIN_FORECAST_POINTS:
        trend.forecast_note = f"{len(used)} baseline(s) in 90 days: a forecast needs {MIN_FORECAST_POINTS}"
        return trend
    days = np.array([(_aware(p.measured_at) - now).total_seconds() / 86_400 for p in used])
    p95 = np.array([p.p95 for p in used])
    if np.ptp(days) == 0:
        trend.forecast_note = "every baseline at one time: no trend to read"
        return trend
    slope, intercept, low, high = theilslopes(p95, days, alpha=0.95)
    # Each bound of the slope through the data's median point, as Theil-Sen's interval is read.
    center_x, center_y = float(np.median(days)), float(np.median(p95))
    ahead = FORECAST_DAYS - center_x
    trend.forecast_p95 = max(float(intercept + slope * FORECAST_DAYS), 0.0)
    bounds = sorted((center_y + low * ahead, center_y + high * ahead))
    trend.forecast_low, trend.forecast_high = max(bounds[0], 0.0), max(bounds[1], 0.0)
    trend.forecast_note = f"{slope:+.2f} ms a day over {len(used)} baselines"
    return trend


def _kept(statuses: list[CampaignStatus], since: datetime) -> list[KeptChange]:
    kept = []
    for status in statuses:
        ended = _when(status)
        if ended is None or ended < since:
            continue
        verdicts = {v.endpoint: v for v in status.verdicts}
        for change in status.changes:
            if change.state != ChangeState.KEPT:
                continue
            endpoints = change.endpoints or [change.endpoint]
            gains = [
                f"{e} {verdicts[e].verdict.value} {verdicts[e].ratio_text()}" if e in verdicts else f"{e}: not measured"
                for e in endpoints
            ]
            kept.append(
                KeptChange(
                    campaign_id=status.campaign_id,
                    at=ended,
                    lever=change.lever,
                    endpoints=endpoints,
                    gains=gains,
                )
            )
    return kept


def _open(status: CampaignStatus) -> list[OpenFinding]:
    """The latest campaign's findings that no change it kept addressed (low ones included: they are open too)."""
    kept = {c.recommendation_id for c in status.changes if c.state == ChangeState.KEPT}
    addressed = {f for r in status.recommendations if r.id in kept for f in r.finding_ids}
    return [
        OpenFinding(
            campaign_id=status.campaign_id,
            severity=f.severity,
            type=f.type.value,
            endpoint=f.endpoint,
            summary=f.summary,
        )
        for f in status.findings
        if f.id not in addressed
    ]


def render_weekly(report: WeeklyReport, kind: str) -> str:
    """The report as ``md`` or ``html``."""
    return _environment().get_template(f"weekly.{kind}.j2").render(report=report)


def weekly_stem(target: str, now: datetime) -> str:
    """The weekly report's file name without extension: the target and the day, safe as one file name."""
    return report_stem(f"weekly-{target}-{now:%Y%m%d}")


def write_weekly(report: WeeklyReport, folder: Path) -> tuple[Path, Path]:
    """Both files, rendered before either is written (a template error leaves no half pair); (html, md)."""
    html, markdown = render_weekly(report, "html"), render_weekly(report, "md")
    folder.mkdir(parents=True, exist_ok=True)
    stem = weekly_stem(report.target, report.generated_at)
    return write_atomically(folder / f"{stem}.html", html), write_atomically(folder / f"{stem}.md", markdown)
