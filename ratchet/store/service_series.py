"""An arm's runs read back from the store for the service-level verdicts: resource samples, statement spans and
cache lookups, each only when the playbook sets a target that reads it."""

from __future__ import annotations

import numpy as np

from ratchet.analysis.service_verdicts import ArmSeries
from ratchet.config.playbook import Playbook
from ratchet.resources.caches import recorded_lookups
from ratchet.resources.sampler import resource_totals
from ratchet.settings import Settings
from ratchet.store.statement_times import statement_durations


def arm_series(settings: Settings, run_ids: list[str], playbook: Playbook) -> ArmSeries:
    slo = playbook.slo
    arm = ArmSeries()
    if any(limit is not None for limit in slo.resources.model_dump().values()):
        for run_id in run_ids:
            path = settings.resources_file(run_id)
            _, cpu, memory = resource_totals(path) if path.is_file() else (None, np.empty(0), np.empty(0))
            arm.cpu.append(cpu)
            arm.memory_mb.append(memory / 2**20)
    if slo.db_p95_ms is not None:
        arm.statements_ms = [statement_durations(settings.spans_file(run_id)) for run_id in run_ids]
    if slo.cache_hit_rate is not None:
        arm.caches = [recorded_lookups(settings.caches_file(run_id)) for run_id in run_ids]
    return arm
