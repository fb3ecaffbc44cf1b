"""Histories that earlier versions of the campaign recorded replay against today's code: a campaign that started
before a change of the workflow (each behind its ``workflow.patched`` marker) must finish on a new worker.

``tests/histories/`` holds them, gzipped, named by the commit that recorded them and what ran: a test of that
commit with its real server, workers, k6 and shop, or (``-fake-``) a fast-tier test on fake activities, whose
paths (gates, escalation, rejection, the guard's second window, cancel, memory) cover most patch markers.
Record them with ``RATCHET_RECORD_HISTORIES=DIR pytest tests/test_campaign_mechanics.py`` (every test that
calls ``assert_replays`` keeps its history there) and add them whenever a patch marker guards a change of the
workflow's commands.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows import WORKFLOW_RUNNER
from workflows.campaign import CampaignWorkflow
from workflows.rollout import RolloutWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json.gz"))


def test_there_are_recorded_histories_to_replay() -> None:
    assert HISTORIES, "tests/histories/ holds no recorded history"


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.name.removesuffix(".json.gz"))
async def test_a_history_recorded_by_an_earlier_version_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.name, gzip.decompress(path.read_bytes()).decode())
    replayer = Replayer(
        workflows=[CampaignWorkflow, RolloutWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=WORKFLOW_RUNNER,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
