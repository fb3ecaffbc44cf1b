"""What a playbook asks that its target cannot give: said at launch, before anything starts."""

from __future__ import annotations

from ratchet.config.playbook import Playbook
from ratchet.config.target import Target


def unsupported_by_target(playbook: Playbook, target: Target) -> list[str]:
    """The playbook's fields (with what would be valid) that the target's kind cannot run."""
    if not target.is_workflow:
        return []
    load = playbook.load
    found = []
    if load.rate == "auto":
        found.append(
            "load.rate: auto needs a stepped ramp, which a temporal-workflow target does not run yet; "
            "give a number of executions per second"
        )
    if load.stress is not None:
        found.append("load.stress: a stepped ramp is not run on a temporal-workflow target yet; remove it")
    if load.generators != 1:
        found.append("load.generators: a temporal-workflow target's executions are started by one driver; use 1")
    return found
