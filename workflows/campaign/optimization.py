"""Backend & infrastructure optimization and frontend optimization: each role applies its approved changes."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.config.common import Phase, Role
    from ratchet.contracts import Recommendation

from workflows.campaign.context import Campaign
from workflows.campaign.gates import gate_or_abort
from workflows.campaign.saga import apply_recommendation
from workflows.campaign.tuning import tune


async def optimization_phase(campaign: Campaign, approved: list[Recommendation]) -> None:
    campaign.begin(Phase.OPTIMIZATION)
    await gate_or_abort(campaign, Phase.OPTIMIZATION)
    mine = [r for r in approved if r.role in (Role.BACKEND_DEVELOPER, Role.DEVOPS_ENGINEER, Role.PERF_OPTIMIZER)]
    tunable = [r for r in mine if _tunable(r)] if workflow.patched("tune-levers") else []
    plain = [r for r in mine if r not in tunable]
    if workflow.patched("roles-in-parallel"):  # older campaigns replay with one change at a time
        await apply_by_role(campaign, plain)
    else:
        for recommendation in plain:
            await apply_recommendation(campaign, recommendation)
    # Tuned last: its trials measure the target with every other change of the phase in place.
    for recommendation in tunable:
        await tune(campaign, recommendation)
    campaign.end(Phase.OPTIMIZATION, "applied" if mine else "skipped", campaign.change_note(mine))


async def apply_by_role(campaign: Campaign, recommendations: list[Recommendation]) -> None:
    """Each role applies its changes in plan order, on its own queue, while the other roles apply theirs
    (approved changes never conflict). Every role finishes what it started before a failure unwinds."""
    by_role: dict[Role, list[Recommendation]] = {}
    for recommendation in recommendations:
        by_role.setdefault(recommendation.role, []).append(recommendation)

    async def apply_in_order(mine: list[Recommendation]) -> None:
        for recommendation in mine:
            await apply_recommendation(campaign, recommendation)

    outcomes = await asyncio.gather(*(apply_in_order(mine) for mine in by_role.values()), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


async def frontend_phase(campaign: Campaign, approved: list[Recommendation]) -> None:
    mine = [r for r in approved if r.role == Role.FRONTEND_DEVELOPER]
    if not mine:
        campaign.skip(Phase.FRONTEND, "no frontend change in the approved plan")
        return
    campaign.begin(Phase.FRONTEND)
    await gate_or_abort(campaign, Phase.FRONTEND)
    for recommendation in mine:
        await apply_recommendation(campaign, recommendation)
    campaign.end(Phase.FRONTEND, "applied", campaign.change_note(mine))


def _tunable(recommendation: Recommendation) -> bool:
    lever = recommendation.lever
    return lever is not None and lever.parameter is not None and lever.parameter.kind == "range"
