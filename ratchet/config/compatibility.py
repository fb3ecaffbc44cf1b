"""What a playbook asks that its target cannot give: said at launch, before anything starts."""

from __future__ import annotations

from ratchet.config.playbook import Playbook
from ratchet.config.target import Target


def unsupported_by_target(playbook: Playbook, target: Target) -> list[str]:
    """The playbook's fields (with what would be valid) that the target's kind cannot run."""
    if not target.is_workflow:
        return []
    if playbook.load.generators != 1:
        return ["load.generators: a temporal-workflow target's executions are started by one driver; use 1"]
    return []
