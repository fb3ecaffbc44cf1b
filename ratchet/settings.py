"""Settings shared by the CLI, the workers and the activities, read from RATCHET_* variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where Ratchet keeps its data and how it reaches Temporal."""

    model_config = SettingsConfigDict(env_prefix="RATCHET_", extra="ignore")

    home: Path = Field(Path(".ratchet"), description="Data folder: store, samples, reports, Temporal's file.")
    temporal_address: str = Field("127.0.0.1:7233", description="host:port of the Temporal frontend.")
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    codec_port: int = Field(8081, description="`ratchet codec-server` listens here (the UI decodes payloads there).")
    store_url: str | None = Field(None, description="SQLAlchemy URL of the store; default: SQLite in home.")
    otlp_port: int = Field(4318, description="Port of Ratchet's OTLP/HTTP trace receiver (`ratchet traces serve`).")
    otlp_host: str = Field("127.0.0.1", description="Host the activities reach the trace receiver on.")
    otlp_token: str | None = Field(
        None,
        description="A bearer token the trace receiver asks of every exporter and caller (RATCHET_OTLP_TOKEN); the "
        "target's exporter sends it with OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN.",
    )
    trace_settle_max: float = Field(
        15.0, description="Seconds a run waits at most for a service's last spans (its exporter batches them)."
    )
    trace_receiver_wait: float = Field(
        90.0,
        description="Seconds a load test of a target with traces waits for the trace receiver to answer before it "
        "refuses to run (its first start after an install takes about a minute).",
    )
    task_queue_prefix: str = Field("ratchet", description="Role task queues are '<prefix>-<role>'.")
    chromium: str | None = Field(
        None, description="The Chromium that measures pages' web vitals (default: chromium on PATH)."
    )

    @property
    def resolved_home(self) -> Path:
        path = self.home.expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.resolved_home / 'ratchet.db'}"

    @property
    def samples_dir(self) -> Path:
        return self._data_dir("samples")

    def samples_file(self, run_id: str) -> Path:
        """The Parquet file that holds one load run's raw samples."""
        return self.samples_dir / f"{run_id}.parquet"

    @property
    def spans_dir(self) -> Path:
        return self._data_dir("spans")

    def spans_file(self, run_id: str) -> Path:
        """The Parquet file that holds the spans of one load run's requests."""
        return self.spans_dir / f"{run_id}.parquet"

    def _data_dir(self, folder: str) -> Path:
        """``folder`` of the data folder, created when missing."""
        path = self.resolved_home / folder
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _data_file(self, folder: str, name: str) -> Path:
        """``name`` in ``folder`` of the data folder, the folder created when missing."""
        return self._data_dir(folder) / name

    @property
    def workflow_steps_dir(self) -> Path:
        """Where `ratchet workflows analyze` keeps the steps it read (a folder per workflow type)."""
        return self._data_dir("workflows")

    @property
    def resources_dir(self) -> Path:
        return self._data_dir("resources")

    def resources_file(self, run_id: str) -> Path:
        """The Parquet file that holds the 1 Hz resource samples of the target during one load run."""
        return self.resources_dir / f"{run_id}.parquet"

    def caches_file(self, run_id: str) -> Path:
        """The JSON file of the lookups each of the target's caches served during one load run."""
        return self._data_file("caches", f"{run_id}.json")

    def statements_file(self, run_id: str) -> Path:
        """The JSON file of what the target's database ran during one load run (from pg_stat_statements)."""
        return self._data_file("statements", f"{run_id}.json")

    def inspection_file(self, run_id: str) -> Path:
        """The JSON file of the database inspection made for one load run (tables, statements, plans)."""
        return self._data_file("inspections", f"{run_id}.json")

    def probe_file(self, campaign_id: str) -> Path:
        """The JSON file of what probing a campaign's target answered (sizes, encodings, repeats, assets)."""
        return self._data_file("probes", f"{campaign_id}.json")

    def behaviour_file(self, campaign_id: str) -> Path:
        """The JSON file of what the target answered before any change (the test-engineer's reference)."""
        return self._data_file("behaviour", f"{campaign_id}.json")

    def probe_dir(self, campaign_id: str) -> Path:
        """The folder of a campaign's probe samples (the browser runs' k6 output)."""
        return self._data_dir(f"probes/{campaign_id}")

    @property
    def otlp_url(self) -> str:
        return f"http://{self.otlp_host}:{self.otlp_port}"

    @property
    def reports_dir(self) -> Path:
        return self._data_dir("reports")

    @property
    def ui_url(self) -> str:
        host = self.temporal_address.rsplit(":", 1)[0]
        return f"http://{host}:{self.temporal_ui_port}"

    def task_queue(self, role: str) -> str:
        """The task queue a role's activities are served on."""
        return f"{self.task_queue_prefix}-{role}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()
