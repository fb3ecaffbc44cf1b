"""The store's tables. Rows are written by activities only; they never travel as payloads."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, SQLModel


def _now() -> datetime:
    return datetime.now(UTC)


class Campaign(SQLModel, table=True):
    """One campaign, its latest known state and full status (JSON) for reports and history."""

    id: str = Field(primary_key=True)
    target: str = Field(index=True)
    playbook: str
    state: str
    outcome: str = ""
    created_at: datetime = Field(default_factory=_now)
    updated_at: datetime = Field(default_factory=_now)
    status_json: str = "{}"


class Measurement(SQLModel, table=True):
    """Exact percentiles of one endpoint in one load run; the raw samples sit in ``samples_path``."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(index=True)
    campaign_id: str = Field(index=True)
    label: str
    endpoint: str = Field(index=True)
    requests: int
    errors: int
    p50: float
    p95: float
    p99: float
    mean: float
    samples_path: str
    measured_at: datetime = Field(default_factory=_now)


class FindingRecord(SQLModel, table=True):
    """A finding with its evidence (JSON), as found during assessment."""

    id: str = Field(primary_key=True)
    campaign_id: str = Field(index=True)
    type: str
    endpoint: str
    severity: str
    impact: float
    summary: str
    evidence_json: str


class RecommendationRecord(SQLModel, table=True):
    """A ranked recommendation of a campaign's plan."""

    key: str = Field(primary_key=True, description="campaign id + recommendation id")
    campaign_id: str = Field(index=True)
    recommendation_id: str
    finding_id: str
    lever: str | None
    score: float
    predicted_gain_ms: float
    recommended: bool
    body_json: str


class LeverAction(SQLModel, table=True):
    """The ledger of lever actions: one row per apply/rollback attempt, `changed` when it had an effect."""

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(index=True)
    change_id: str = Field(index=True)
    lever: str
    action: str
    changed: bool
    verified: bool
    detail: str
    at: datetime = Field(default_factory=_now)


class OptimizationResult(SQLModel, table=True):
    """Before/after numbers and the verdict of one endpoint in one campaign (history for later campaigns)."""

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str = Field(index=True)
    target: str = Field(index=True)
    endpoint: str
    before_p95: float
    after_p95: float
    p95_ratio: float
    p_value: float
    verdict: str
    at: datetime = Field(default_factory=_now)
