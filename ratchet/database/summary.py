"""The summary of an inspection that travels in the assessment's result (the whole is stored in a file)."""

from __future__ import annotations

from ratchet.database.models import DatabaseInspection, DominantStatement, InspectionSummary

LARGEST_TABLES = 10  # what a report shows of the catalog; the file has every table


def summarize(inspection: DatabaseInspection, file: str) -> InspectionSummary:
    """Counts, the largest table, and the dominant statements with what their plans scan in full."""
    by_size = sorted(inspection.tables, key=lambda t: (-t.rows, t.name))
    largest = by_size[0] if by_size else None
    by_statement = {s.statement: s for s in inspection.statements}
    dominant = []
    for plan in inspection.plans:
        stats = by_statement.get(plan.statement)
        dominant.append(
            DominantStatement(
                statement=plan.statement,
                calls=plan.calls,
                total_ms=plan.total_ms,
                mean_ms=stats.mean_ms if stats else 0.0,
                full_scans=plan.full_scans,
            )
        )
    return InspectionSummary(
        file=file,
        dialect=inspection.dialect,
        tables=len(inspection.tables),
        largest_table=largest.name if largest else "",
        largest_table_rows=largest.rows if largest else 0,
        largest_tables=by_size[:LARGEST_TABLES],
        statements=len(inspection.statements),
        statement_source=inspection.statements[0].source if inspection.statements else "",
        dominant=dominant,
        notes=inspection.notes,
    )
