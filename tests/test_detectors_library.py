"""The analysts on the second example service (examples/library), a stack Ratchet was not built around:
Flask and the SQLAlchemy ORM on PostgreSQL behind gunicorn's worker processes, traced by the standard
instrumentations. Every planted problem is found with the right type on the right endpoint, the clean
endpoints yield nothing, and each finding's recommended lever is the library's own fix for it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.analysis.planning import plan
from ratchet.analysis.responses import ProbeReport
from ratchet.config.loading import load_target
from ratchet.settings import Settings
from tests.conftest import LIBRARY_TARGET, ROOT, Library
from tests.test_detectors_shop import assess

# The shipped playbooks' load: a capacity ramp chooses the rate (gunicorn's two workers on this machine serve
# far less than the shop).
PLAYBOOK = ROOT / "tests" / "playbooks" / "detect-auto.yaml"
PLANTED = {
    ("n-plus-one", "author-books"): "eager-load-reviews",
    ("missing-index", "member-loans"): "loans-member-status-index",
    ("n-plus-one-api", "cart-quote"): "batch-rate-lookup",
    ("cacheable", "genre-report"): "cache-genre-report",
    ("saturation", "shelf-usage"): "reporting-pool-size",
}
CLEAN = {"health", "book", "member"}


@pytest.mark.asyncio
async def test_every_planted_problem_of_the_library_is_found_and_fixed_by_its_own_lever(
    settings: Settings, library: Library
) -> None:
    result = await assess(settings, "library", LIBRARY_TARGET, PLAYBOOK)
    found = {(f.type.value, f.endpoint) for f in result.findings}
    described = "\n".join(f"{f.id} {f.severity} {f.type.value} {f.endpoint}: {f.summary}" for f in result.findings)
    described += "\nnotes:\n" + "\n".join(result.notes)
    probe = ProbeReport.model_validate_json(Path(settings.probe_file("library")).read_text())
    described += "\nprobe:\n" + "\n".join(
        f"{e.endpoint} identical={e.identical_repeats} {[s.elapsed_ms for s in e.samples]}" for e in probe.endpoints
    )

    assert found >= set(PLANTED), f"missed {sorted(set(PLANTED) - found)}; found:\n{described}"
    assert not [f for f in result.findings if f.endpoint in CLEAN], described
    assert {f.endpoint for f in result.findings} <= {endpoint for _, endpoint in PLANTED}, described

    [n1] = [f for f in result.findings if f.type.value == "n-plus-one"]
    assert "reviews" in n1.evidence["statement"] and n1.evidence["calls_per_request"] >= 10, n1.evidence
    [index] = [f for f in result.findings if f.type.value == "missing-index"]
    assert index.evidence["table"] == "loans", index.evidence
    [pool] = [f for f in result.findings if f.type.value == "saturation"]
    assert pool.evidence["max_served_at_once"] * 2 <= pool.evidence["max_called_at_once"], pool.evidence

    recommendations = plan(result.findings, load_target(LIBRARY_TARGET), limit=100)
    by_id = {f.id: f for f in result.findings}
    chosen = {
        (by_id[f].type.value, by_id[f].endpoint): r.lever.name
        for r in recommendations
        if r.recommended and r.lever
        for f in r.finding_ids
    }
    assert {key: chosen.get(key) for key in PLANTED} == PLANTED, described
