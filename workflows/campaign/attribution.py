"""Attribution: which change earned which gain (wire bytes per change, leave-one-out on shared endpoints)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from ratchet.analysis.decisions import (
        bytes_verdict,
        caching_endpoints,
        payload_endpoints,
        undecided_endpoints,
        with_caching_verdict,
    )
    from ratchet.config.common import Role
    from ratchet.config.playbook import Attribution
    from ratchet.contracts import (
        ChangeRecord,
        ChangeState,
        CompareResult,
        EndpointVerdict,
        Verdict,
        WireBytesRequest,
        WireBytesResult,
    )

from workflows.campaign.arms import measure_arms
from workflows.campaign.context import Campaign
from workflows.campaign.saga import put_changes, undo
from workflows.catalogue import MEASURE_WIRE_BYTES


async def payload_attribution(campaign: Campaign, applied: list[ChangeRecord]) -> None:
    """A change that addresses payload findings (compression, a smaller answer) is judged on the bytes it
    saves there; its latency on a fast test link says little. As the playbook attributes: by endpoint,
    the answers with every change undone against all in place, credited to each change for its endpoints;
    leave-one-out, each change's endpoints without it and with it, the others in place."""
    rules = campaign.input.playbook.validation
    mine = {c.change_id: payload_of(campaign, c) for c in applied}
    judged = [c for c in applied if mine[c.change_id]]
    if not judged:
        return
    # (changes toggled, endpoints measured, changes credited, who) per measurement
    one_by_one = rules.attribution == Attribution.LEAVE_ONE_OUT or (
        rules.attribution == Attribution.AUTO and _share_an_endpoint([mine[c.change_id] for c in judged])
    )
    if one_by_one:
        measurements = [([c], mine[c.change_id], [c], c.lever) for c in judged]
    else:
        every = sorted({e for c in judged for e in mine[c.change_id]})
        measurements = [(applied, every, judged, "the changes")]
    # Two changes that save the same bytes (gzip, and an asset pipeline that compresses too) each look useless
    # with the other in place. One that saved nothing is held back while the next ones are measured, so that
    # one of them proves the saving; campaigns started before replay without it.
    redundancy = one_by_one and workflow.patched("payload-redundancy")
    held: list[ChangeRecord] = []
    for number, (toggled, endpoints, credited, who) in enumerate(measurements):
        measured, fresh = {}, {}
        for in_place in (False, True):
            await put_changes(campaign, toggled, in_place)
            request = WireBytesRequest(
                campaign_id=campaign.input.campaign_id, target=campaign.input.target, endpoints=endpoints
            )
            result: WireBytesResult = await campaign.activity(
                MEASURE_WIRE_BYTES,
                request,
                Role.PERF_OPTIMIZER,
                f"Wire bytes of {', '.join(endpoints)} {'with' if in_place else 'without'} {who}",
            )
            measured[in_place], fresh[in_place] = result.bytes, result.freshness_s
        for change in credited:
            change.bytes_attribution = [
                bytes_verdict(e, measured[False][e], measured[True][e], rules) for e in mine[change.change_id]
            ]
            # Caching headers: measured by the same requests (older histories hold none, and judge on bytes).
            cached = set(caching_endpoints(change, campaign.status.recommendations, campaign.status.findings))
            change.bytes_attribution = [
                with_caching_verdict(b, fresh[False][b.endpoint], fresh[True][b.endpoint])
                if b.endpoint in cached and b.endpoint in fresh[False] and b.endpoint in fresh[True]
                else b
                for b in change.bytes_attribution
            ]
            campaign.event(
                f"payload: {change.lever}: "
                + "; ".join(f"{b.endpoint} {b.verdict.value} ({b.explanation})" for b in change.bytes_attribution)
            )
        saved_nothing = [c for c in credited if not any(b.verdict == Verdict.IMPROVED for b in c.bytes_attribution)]
        if redundancy and workflow.patched("redundancy-by-endpoint"):
            # Per endpoint: gzip saves the export's bytes but nothing on the script an asset pipeline also
            # compresses; held back there, the pipeline is measured without it and proves that saving.
            later = {e for _, measured_next, _, _ in measurements[number + 1 :] for e in measured_next}
            saved_nothing = [
                c
                for c in credited
                if any(b.verdict != Verdict.IMPROVED and b.endpoint in later for b in c.bytes_attribution)
            ]
        if redundancy and saved_nothing:
            await put_changes(campaign, saved_nothing, False)
            held += saved_nothing
    if held:
        await put_changes(campaign, held, True)


