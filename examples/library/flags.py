"""The library's feature flags, kept in ``flags.json`` in its home so every gunicorn worker sees a change.

Each request reads the file only when its modification time changed (one ``stat``, no query); the admin
API (``GET``/``POST /admin/flags``) writes it whole with a rename, so no worker reads half a file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from examples.library.settings import home


class LibraryFlags(BaseModel):
    """Every flag with its default: the library as it ships."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eager_load_reviews: bool = Field(False, description="An author's books: load their reviews in one query.")
    batch_rate_lookup: bool = Field(False, description="Cart quote: ask the rates API for all items in one call.")
    genre_report_cache_ttl_s: float = Field(0.0, ge=0, description="Keep the rendered genre report this long.")


class FlagFile:
    """The flags file of one home, re-read when it changes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or home() / "flags.json"
        self._lock = threading.Lock()
        self._seen: float | None = None
        self._flags = LibraryFlags()

    def current(self) -> LibraryFlags:
        try:
            changed = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return LibraryFlags()
        with self._lock:
            if changed != self._seen:
                self._flags = LibraryFlags.model_validate_json(self.path.read_text())
                self._seen = changed
            return self._flags

    def update(self, changes: dict[str, Any]) -> LibraryFlags:
        """Merge ``changes`` (validated whole: a bad value changes nothing) and write the file atomically."""
        with self._lock:
            merged = LibraryFlags.model_validate(self.current_unlocked().model_dump() | changes)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            partial.write_text(json.dumps(merged.model_dump()))
            partial.replace(self.path)
            self._seen = None
            return merged

    def current_unlocked(self) -> LibraryFlags:
        return LibraryFlags.model_validate_json(self.path.read_text()) if self.path.exists() else LibraryFlags()
