"""Observability gaps: what Ratchet could not see in a run is said, with what it hides and how to open it, and a
well-traced run has none. The span counts come from a real Parquet file read by DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from rich.console import Console

from ratchet.analysis.blind_spots import blind_spots
from ratchet.analysis.traces.coverage import SpanCoverage, span_coverage
from ratchet.cli.views import campaign_view
from ratchet.config.target import Target
from ratchet.contracts import CampaignStatus, EndpointStats


def target(*, database: bool = True, traces: bool = True) -> Target:
    return Target.model_validate(
        {
            "name": "t",
            "base_url": "http://127.0.0.1:9",
            "endpoints": [{"name": "search", "path": "/search"}, {"name": "item", "path": "/items/1"}],
            **({"database": {"url": "sqlite:////tmp/x.db"}} if database else {}),
            **({"traces": {}} if traces else {}),
        }
    )


def stats(endpoint: str, requests: int) -> EndpointStats:
    return EndpointStats(endpoint=endpoint, requests=requests, errors=0, error_rate=0, p50=5, p95=9, p99=12, mean=6)


BASELINE = [stats("search", 100), stats("item", 100)]
WELL_TRACED = SpanCoverage(
    spans=900, database_spans=500, children=700, orphans=2, traced_requests={"search": 100, "item": 98}
)


def kinds(gaps: list) -> list[str]:
    return [g.kind for g in gaps]


def test_a_well_traced_run_has_no_blind_spot() -> None:
    assert blind_spots(target(), BASELINE, WELL_TRACED, spans_expected=True) == []


def test_a_target_without_traces_is_said_to_be_seen_from_outside_only() -> None:
    [gap] = blind_spots(target(traces=False), BASELINE, None, spans_expected=False)
    assert gap.kind == "untraced" and "N+1 queries and calls" in gap.blind_to
    assert "ratchet traces serve" in gap.advice


def test_traces_declared_but_none_arrived() -> None:
    [gap] = blind_spots(target(), BASELINE, None, spans_expected=True)
    assert gap.kind == "no-spans" and "client's clock" in " ".join(gap.blind_to)


def test_a_database_without_database_spans_is_blind_to_n_plus_one() -> None:
    coverage = SpanCoverage(spans=200, children=0, traced_requests={"search": 100, "item": 100})
    [gap] = blind_spots(target(), BASELINE, coverage, spans_expected=True)
    assert gap.kind == "no-database-spans" and "N+1 queries" in gap.blind_to
    assert "Connection.execute" in gap.advice
    # Without a database there is nothing to be blind to.
    assert blind_spots(target(database=False), BASELINE, coverage, spans_expected=True) == []


def test_spans_whose_parents_never_arrived_are_context_lost_across_a_pool() -> None:
    lost = SpanCoverage(
        spans=900,
        database_spans=500,
        children=700,
        orphans=140,
        orphan_database_spans=140,
        traced_requests={"search": 100, "item": 100},
    )
    [gap] = blind_spots(target(), BASELINE, lost, spans_expected=True)
    assert gap.kind == "orphan-spans" and "20%" in gap.summary and "statement shares" in gap.blind_to
    assert "copy_context" in gap.advice
    # A few lost at the run's edges are no gap.
    few = SpanCoverage(spans=900, database_spans=500, children=700, orphans=19, traced_requests=lost.traced_requests)
    assert blind_spots(target(), BASELINE, few, spans_expected=True) == []


def test_an_endpoint_mostly_untraced_is_named() -> None:
    sampled = SpanCoverage(spans=900, database_spans=500, children=700, traced_requests={"search": 10, "item": 100})
    [gap] = blind_spots(target(), BASELINE, sampled, spans_expected=True)
    assert gap.kind == "sampled" and gap.endpoints == ["search"]
    assert gap.evidence["traced_share"] == {"search": 0.1}


def test_span_coverage_counts_orphans_database_spans_and_traced_requests(tmp_path: Path) -> None:
    rows = []
    for n in range(30):  # 30 requests of search: root, handler child, a statement under the handler
        trace = f"t{n}"
        rows += [
            # The entry's parent is the load generator's span, which is never exported: no orphan.
            (trace, f"{trace}r", f"{trace}k6", "server", "search", None, None, False),
            (trace, f"{trace}h", f"{trace}r", "internal", "search", None, None, False),
            (trace, f"{trace}q", f"{trace}h", "client", "search", "sqlite", "SELECT 1", False),
        ]
    for n in range(10):  # 10 statements run in a pool that lost the context: their parent never arrives
        rows.append((f"t{n}", f"lost{n}", f"gone{n}", "client", "search", "sqlite", "SELECT 2", False))
    rows.append(("w", "wr", None, "server", "item", None, None, True))  # a warm-up trace: left out
    columns = ["trace_id", "span_id", "parent_span_id", "kind", "endpoint", "db_system", "statement", "warmup"]
    table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})
    path = tmp_path / "spans.parquet"
    pq.write_table(table, path)
    with duckdb.connect() as con:
        coverage = span_coverage(con, str(path))
    assert coverage.spans == 100
    assert coverage.database_spans == 40
    assert coverage.children == 70  # every span but the servers' must have its parent
    assert coverage.orphans == 10 and coverage.orphan_database_spans == 10
    assert coverage.traced_requests == {"search": 30}


def test_the_status_view_shows_the_blind_spots_above_the_phases() -> None:
    gaps = blind_spots(target(traces=False), BASELINE, None, spans_expected=False)
    status = CampaignStatus(campaign_id="c", target="t", playbook="p", blind_spots=gaps)
    console = Console(width=120, record=True)
    console.print(campaign_view(status))
    text = console.export_text()
    assert "What Ratchet cannot see" in text and "untraced" in text
    assert text.index("What Ratchet cannot see") < text.index("Phases")
