"""Writing a campaign's state and results into the store (history for reports and later campaigns)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlmodel import delete
from temporalio import activity

from ratchet.contracts import CampaignStatus
from ratchet.store.engine import session_for
from ratchet.store.tables import Campaign, OptimizationResult


class RecordActivities:
    """record_campaign: upsert the campaign row and, once finished, its per-endpoint results."""

    def __init__(self, store_url: str) -> None:
        self.store_url = store_url

    def _record(self, status: CampaignStatus) -> None:
        with session_for(self.store_url) as session:
            row = session.get(Campaign, status.campaign_id) or Campaign(
                id=status.campaign_id, target=status.target, playbook=status.playbook, state=status.state.value
            )
            row.state = status.state.value
            row.outcome = status.outcome
            row.updated_at = datetime.now(UTC)
            row.status_json = status.model_dump_json()
            session.add(row)
            if status.finished and status.verdicts:
                session.exec(delete(OptimizationResult).where(OptimizationResult.campaign_id == status.campaign_id))  # type: ignore[call-overload,arg-type]
                for v in status.verdicts:
                    session.add(
                        OptimizationResult(
                            campaign_id=status.campaign_id,
                            target=status.target,
                            endpoint=v.endpoint,
                            before_p95=v.before.p95,
                            after_p95=v.after.p95,
                            p95_ratio=v.p95_ratio,
                            p_value=min(v.p_value_faster, v.p_value_slower),
                            verdict=v.verdict.value,
                        )
                    )
            session.commit()

    @activity.defn(name="record_campaign")
    async def record_campaign(self, status: CampaignStatus) -> None:
        """Store the campaign's status (idempotent: the row is replaced)."""
        await asyncio.to_thread(self._record, status)
