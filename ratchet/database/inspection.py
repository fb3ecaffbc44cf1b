"""Inspect the target's database for one run: tables, statement statistics, plans of the dominant statements.

The whole inspection is stored as JSON beside the run (``Settings.inspection_file``); only its summary
travels back to the workflow.
"""

from __future__ import annotations

from pathlib import Path

from ratchet.config.target import Target
from ratchet.database.catalog import explain, read_tables
from ratchet.database.models import DatabaseInspection, InspectionSummary, StatementPlan, StatementStats
from ratchet.database.statement_stats import recorded_statements, span_statements
from ratchet.database.statements import dominant_statements, group_statements, normalize_statement
from ratchet.database.summary import summarize
from ratchet.database.target import target_engine
from ratchet.files import write_atomically
from ratchet.settings import Settings

DOMINANT_STATEMENTS = 5


def run_statements(target: Target, statements_file: Path, spans_file: Path) -> tuple[list[StatementStats], list[str]]:
    """The run's statement statistics: pg_stat_statements' when recorded, else the spans', with notes."""
    assert target.database is not None
    dialect = target.database.dialect
    notes: list[str] = []
    if statements_file.exists():
        return group_statements(recorded_statements(statements_file), dialect, "pg_stat_statements"), notes
    if dialect == "postgresql":
        notes.append("no pg_stat_statements counters for this run: statement statistics come from its spans")
    if spans_file.exists():
        stats = group_statements(span_statements(spans_file), dialect, "spans")
        if stats:
            return stats, notes
    notes.append("no statement statistics for this run: no database spans (is the target traced?)")
    return [], notes


def inspect_run(
    settings: Settings, target: Target, run_id: str, *, top: int = DOMINANT_STATEMENTS
) -> DatabaseInspection:
    """Read the target's tables and the run's statements, explain the ``top`` statements by total time, and
    store it all in the run's inspection file."""
    assert target.database is not None
    dialect = target.database.dialect
    statements, notes = run_statements(target, settings.statements_file(run_id), settings.spans_file(run_id))
    plans = []
    with target_engine(target.database.url).connect() as connection:
        tables = read_tables(connection, dialect)
        for stats in dominant_statements(statements, dialect, top):
            plan = StatementPlan(statement=stats.statement, total_ms=stats.total_ms, calls=stats.calls)
            try:
                lines, scans = explain(connection, dialect, normalize_statement(stats.statement, dialect))
            except Exception as exc:  # a statement the database no longer accepts (dropped table, ...)
                plan.error = str(exc).splitlines()[0]
            else:
                plan.plan = lines
                plan.full_scans = sorted({scan.table for scan in scans})
                plan.plan_lines = [scan.plan_line for scan in scans]
            plans.append(plan)
    inspection = DatabaseInspection(
        run_id=run_id, dialect=dialect, tables=tables, statements=statements, plans=plans, notes=notes
    )
    write_atomically(settings.inspection_file(run_id), inspection.model_dump_json(indent=1))
    return inspection


def inspect_run_summary(settings: Settings, target: Target, run_id: str) -> InspectionSummary:
    """:func:`inspect_run`, summarized for the workflow."""
    return summarize(inspect_run(settings, target, run_id), str(settings.inspection_file(run_id)))
