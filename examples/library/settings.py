"""Where the library keeps its state, from the environment (set by ``python -m examples.library``)."""

from __future__ import annotations

import os
from pathlib import Path


def database_url() -> str:
    return os.environ["LIBRARY_DATABASE_URL"]


def sqlalchemy_url(url: str) -> str:
    """``postgresql://...`` as SQLAlchemy names psycopg 3: ``postgresql+psycopg://...``."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def home() -> Path:
    """The folder with the flags file, the reporting pool's size and gunicorn's pid file."""
    return Path(os.environ.get("LIBRARY_HOME", ".ratchet/library"))


def rates_url() -> str:
    return os.environ.get("LIBRARY_RATES_URL", "http://127.0.0.1:8811")


def reporting_pool_size() -> int:
    """Connections of the reporting engine, per worker process: the file ``reporting-pool`` in the home
    (written by the operators' lever), 1 when absent. Read once per worker: a change needs a reload."""
    path = home() / "reporting-pool"
    return int(path.read_text().strip()) if path.exists() else 1
