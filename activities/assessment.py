"""Assessment: read plans of the statements behind slow endpoints and turn evidence into findings."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

from sqlalchemy import text
from temporalio import activity

from activities.database_inspection import inspect_run_summary
from activities.target_database import target_engine
from ratchet.analysis.detection import (
    StatementEvidence,
    endpoints_to_inspect,
    missing_index_findings,
    unexplained_slow_findings,
)
from ratchet.analysis.plans import FullScan, full_scans_postgresql, full_scans_sqlite
from ratchet.analysis.slo import check_slos
from ratchet.analysis.sql_columns import filtered_columns, table_aliases
from ratchet.config.target import Endpoint, Target
from ratchet.contracts import AssessRequest, AssessResult, Finding
from ratchet.database.models import InspectionSummary
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.tables import FindingRecord

_TIMING_RUNS = 5


def _bind(sql: str, endpoint: Endpoint) -> dict[str, object]:
    example = endpoint.examples[0] if endpoint.examples else {}
    return {k: v for k, v in example.items() if f":{k}" in sql}


def inspect_statement(target: Target, endpoint: Endpoint, sql: str) -> StatementEvidence:
    """Plan, full scans, table sizes, indexes and a timing of one statement on the target's database."""
    assert target.database is not None
    dialect = target.database.dialect
    params = _bind(sql, endpoint)
    with target_engine(target.database.url).connect() as connection:
        if dialect == "sqlite":
            rows = connection.execute(text("EXPLAIN QUERY PLAN " + sql), params).fetchall()
            plan = [str(row[-1]) for row in rows]
            scans = full_scans_sqlite(plan)
        else:
            rows = connection.execute(text("EXPLAIN " + sql), params).fetchall()
            plan = [str(row[0]) for row in rows]
            scans = full_scans_postgresql(plan)
        aliases = table_aliases(sql, dialect=dialect)
        scans = [FullScan(aliases.get(scan.table, scan.table), scan.plan_line) for scan in scans]
        tables = {scan.table for scan in scans}
        sizes = {t: int(connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() or 0) for t in tables}
        indexes: dict[str, list[str]] = {}
        for table in tables:
            if dialect == "sqlite":
                found = connection.execute(text(f"PRAGMA index_list('{table}')")).fetchall()
                indexes[table] = [str(r[1]) for r in found]
            else:
                found = connection.execute(
                    text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}
                ).fetchall()
                indexes[table] = [str(r[0]) for r in found]
        timings = []
        for _ in range(_TIMING_RUNS):
            started = time.perf_counter()
            connection.execute(text(sql), params).fetchall()
            timings.append((time.perf_counter() - started) * 1000)
    return StatementEvidence(
        endpoint=endpoint.name,
        sql=sql,
        plan=plan,
        full_scans=scans,
        table_rows=sizes,
        filtered_columns={t: filtered_columns(sql, t, dialect=dialect) for t in tables},
        existing_indexes=indexes,
        median_ms=statistics.median(timings),
    )


class AssessmentActivities:
    """find_bottlenecks, served by the perf-optimizer role."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store_url = settings.resolved_store_url

    def _inspect(self, request: AssessRequest) -> tuple[InspectionSummary | None, list[str]]:
        """The baseline run's database inspection; a failure is a note, not a failed assessment."""
        if request.target.database is None:
            return None, []
        try:
            return inspect_run_summary(self.settings, request.target, request.baseline.run_id), []
        except Exception as exc:
            activity.logger.exception("database inspection of %s failed", request.baseline.run_id)
            return None, [f"database inspection failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"]

    def _assess(self, request: AssessRequest) -> AssessResult:
        playbook, target = request.playbook, request.target
        slow = endpoints_to_inspect(request.baseline.endpoints, playbook)
        evidence = []
        if target.database is not None:
            for endpoint in slow:
                definition = target.endpoint(endpoint.stats.endpoint)
                for query in definition.queries:
                    evidence.append(inspect_statement(target, definition, query.sql))
        findings = missing_index_findings(slow, evidence, playbook)
        explained = {f.endpoint for f in findings}
        findings += unexplained_slow_findings(slow, explained, start=len(findings) + 1)
        self._store(request.campaign_id, findings)
        database, notes = self._inspect(request)
        return AssessResult(
            findings=findings, slo=check_slos(request.baseline.endpoints, playbook), database=database, notes=notes
        )

    def _store(self, campaign_id: str, findings: list[Finding]) -> None:
        with session_for(self.store_url) as session:
            for f in findings:
                session.merge(
                    FindingRecord(
                        id=f"{campaign_id}:{f.id}", campaign_id=campaign_id, type=f.type.value,
                        endpoint=f.endpoint, severity=f.severity, impact=f.impact, summary=f.summary,
                        evidence_json=json.dumps(f.evidence),
                    )
                )  # fmt: skip
            session.commit()

    @activity.defn(name="find_bottlenecks")
    async def find_bottlenecks(self, request: AssessRequest) -> AssessResult:
        """Slow endpoints from the baseline, then the plans of their statements: findings with evidence."""
        return await asyncio.to_thread(self._assess, request)
