"""One activity catalogue: every activity a workflow calls is in it, implemented under its name with the
argument and result types it says, and served by the roles it names (their workers register it from there)."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import get_type_hints

import pytest
from temporalio import activity

from ratchet.config.common import Role
from ratchet.settings import Settings
from roles import implementations, role_activities
from workflows.catalogue import CATALOGUE, ActivitySpec

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("spec", CATALOGUE.values(), ids=lambda s: s.name)
def test_each_activity_is_implemented_with_the_types_the_catalogue_says(spec: ActivitySpec, tmp_path: Path) -> None:
    implementation = implementations(Settings(home=tmp_path))[spec.name]
    assert activity._Definition.must_from_callable(implementation).name == spec.name
    hints = get_type_hints(implementation)
    [parameter] = [p for p in inspect.signature(implementation).parameters]
    assert hints[parameter] is spec.argument
    assert hints["return"] in (spec.result, None if spec.result is type(None) else spec.result)


def test_each_role_serves_what_the_catalogue_gives_it(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    for role in Role:
        served = {activity._Definition.must_from_callable(f).name for f in role_activities(role, settings)}
        assert served == {s.name for s in CATALOGUE.values() if role in s.roles}, role
    assert not role_activities(Role.LOAD_GENERATOR, settings)[1:], "a load generator only generates load"


def test_workflows_call_activities_only_through_the_catalogue() -> None:
    """No activity is started by its name as a string: the catalogue's options are the only ones."""
    for path in (ROOT / "workflows").rglob("*.py"):
        if path.name == "catalogue.py":
            continue
        text = path.read_text()
        assert "execute_activity(" not in text and "start_activity(" not in text, path
