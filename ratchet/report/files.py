"""Report files: safe names, and writes that never leave half a file."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

# Campaign ids may come from a person (--id); anything outside this set could leave the reports folder.
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


def report_stem(campaign_id: str) -> str:
    """The file name (without extension) of a campaign's report: its id, made safe as a single file name."""
    return _UNSAFE_FILENAME.sub("_", campaign_id).lstrip(".") or "campaign"


def write_atomically(path: Path, text: str) -> Path:
    """Write text to a temporary file beside ``path`` and rename it over ``path``.

    A reader (or a retried attempt) sees the old report or the new one, never half a file; the temporary
    file lives in the same folder because a rename is only atomic within one file system.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is meant to be read and shared
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path.resolve()
