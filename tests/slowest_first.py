"""The longest tests first, spread over the workers: `make test` runs two tests at a time, and a long test that
starts last runs alone at the end while the other worker has nothing left to take (CI, 2026-12-08: 158 s less
test time than the run before, and the same 1,254 s wall time; the workflow campaign, 219 s, ran near the end).

pytest-xdist's work stealing first hands each worker a contiguous share of the collected order, which each runs
from its front; an idle worker then steals from the back of the busiest one's queue. Sorted longest first and
dealt out in turn, each share starts with long tests and ends with short ones, which are what gets stolen.

The durations are those a run measured (`tests/durations.json`, seconds of each test's call). Tests not in it
count as short and keep their collected order after the others. `RATCHET_STORE_DURATIONS=1` merges a run's
measured durations into the file (a test that got much slower or faster moves; a test renamed or deleted leaves
a line that matches nothing, harmless).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

DURATIONS_FILE = Path(__file__).with_name("durations.json")
_RECORDED_FROM_S = 1.0  # shorter tests do not change the order's outcome: they are what fills the gaps


def load_durations(path: Path = DURATIONS_FILE) -> dict[str, float]:
    return {str(k): float(v) for k, v in json.loads(path.read_text()).items()} if path.is_file() else {}


def dealt_slowest_first(node_ids: list[str], durations: dict[str, float], workers: int) -> list[str]:
    """``node_ids`` longest first (unknown ones last, in their order), dealt in turn into ``workers`` shares
    that follow one another: each worker's contiguous share then starts with its longest."""
    ranked = sorted(node_ids, key=lambda node_id: -durations.get(node_id, 0.0))
    if workers < 2:
        return ranked
    return [node_id for share in range(workers) for node_id in ranked[share::workers]]


class SlowestFirst:
    """Orders the selected tests (after `-m`/`-k` deselection: the shares are dealt from what runs)."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        by_id = {item.nodeid: item for item in items}
        items[:] = [by_id[node_id] for node_id in dealt_slowest_first(list(by_id), load_durations(), workers)]


class DurationRecorder:
    """With RATCHET_STORE_DURATIONS=1: each test's call duration, merged into the durations file at the end
    (in the controller, which hears every worker's reports)."""

    def __init__(self) -> None:
        self.measured: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.passed:
            self.measured[report.nodeid] = report.duration

    def pytest_sessionfinish(self) -> None:
        durations = load_durations()
        for node_id, seconds in self.measured.items():
            if seconds >= _RECORDED_FROM_S:
                durations[node_id] = round(seconds, 1)
            else:
                durations.pop(node_id, None)
        DURATIONS_FILE.write_text(json.dumps(dict(sorted(durations.items())), indent=1) + "\n")
