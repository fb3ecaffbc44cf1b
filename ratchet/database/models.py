"""What an inspection of a target's database found, as stored beside a run (JSON) and summarized."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Dialect = Literal["sqlite", "postgresql"]


class IndexInfo(BaseModel):
    """An index as the database reports it."""

    name: str
    columns: list[str] = Field(description="Indexed columns in key order (expressions are left out).")
    unique: bool = False
    definition: str = Field("", description="The CREATE INDEX statement, where the database keeps one.")


class TableInfo(BaseModel):
    """A table's size and its indexes."""

    name: str
    rows: int
    rows_estimated: bool = Field(False, description="True when rows is the planner's estimate, not a count.")
    bytes: int | None = Field(None, description="Table with its indexes (and TOAST); None when not told.")
    indexes: list[IndexInfo] = Field(default_factory=list)


class StatementStats(BaseModel):
    """How often one normalized statement ran during a run and how long it took."""

    statement: str = Field(description="Normalized: constants and parameters are the dialect's placeholders.")
    example: str = Field("", description="One statement text as it was run (or as the database recorded it).")
    calls: int
    total_ms: float
    mean_ms: float
    rows: int | None = Field(None, description="Rows returned or affected, where the source tells.")
    source: Literal["pg_stat_statements", "spans"]


class StatementPlan(BaseModel):
    """The plan of one dominant statement, with the tables it reads in full."""

    statement: str
    total_ms: float
    calls: int
    plan: list[str] = Field(default_factory=list)
    full_scans: list[str] = Field(default_factory=list, description="Tables the plan scans row by row.")
    plan_lines: list[str] = Field(default_factory=list, description="The plan lines that show those scans.")
    error: str = Field("", description="Why no plan could be read (the statement is kept all the same).")


class DatabaseInspection(BaseModel):
    """Everything one inspection read: stored as JSON beside the run it belongs to."""

    run_id: str
    dialect: Dialect
    tables: list[TableInfo]
    statements: list[StatementStats] = Field(description="Every statement of the run, most total time first.")
    plans: list[StatementPlan] = Field(description="Plans of the dominant statements, most total time first.")
    notes: list[str] = Field(default_factory=list, description="What could not be read, and why.")


class DominantStatement(BaseModel):
    """A line of the summary: one dominant statement, its cost and what its plan scans in full."""

    statement: str
    calls: int
    total_ms: float
    mean_ms: float
    full_scans: list[str] = Field(default_factory=list)


class InspectionSummary(BaseModel):
    """The small part of an inspection that travels in workflow payloads; the rest is in ``file``."""

    file: str
    dialect: Dialect
    tables: int
    largest_table: str = ""
    largest_table_rows: int = 0
    largest_tables: list[TableInfo] = Field(
        default_factory=list, description="The largest tables (most rows first, at most ten) with their indexes."
    )
    statements: int = 0
    statement_source: str = Field("", description="pg_stat_statements, spans, or empty when neither told.")
    dominant: list[DominantStatement] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
