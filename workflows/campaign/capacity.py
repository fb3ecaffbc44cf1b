"""`load.rate: auto`: the capacity ramp that chooses the rate every load test of the campaign runs at."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.capacity import auto_rate, capacity_shape
    from ratchet.config.common import Role

from workflows.campaign.context import Campaign


async def resolve_load_rate(campaign: Campaign) -> None:
    """A fixed rate is said as it is; `auto` runs the ramp first, and from then on the campaign's playbook
    (and every child workflow it starts) holds the rate the ramp chose."""
    playbook = campaign.input.playbook
    load = playbook.load
    if load.rate != "auto":
        campaign.status.load_rate = f"load.rate {load.rate:g} req/s, as the playbook sets"
        campaign.status.load_rps = load.rate
        return
    shape = capacity_shape(load, playbook.slo.default.max_error_rate)
    ramp = await campaign.load_test(
        "capacity", Role.PERF_OPTIMIZER, "Capacity ramp (k6): the rate the target sustains", shape=shape
    )
    assert ramp.stress is not None  # a stepped run always reports its steps
    chosen = auto_rate(ramp.stress, load)
    campaign.input = campaign.input.model_copy(
        update={"playbook": playbook.model_copy(update={"load": load.with_rate(chosen.rate)})}
    )
    campaign.status.capacity = ramp
    campaign.status.load_rate = chosen.summary
    campaign.status.load_rps = chosen.rate
    campaign.event(chosen.summary)