async def leave_one_out(campaign: Campaign, verdicts: list[EndpointVerdict]) -> None:
    """Where several kept changes share an improved endpoint, the whole's gain says nothing of each one's:
    each of them is measured once more, interleaved, with the others in place and itself undone (more
    rounds while its gain there is still undecided). A change without which its endpoints are not faster
    by the improvement margin gave nothing and is undone."""
    improved = {v.endpoint for v in verdicts if v.verdict == Verdict.IMPROVED}
    kept = [c for c in campaign.status.changes if c.state == ChangeState.APPLIED]
    for change in kept:
        mine = set(change.endpoints or [change.endpoint]) & improved
        shared = any(
            mine & set(other.endpoints or [other.endpoint])
            for other in kept
            if other is not change and other.state == ChangeState.APPLIED  # not one undone meanwhile
        )
        if not shared or change.state != ChangeState.APPLIED:
            continue
        if any(b.verdict == Verdict.IMPROVED for b in change.bytes_attribution):
            continue  # proved itself in the bytes it saves; its latency there is the others' doing
        comparison = await without_one(campaign, change, mine)
        own = [v for v in comparison.verdicts if v.endpoint in mine]
        change.attribution = own
        if comparison.cost is not None:  # without it is the before arm: what it saves is before - after
            change.cost_effect_per_1000 = round(comparison.cost.saved_per_1000, 6)
        if any(v.verdict == Verdict.IMPROVED for v in own):
            campaign.event(f"attribution: {change.lever} proved its own gain on {', '.join(sorted(mine))}")
            continue
        why = "; ".join(f"{v.endpoint}: {v.explanation}" for v in own) or "its endpoints were not measured"
        await undo(campaign, change, f"leave-one-out: without it the others give the same ({why})")


async def without_one(campaign: Campaign, change: ChangeRecord, mine: set[str]) -> CompareResult:
    """Interleaved arms without and with one change, the others in place; more rounds while more runs
    could still show its gain on ``mine`` (its improved endpoints)."""
    rules = campaign.input.playbook.validation

    def run(in_place: bool, number: int) -> tuple[str, str]:
        side = "with" if in_place else "without"
        return (
            f"attribution-{change.change_id}-{side}-{number}",
            f"Attribution of {change.lever}: run {number} {side} it",
        )

    # Campaigns started before replay with the playbook's first rounds and extra rounds for any undecided
    # endpoint; since, two rounds first (the question is one change's gain, and the budget adds more while
    # it is undecided) and extra rounds only where the budget could decide.
    shorter = workflow.patched("decidable-rounds")

    def still_open(verdicts: list[EndpointVerdict]) -> list[str]:
        own = change.model_copy(update={"endpoints": sorted(mine)})
        return [e for e in undecided_endpoints(verdicts, [own], rules, decidable_only=shorter) if e in mine]

    comparison, _ = await measure_arms(
        campaign,
        [change],
        run,
        f"attribution of {change.lever}",
        lambda _: f"Attribution of {change.lever}: with it against without it",
        # Campaigns started before the extra rounds replay with the playbook's runs per arm only.
        still_open if workflow.patched("adaptive-attribution") else None,
        rounds_first=min(2, rules.runs_per_arm) if shorter else None,
    )
    return comparison


def payload_of(campaign: Campaign, change: ChangeRecord) -> list[str]:
    """The endpoints where ``change`` addresses a payload finding: judged there on its wire bytes."""
    return payload_endpoints(change, campaign.status.recommendations, campaign.status.findings)


def _share_an_endpoint(endpoint_lists: list[list[str]]) -> bool:
    every = [e for endpoints in endpoint_lists for e in set(endpoints)]
    return len(every) != len(set(every))
