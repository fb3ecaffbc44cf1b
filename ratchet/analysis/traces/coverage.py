"""How much of a run the spans cover: what the trace detectors could see at all."""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from ratchet.store.sample_stream import sql_literal


@dataclass(frozen=True)
class SpanCoverage:
    """Counts over a run's steady-state spans."""

    spans: int = 0
    database_spans: int = 0
    children: int = 0
    """Spans that must have a parent in the request's trace (all but server spans)."""
    orphans: int = 0
    """Of those, spans whose parent never arrived (context lost across a thread pool, or a parent not exported)."""
    orphan_database_spans: int = 0
    traced_requests: dict[str, int] = field(default_factory=dict)
    """Per endpoint, requests (traces) of which a server span arrived."""


def span_coverage(con: duckdb.DuckDBPyConnection, spans_file: str) -> SpanCoverage:
    """The coverage of the spans in ``spans_file`` (warm-up traces left out, as the detectors leave them)."""
    con.execute(
        "CREATE OR REPLACE TEMP VIEW coverage_spans AS SELECT trace_id, span_id, parent_span_id, kind, endpoint, "
        "db_system IS NOT NULL OR statement IS NOT NULL AS is_database "
        f"FROM read_parquet({sql_literal(spans_file)}) WHERE NOT warmup"
    )
    # A server span whose parent is missing is a request's entry (its caller, the load generator, exports
    # nothing); any other span without its parent lost it.
    row = con.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE s.is_database), count(*) FILTER (WHERE s.kind <> 'server'),
               count(*) FILTER (WHERE s.kind <> 'server' AND p.span_id IS NULL),
               count(*) FILTER (WHERE s.kind <> 'server' AND p.span_id IS NULL AND s.is_database)
        FROM coverage_spans s
        LEFT JOIN coverage_spans p ON p.trace_id = s.trace_id AND p.span_id = s.parent_span_id
        """
    ).fetchone()
    roots = con.execute(
        "SELECT endpoint, count(DISTINCT trace_id) FROM coverage_spans "
        "WHERE kind = 'server' AND endpoint IS NOT NULL GROUP BY endpoint"
    ).fetchall()
    spans, database, children, orphans, orphan_database = row if row is not None else (0, 0, 0, 0, 0)
    return SpanCoverage(
        spans=spans,
        database_spans=database,
        children=children,
        orphans=orphans,
        orphan_database_spans=orphan_database,
        traced_requests={endpoint: count for endpoint, count in roots},
    )
