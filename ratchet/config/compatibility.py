"""What a playbook asks that its target cannot give: said at launch, before anything starts."""

from __future__ import annotations

from ratchet.config.playbook import Playbook
from ratchet.config.target import Target


def unsupported_by_target(playbook: Playbook, target: Target) -> list[str]:
    """The playbook's fields (with what would be valid) that the target's kind cannot run."""
    if not target.is_workflow:
        return []
    found = []
    if playbook.load.generators != 1:
        found.append("load.generators: a temporal-workflow target's executions are started by one driver; use 1")
    closed = [e.name for e in target.endpoints if e.workflow is not None and e.workflow.concurrency is not None]
    if closed:
        # A closed model's pace follows the application's speed: there is no rate to ramp or multiply.
        asked = [
            field
            for field, value in (
                ("load.rate: auto", playbook.load.rate == "auto"),
                ("load.stress", playbook.load.stress is not None),
                ("load.peak", playbook.load.peak is not None),
            )
            if value
        ]
        found += [
            f"{field}: endpoints {closed} keep a fixed number of executions in flight (workflow.concurrency), "
            "which has no rate to ramp; give them no concurrency (the load's rate), or leave this out"
            for field in asked
        ]
    return found
