"""Files written whole or not at all: a reader (or a retried attempt) sees the old file or the new one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, text: str) -> Path:
    """Write text to a temporary file beside ``path`` and rename it over ``path``.

    A reader (or a retried attempt) sees the old file or the new one, never half a file; the temporary file
    lives in the same folder because a rename is only atomic within one file system.
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; these files are meant to be read and shared
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path.resolve()
