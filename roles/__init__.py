"""The roles of a campaign. Each role is a Temporal task queue and the activities served on it.

A role can run on its own worker fleet: ``python worker.py --roles backend-developer``.
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


def role_activities(role: Role, settings: Settings) -> list[Callable[..., Any]]:
    """The activities a role's worker serves, with their dependencies injected."""
    store = settings.resolved_store_url
    measure = MeasurementActivities(settings)
    levers = LeverActivities(store)
    analysis = AnalysisActivities(settings)
    measuring: list[Callable[..., Any]] = [measure.run_load_test, measure.summarize_load_test]
    if role == Role.PERF_OPTIMIZER:
        assess = AssessmentActivities(settings)
        records = RecordActivities(store)
        reports = ReportActivities(settings)
        probe = ProbeActivities(settings)
        return [
            *measuring, probe.probe_endpoints, probe.measure_wire_bytes, assess.find_bottlenecks, analysis.plan_changes, analysis.compare_runs,
            analysis.compare_arms, analysis.size_validation_load, analysis.calibrate_noise, records.record_campaign, reports.write_report, AlertActivities().send_alert,
        ]  # fmt: skip
    if role == Role.TEST_ENGINEER:
        behaviour = BehaviourActivities(settings)
        return [
            *measuring, analysis.compare_runs, analysis.compare_arms, behaviour.record_behaviour,
            behaviour.check_behaviour,
        ]  # fmt: skip
    if role == Role.DEVOPS_ENGINEER:
        return [levers.apply_lever, levers.rollback_lever, *measuring, analysis.check_guard, analysis.suggest_value]
    if role == Role.LOAD_GENERATOR:
        return [measure.generate_load]
    # backend-developer and frontend-developer change the target through levers.
    return [levers.apply_lever, levers.rollback_lever]
