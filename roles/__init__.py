"""The roles of a campaign. Each role is a Temporal task queue and the activities served on it.

Which role serves which activity is said once, in the activity catalogue (``workflows.catalogue``): a role's
worker registers every activity the catalogue gives it. A role can run on its own worker fleet:
``python worker.py --roles backend-developer``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.alerts import AlertActivities
from activities.assessment import AssessmentActivities
from activities.behaviour import BehaviourActivities
from activities.levers import LeverActivities
from activities.measurement import MeasurementActivities
from activities.planning import AnalysisActivities
from activities.probing import ProbeActivities
from activities.records import RecordActivities
from activities.reporting import ReportActivities
from ratchet.config.common import Role
from ratchet.settings import Settings
from workflows.catalogue import CATALOGUE


def implementations(settings: Settings) -> dict[str, Callable[..., Any]]:
    """Every catalogued activity's implementation, with its dependencies injected (each method is named as
    its activity)."""
    store = settings.resolved_store_url
    owners: list[object] = [
        MeasurementActivities(settings),
        LeverActivities(store),
        AnalysisActivities(settings),
        AssessmentActivities(settings),
        RecordActivities(store),
        ReportActivities(settings),
        ProbeActivities(settings),
        BehaviourActivities(settings),
        AlertActivities(),
    ]
    found = {name: getattr(owner, name) for owner in owners for name in CATALOGUE if hasattr(owner, name)}
    missing = sorted(set(CATALOGUE) - set(found))
    if missing:
        raise RuntimeError(f"catalogued activities without an implementation: {', '.join(missing)}")
    return found


def role_activities(role: Role, settings: Settings) -> list[Callable[..., Any]]:
    """The activities a role's worker serves."""
    served = implementations(settings)
    return [served[spec.name] for spec in CATALOGUE.values() if role in spec.roles]
