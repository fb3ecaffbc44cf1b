"""A whole campaign on a Temporal workflow application (examples/pipeline, a temporal-workflow target):
executions driven at a steady rate, bottlenecks read from their histories, the application's settings
changed through its admin API, each change proven or undone."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from ratchet import campaigns
from ratchet.contracts import CampaignState, ChangeState
from ratchet.settings import Settings
from tests.campaign_helpers import finish
from tests.conftest import ROOT, Pipeline

PLAYBOOK = ROOT / "tests" / "playbooks" / "workflows.yaml"
PIPELINE_TARGET = ROOT / "examples" / "pipeline" / "target.yaml"
PLANTED = {"api_limit", "cache_miss", "sequential_dependency", "inefficient_algorithm", "resource_exhaustion"}
FIXES = {"provider-b", "extract-cache", "parallel-steps"}


async def test_a_campaign_on_the_workflow_pipeline_finds_its_bottlenecks_and_keeps_what_proves_itself(
    client: Client, settings: Settings, worker: None, pipeline: Pipeline
) -> None:
    campaign_id = await campaigns.launch(
        client, settings, playbook_file=PLAYBOOK, target_file=PIPELINE_TARGET, auto_approve_as="alice"
    )
    final = await finish(client, campaign_id, timeout_s=900)
    changes = "\n".join(f"{c.lever}: {c.state.value} {c.reason}" for c in final.changes)
    findings = "\n".join(f"{f.type.value} {f.endpoint} {f.evidence.get('step')}: {f.summary}" for f in final.findings)
    print(changes, findings, sep="\n")  # shown with a failure
    assert final.state == CampaignState.COMPLETED, f"{final.outcome_detail}\n{changes}\n{findings}"

    # Every planted bottleneck the histories can show, on the step it is planted in.
    found = {(f.type.value, f.evidence.get("step")) for f in final.findings}
    assert {
        ("api_limit", "summarize"),
        ("cache_miss", "extract_part"),
        ("sequential_dependency", "summarize -> classify"),
        ("inefficient_algorithm", "remove_near_duplicates"),
        ("resource_exhaustion", f"task-queue:{pipeline.task_queue}"),
    } <= found, findings
    assert not [step for _, step in found if "fetch_document" in str(step) or "store_result" in str(step)], findings

    # The fixes are kept, proven by the executions' end-to-end time: at least twice as fast.
    kept = {c.lever for c in final.changes if c.state == ChangeState.KEPT}
    assert kept >= FIXES, changes
    [verdict] = final.verdicts
    assert verdict.verdict.value == "improved", verdict.explanation
    assert verdict.ratio_high is not None and verdict.ratio_high <= 0.5, verdict.explanation

    # The pipeline runs as the campaign left it: the kept settings in effect, anything else as shipped.
    shown = httpx.get(f"{pipeline.admin_url}/admin/settings", timeout=30).json()
    assert shown["provider"] == "B" and shown["extract_cache"] and shown["parallel_steps"], shown
    slots = next(c for c in final.changes if c.lever == "activity-slots")
    assert shown["worker_activity_slots"] == shown["activity_slots"], shown
    if slots.state != ChangeState.KEPT:
        assert shown["activity_slots"] == 1, changes
    # The example inputs' results were checked after the changes: the summaries and labels did not change.
    assert "behaviour unchanged by the applied changes" in [e.message for e in final.events], changes
