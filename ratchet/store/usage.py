"""What one load run used: its requests and their window (k6's samples), the target's CPU and memory (the
resource samples) and its outbound calls per request by host (the client spans), for pricing."""

from __future__ import annotations

from pathlib import Path

import duckdb

from ratchet.analysis.cost import RunUsage
from ratchet.resources.sampler import resource_totals


def run_usage(samples_file: Path, resources_file: Path, spans_file: Path) -> RunUsage | None:
    """None when the run measured no request."""
    if not samples_file.is_file():
        return None
    with duckdb.connect() as con:
        requests, window_s = con.execute(
            "SELECT count(*), coalesce(epoch(max(ts)) - epoch(min(ts)), 0) FROM read_parquet(?)", [str(samples_file)]
        ).fetchone() or (0, 0.0)
        if not requests:
            return None
        calls: dict[str, float] | None = None
        if spans_file.is_file():
            calls = _calls_per_request(con, spans_file)
    cores = memory_gb = None
    if resources_file.is_file():
        _, cpu, memory = resource_totals(resources_file)
        if len(cpu):
            cores, memory_gb = float(cpu.mean()) / 100, float(memory.mean()) / 2**30
    # The window from the first to the last answer, plus one request's spacing (a single request spans 0 s).
    seconds = float(window_s) * requests / max(requests - 1, 1)
    return RunUsage(int(requests), max(seconds, 1.0), cores, memory_gb, calls)


def _calls_per_request(con: duckdb.DuckDBPyConnection, spans_file: Path) -> dict[str, float] | None:
    """Outbound calls per traced request, by the host called; None when no request of the run was traced."""
    rows = con.execute(
        """
        WITH s AS (SELECT trace_id, span_id, parent_span_id, kind, server_address FROM read_parquet(?) WHERE NOT warmup)
        SELECT
          (SELECT count(*) FROM s WHERE kind = 'server'
             AND NOT EXISTS (SELECT 1 FROM s p WHERE p.trace_id = s.trace_id AND p.span_id = s.parent_span_id)),
          (SELECT list(struct_pack(host := server_address, calls := n)) FROM (
             SELECT server_address, count(*) AS n FROM s
             WHERE kind = 'client' AND server_address IS NOT NULL AND server_address <> ''
             GROUP BY server_address))
        """,
        [str(spans_file)],
    ).fetchone()
    roots, by_host = rows if rows else (0, None)
    if not roots:
        return None
    return {entry["host"]: entry["calls"] / roots for entry in by_host or []}
