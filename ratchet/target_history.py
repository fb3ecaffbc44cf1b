"""A target's campaign history: per endpoint the baselines over time, each campaign's validated result, the
change points of the baseline p95 and whether it drifts (what `ratchet history` shows)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlmodel import Session

from ratchet.analysis.changepoints import (
    DEFAULT_ALPHA,
    DEFAULT_LATEST,
    DEFAULT_MIN_SIZE,
    ChangePoint,
    Drift,
    baseline_drift,
    detect_change_points,
)
from ratchet.errors import NotFoundError
from ratchet.store.history import BaselinePoint, ResultPoint, baseline_points, known_targets, optimization_results


class CampaignEntry(BaseModel):
    """One campaign of an endpoint's history: its baseline and, when it validated, the after numbers."""

    campaign_id: str
    measured_at: datetime = Field(description="When the baseline was measured.")
    requests: int
    p50: float
    p95: float
    p99: float
    after_p95: float | None = Field(None, description="The validated p95 after the campaign's changes.")
    p95_ratio: float | None = None
    p_value: float | None = None
    verdict: str | None = None
    change_point: bool = Field(False, description="The baseline p95 moved to a new level at this campaign.")


class EndpointHistory(BaseModel):
    """An endpoint's campaigns over time, the change points of its baseline p95 and its drift flag."""

    endpoint: str
    campaigns: list[CampaignEntry]
    change_points: list[ChangePoint]
    drift: Drift


class TargetHistory(BaseModel):
    """Every endpoint's history of one target."""

    target: str
    endpoints: list[EndpointHistory]


def endpoint_history(
    endpoint: str,
    baselines: list[BaselinePoint],
    results: list[ResultPoint],
    *,
    latest: int = DEFAULT_LATEST,
    min_size: int = DEFAULT_MIN_SIZE,
    alpha: float = DEFAULT_ALPHA,
) -> EndpointHistory:
    """One endpoint's history from its baselines (oldest first) and its campaigns' results (pure)."""
    by_campaign = {r.campaign_id: r for r in results}
    changes = detect_change_points(
        [b.p95 for b in baselines],
        times=[b.measured_at for b in baselines],
        labels=[b.campaign_id for b in baselines],
        min_size=min_size,
        alpha=alpha,
    )
    starts = {c.index for c in changes}
    campaigns = []
    for index, base in enumerate(baselines):
        result = by_campaign.get(base.campaign_id)
        campaigns.append(
            CampaignEntry(
                campaign_id=base.campaign_id,
                measured_at=base.measured_at,
                requests=base.requests,
                p50=base.p50,
                p95=base.p95,
                p99=base.p99,
                after_p95=result.after_p95 if result else None,
                p95_ratio=result.p95_ratio if result else None,
                p_value=result.p_value if result else None,
                verdict=result.verdict if result else None,
                change_point=index in starts,
            )
        )
    drift = baseline_drift(endpoint, changes, len(baselines), latest=latest)
    return EndpointHistory(endpoint=endpoint, campaigns=campaigns, change_points=changes, drift=drift)


def target_history(
    *,
    session: Session,
    target: str,
    endpoint: str | None = None,
    latest: int = DEFAULT_LATEST,
    min_size: int = DEFAULT_MIN_SIZE,
    alpha: float = DEFAULT_ALPHA,
) -> TargetHistory:
    """The history of ``target`` (every endpoint, or ``endpoint``), endpoints sorted by name.

    Raises NotFoundError, naming what exists, for a target without campaigns or an endpoint without baselines.
    """
    targets = known_targets(session=session)
    if target not in targets:
        raise NotFoundError(f"no campaign for target {target!r} in the store; known targets: {', '.join(targets)}")
    baselines = baseline_points(session=session, target=target)
    endpoints = sorted({b.endpoint for b in baselines})
    if endpoint is not None:
        if endpoint not in endpoints:
            known = ", ".join(endpoints) or "none yet"
            raise NotFoundError(f"no baseline of endpoint {endpoint!r} for target {target!r}; known endpoints: {known}")
        endpoints = [endpoint]
    results = optimization_results(session=session, target=target, endpoint=endpoint)
    return TargetHistory(
        target=target,
        endpoints=[
            endpoint_history(
                name,
                [b for b in baselines if b.endpoint == name],
                [r for r in results if r.endpoint == name],
                latest=latest,
                min_size=min_size,
                alpha=alpha,
            )
            for name in endpoints
        ],
    )


def store_history(
    *, session: Session, target: str | None = None, endpoint: str | None = None, latest: int = DEFAULT_LATEST
) -> list[TargetHistory]:
    """The history of ``target``, or of every target in the store when None; [] for an empty store."""
    targets = known_targets(session=session)
    if not targets:
        return []
    if target is not None:
        return [target_history(session=session, target=target, endpoint=endpoint, latest=latest)]
    found = []
    for name in targets:
        try:
            found.append(target_history(session=session, target=name, endpoint=endpoint, latest=latest))
        except NotFoundError:  # this target has no such endpoint; another may
            continue
    if not found:
        raise NotFoundError(f"no target has a baseline of endpoint {endpoint!r}; known targets: {', '.join(targets)}")
    return found
