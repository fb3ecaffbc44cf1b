"""Campaign history queries: an endpoint's baselines over time and the results of each campaign.

Keyword-only functions that take the session, as the other store code; rows out as small frozen records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from ratchet.store.tables import Campaign, Measurement, OptimizationResult

BASELINE_LABEL = "baseline"


@dataclass(frozen=True)
class BaselinePoint:
    """One campaign's baseline of one endpoint: the exact percentiles of its baseline load run (ms)."""

    campaign_id: str
    endpoint: str
    measured_at: datetime
    p50: float
    p95: float
    p99: float
    requests: int
    errors: int


@dataclass(frozen=True)
class ResultPoint:
    """One campaign's validated before/after of one endpoint (ms) and its verdict."""

    campaign_id: str
    endpoint: str
    before_p95: float
    after_p95: float
    p95_ratio: float
    p_value: float
    verdict: str
    at: datetime


def known_targets(*, session: Session) -> list[str]:
    """The targets that have at least one campaign in the store, sorted."""
    return sorted(session.exec(select(Campaign.target).distinct()).all())


def baseline_points(*, session: Session, target: str, endpoint: str | None = None) -> list[BaselinePoint]:
    """The baselines of ``target``'s endpoints (or one endpoint), oldest first, one per campaign and endpoint.

    A campaign whose baseline was measured more than once (a retried run) counts with its latest.
    """
    statement = (
        select(Measurement)
        .join(Campaign, col(Campaign.id) == col(Measurement.campaign_id))
        .where(Campaign.target == target, Measurement.label == BASELINE_LABEL)
        .order_by(col(Measurement.measured_at), col(Measurement.id))
    )
    if endpoint is not None:
        statement = statement.where(Measurement.endpoint == endpoint)
    latest: dict[tuple[str, str], Measurement] = {}
    for row in session.exec(statement):
        latest[(row.campaign_id, row.endpoint)] = row  # ordered by time: a later run replaces an earlier one
    points = [
        BaselinePoint(
            campaign_id=row.campaign_id,
            endpoint=row.endpoint,
            measured_at=row.measured_at,
            p50=row.p50,
            p95=row.p95,
            p99=row.p99,
            requests=row.requests,
            errors=row.errors,
        )
        for row in latest.values()
    ]
    return sorted(points, key=lambda p: p.measured_at)


def baseline_history(
    *, session: Session, target: str, exclude: str, before: datetime | None = None
) -> dict[str, list[BaselinePoint]]:
    """Per endpoint, ``target``'s baselines of every campaign but ``exclude`` (the current one), oldest first;
    with ``before``, only those measured earlier."""
    history: dict[str, list[BaselinePoint]] = {}
    for point in baseline_points(session=session, target=target):
        if point.campaign_id != exclude and (before is None or point.measured_at < before):
            history.setdefault(point.endpoint, []).append(point)
    return history


def measured_at(*, session: Session, run_id: str) -> datetime | None:
    """When a load run's numbers were stored (the earliest of its rows), or None when it has none."""
    statement = (
        select(Measurement.measured_at).where(Measurement.run_id == run_id).order_by(col(Measurement.measured_at))
    )
    return session.exec(statement).first()


def optimization_results(*, session: Session, target: str, endpoint: str | None = None) -> list[ResultPoint]:
    """The validated before/after numbers of ``target``'s campaigns (or of one endpoint), oldest first."""
    statement = (
        select(OptimizationResult)
        .where(OptimizationResult.target == target)
        .order_by(col(OptimizationResult.at), col(OptimizationResult.id))
    )
    if endpoint is not None:
        statement = statement.where(OptimizationResult.endpoint == endpoint)
    return [
        ResultPoint(
            campaign_id=row.campaign_id,
            endpoint=row.endpoint,
            before_p95=row.before_p95,
            after_p95=row.after_p95,
            p95_ratio=row.p95_ratio,
            p_value=row.p_value,
            verdict=row.verdict,
            at=row.at,
        )
        for row in session.exec(statement)
    ]
