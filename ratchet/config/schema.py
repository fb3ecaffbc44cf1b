"""JSON Schemas of playbooks and targets, for editors (yaml-language-server and the like)."""

from __future__ import annotations

import json
from pathlib import Path

from ratchet.config.playbook import Playbook
from ratchet.config.target import Target

SCHEMAS: dict[str, type[Playbook] | type[Target]] = {"playbook.schema.json": Playbook, "target.schema.json": Target}


def schema_text(model: type[Playbook] | type[Target]) -> str:
    """The schema of one model, as stable, pretty JSON."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(folder: Path) -> list[Path]:
    """Write every schema into ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = folder / name
        path.write_text(schema_text(model), encoding="utf-8")
        written.append(path)
    return written
