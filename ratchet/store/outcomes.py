"""What earlier campaigns teach: their changes' realised gains, and a campaign's own baseline, from the store.

Keyword-only functions that take the session, as the other store code. The extraction itself is pure
(``ratchet.analysis.learning.outcomes_of``); here the finished campaigns' statuses are read and parsed.
"""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlmodel import Session, col, select

from ratchet.analysis.learning import EndpointBaseline, Outcome, endpoint_baselines, outcomes_of
from ratchet.contracts import CampaignState, CampaignStatus
from ratchet.store.history import BASELINE_LABEL
from ratchet.store.tables import Campaign, Measurement

_log = logging.getLogger(__name__)
_FINISHED = [s.value for s in CampaignState if s not in (CampaignState.RUNNING, CampaignState.WAITING)]
MAX_CAMPAIGNS = 200
"""Only the latest campaigns of a target are read: the target changes, and older outcomes say less of it."""


def finished_statuses(*, session: Session, target: str, exclude: str | None = None) -> list[CampaignStatus]:
    """The statuses of ``target``'s finished campaigns (newest ``MAX_CAMPAIGNS``, oldest first), but ``exclude``.

    A status that no longer parses (written by a much older Ratchet) is skipped with a log line.
    """
    statement = (
        select(Campaign)
        .where(Campaign.target == target, col(Campaign.state).in_(_FINISHED))
        .order_by(col(Campaign.created_at).desc(), col(Campaign.id).desc())
        .limit(MAX_CAMPAIGNS + (1 if exclude else 0))
    )
    statuses = []
    for row in session.exec(statement):
        if row.id == exclude:
            continue
        try:
            statuses.append(CampaignStatus.model_validate_json(row.status_json))
        except ValidationError as exc:
            _log.warning("campaign %s: stored status does not parse, left out of learning: %s", row.id, exc)
    return statuses[:MAX_CAMPAIGNS][::-1]


def change_outcomes(*, session: Session, target: str, exclude: str | None = None) -> list[Outcome]:
    """The realised gains of the changes of ``target``'s finished campaigns (see ``outcomes_of``), but ``exclude``."""
    return [
        o for status in finished_statuses(session=session, target=target, exclude=exclude) for o in outcomes_of(status)
    ]


def campaign_baseline(*, session: Session, campaign_id: str) -> dict[str, EndpointBaseline]:
    """Each endpoint's p95 and traffic share in the campaign's baseline run (its latest, when it was retried)."""
    statement = (
        select(Measurement)
        .where(Measurement.campaign_id == campaign_id, Measurement.label == BASELINE_LABEL)
        .order_by(col(Measurement.measured_at), col(Measurement.id))
    )
    latest: dict[str, Measurement] = {}
    for row in session.exec(statement):
        latest[row.endpoint] = row
    return endpoint_baselines((row.endpoint, row.p95, row.requests) for row in latest.values())
