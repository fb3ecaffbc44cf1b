"""The pipeline's settings: the levers its operators (and Ratchet) turn, kept in ``settings.json`` in its home
and changed through the admin API. The worker reads them at every step; the workflow reads the ones that shape
its steps once per execution, through a local activity (recorded in its history, so replays agree)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PipelineSettings(BaseModel):
    """Every setting with its default: the pipeline as it ships."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["A", "B"] = Field("A", description="The AI provider that summarizes.")
    provider_percent: float = Field(
        100.0, ge=0, le=100, description="The share of executions (drawn at each one's start) that use it; the rest, A."
    )
    extract_cache: bool = Field(False, description="Keep extracted parts, keyed by part: a repeat is not re-extracted.")
    parallel_steps: bool = Field(False, description="Summarize and classify at once (both need only the text).")
    activity_slots: int = Field(1, ge=1, le=64, description="Activities the worker runs at once.")


class SettingsFile:
    """The settings of one home; written whole with a rename, so no reader sees half a file."""

    def __init__(self, home: Path) -> None:
        self.path = home / "settings.json"

    def current(self) -> PipelineSettings:
        try:
            return PipelineSettings.model_validate_json(self.path.read_text())
        except FileNotFoundError:
            return PipelineSettings()

    def update(self, changes: dict[str, object]) -> PipelineSettings:
        """Merge ``changes``, validated whole (a bad value changes nothing)."""
        merged = PipelineSettings.model_validate(self.current().model_dump() | changes)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(merged.model_dump()))
        partial.replace(self.path)
        return merged
