"""Assessment: read plans of the statements behind slow endpoints and turn evidence into findings."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path

import duckdb
from sqlalchemy import text
from temporalio import activity

from ratchet.analysis.anomaly import BaselineSample, baseline_anomalies
from ratchet.analysis.blind_spots import blind_spots
from ratchet.analysis.cache_slo import cache_checks, cache_findings, unchecked_cache_note
from ratchet.analysis.database_slo import database_check, database_findings, unchecked_database_note
from ratchet.analysis.detection import (
    SlowEndpoint,
    StatementEvidence,
    endpoints_to_inspect,
    error_hotspots,
    missing_index_findings,
    overload_note,
    served_endpoints,
    slow_endpoints,
    unexplained_slow_findings,
)
from ratchet.analysis.ignored import fingerprint, split_ignored
from ratchet.analysis.page_load import page_load_checks, page_load_findings, unchecked_page_load_note
from ratchet.analysis.plans import FullScan, full_scans_postgresql, full_scans_sqlite
from ratchet.analysis.responses import (
    ProbeReport,
    cacheable_findings,
    http_caching_findings,
    payload_findings,
    render_blocking_findings,
    web_vitals_findings,
)
from ratchet.analysis.slo import (
    check_resource_slos,
    check_slos,
    judged_by_slo,
    resource_findings,
    unchecked_resources_note,
)
from ratchet.analysis.sql_columns import filtered_columns, table_aliases
from ratchet.analysis.throughput import (
    capacity_findings,
    last_stress,
    throughput_check,
    unchecked_throughput_note,
)
from ratchet.analysis.traces import TraceAnalysis, analyze_burst, analyze_run
from ratchet.analysis.traces.coverage import SpanCoverage, span_coverage
from ratchet.analysis.traces.detectors import StatementCandidate, Traffic
from ratchet.analysis.workflow_findings import HISTORY_BLIND_SPOT, history_notes, workflow_findings
from ratchet.config.target import Endpoint, Target
from ratchet.contracts import AssessRequest, AssessResult, BaselineAnomaly, Finding, LoadTestResult, SloCheck
from ratchet.database.catalog import explain, read_tables
from ratchet.database.inspection import inspect_run_summary
from ratchet.database.models import InspectionSummary, TableInfo
from ratchet.database.statements import normalize_statement
from ratchet.database.target import target_engine
from ratchet.errors import first_line
from ratchet.settings import Settings
from ratchet.store.engine import session_for
from ratchet.store.history import baseline_history, measured_at
from ratchet.store.sample_stream import sql_literal
from ratchet.store.samples import endpoint_durations
from ratchet.store.statement_times import statement_times
from ratchet.store.tables import FindingRecord
from ratchet.workflow_load.run import run_executions

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
        scans = tables_of(scans, sql, dialect)
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


def tables_of(scans: list[FullScan], sql: str, dialect: str) -> list[FullScan]:
    """The full scans with the tables a plan names by alias (SQLite's ``SCAN p``) resolved to their names."""
    aliases = table_aliases(sql, dialect=dialect)
    return [FullScan(aliases.get(scan.table, scan.table), scan.plan_line) for scan in scans]


def explain_candidates(target: Target, candidates: list[StatementCandidate]) -> list[StatementEvidence]:
    """Plan, full scans, table sizes and indexes of statements read from the spans (their normalized text);
    one connection, and the catalog read once, only when a plan scans a table in full."""
    assert target.database is not None
    dialect = target.database.dialect
    evidence = []
    catalog: dict[str, TableInfo] | None = None
    with target_engine(target.database.url).connect() as connection:
        for candidate in candidates:
            normalized = normalize_statement(candidate.statement, dialect)
            plan, scans = explain(connection, dialect, normalized)
            scans = tables_of(scans, normalized.text, dialect)
            tables = {scan.table for scan in scans}
            if tables and catalog is None:
                catalog = {t.name: t for t in read_tables(connection, dialect)}
            known = {t: (catalog or {})[t] for t in tables if t in (catalog or {})}
            evidence.append(
                StatementEvidence(
                    endpoint=candidate.endpoint,
                    sql=normalized.text,
                    plan=plan,
                    full_scans=scans,
                    table_rows={t: info.rows for t, info in known.items()},
                    filtered_columns={t: filtered_columns(normalized.text, t, dialect=dialect) for t in tables},
                    existing_indexes={t: [i.name for i in info.indexes] for t, info in known.items()},
                    median_ms=candidate.median_ms * candidate.calls_per_request,
                )
            )
    return evidence


def repeat_ratios(target: Target, baseline: LoadTestResult) -> dict[str, float]:
    """Per endpoint, the share of the baseline's requests that asked what an earlier one asked (the load
    picks among the endpoint's examples), i.e. the hit ratio a cache would have had."""
    ratios = {}
    for stats in baseline.endpoints:
        endpoint = next((e for e in target.endpoints if e.name == stats.endpoint), None)
        if endpoint is None or stats.requests == 0:
            continue
        distinct = min(max(len(endpoint.examples), 1), stats.requests)
        ratios[stats.endpoint] = 1 - distinct / stats.requests
    return ratios


def numbered(findings: list[Finding]) -> list[Finding]:
    """One finding per fingerprint (the first), numbered F1, F2, ... in order of impact."""
    unique: dict[str, Finding] = {}
    for finding in findings:
        unique.setdefault(fingerprint(finding), finding)
    ranked = sorted(unique.values(), key=lambda f: f.impact, reverse=True)
    return [f.model_copy(update={"id": f"F{i + 1}"}) for i, f in enumerate(ranked)]


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
            return None, [f"database inspection failed: {first_line(exc)}"]

    def _anomalies(self, request: AssessRequest) -> tuple[list[BaselineAnomaly], list[str]]:
        """Per endpoint, whether the baseline is unlike the target's earlier baselines; a failure is a note."""
        try:
            with session_for(self.store_url) as session:
                before = measured_at(session=session, run_id=request.baseline.run_id)
                points = baseline_history(
                    session=session, target=request.target.name, exclude=request.campaign_id, before=before
                )
            history = {
                endpoint: [BaselineSample(p.p50, p.p95, p.p99, p.requests, p.errors) for p in earlier]
                for endpoint, earlier in points.items()
            }
            return baseline_anomalies(request.baseline.endpoints, history), []
        except Exception as exc:
            activity.logger.exception("baseline anomaly check of %s failed", request.baseline.run_id)
            return [], [f"baseline anomaly check failed: {first_line(exc)}"]

    def _traces(self, request: AssessRequest) -> tuple[TraceAnalysis | None, list[Finding], SpanCoverage | None]:
        """Span detectors over the baseline's traces, queueing over the probe's burst, and what the spans cover."""
        rules = request.playbook.detection
        spans = self.settings.spans_file(request.baseline.run_id)
        if not spans.is_file() or not request.baseline.spans:
            return None, [], None  # no span arrived: nothing to analyse, and nothing must read as "traces show nothing"
        with duckdb.connect() as con:
            # The steady state: the warm-up's traces are left out, as its samples are.
            analysis = analyze_run(con, f"(SELECT * FROM read_parquet({sql_literal(spans)}) WHERE NOT warmup)", rules)
            coverage = span_coverage(con, str(spans))
            burst: list[Finding] = []
            probe = request.probe
            if probe is not None and probe.burst_run_id:
                burst_file = self.settings.spans_file(probe.burst_run_id)
                if burst_file.is_file():
                    burst = analyze_burst(con, f"read_parquet({sql_literal(burst_file)})", rules, analysis.mix)
        return analysis, burst, coverage

    def _statement_evidence(
        self, request: AssessRequest, slow: list[SlowEndpoint], analysis: TraceAnalysis | None
    ) -> list[StatementEvidence]:
        """Plans of the statements behind ``slow`` endpoints: read from the spans, else the target's declared ones."""
        target = request.target
        if target.database is None:
            return []
        inspected = {s.stats.endpoint for s in slow}
        candidates = [c for c in analysis.statements if c.endpoint in inspected] if analysis is not None else []
        evidence = explain_candidates(target, candidates) if candidates else []
        traced = {c.endpoint for c in candidates}
        for endpoint in slow:
            if endpoint.stats.endpoint in traced:
                continue
            definition = target.endpoint(endpoint.stats.endpoint)
            for query in definition.queries:
                evidence.append(inspect_statement(target, definition, query.sql))
        return evidence

    def _assess_workflows(self, request: AssessRequest) -> AssessResult:
        """A temporal-workflow target: the bottlenecks of the baseline's executions, read from their histories,
        then the same error, SLO and ignore rules as any target's findings."""
        playbook, target = request.playbook, request.target
        executions = run_executions(self.settings.samples_dir / request.baseline.run_id)
        findings = workflow_findings(executions, {s.endpoint: s.requests for s in request.baseline.endpoints})
        findings += error_hotspots(request.baseline, request.load_shapes, playbook.detection)
        slow = endpoints_to_inspect(request.baseline.endpoints, playbook)
        unexplained, contention = unexplained_slow_findings(
            slow,
            {f.endpoint for f in findings},
            1,
            min_p50_ms=playbook.detection.min_inspect_p50_ms,
            over=self._slower_than_threshold(request.baseline, slow),
            significance=playbook.validation.significance,
        )
        findings, ignored = split_ignored(findings + unexplained, target.ignore)
        findings = numbered(judged_by_slo(findings, request.baseline.endpoints, playbook))
        self._store(request.campaign_id, findings)
        anomalies, anomaly_notes = self._anomalies(request)
        return AssessResult(
            findings=findings,
            slo=check_slos(request.baseline.endpoints, playbook),
            notes=history_notes(executions) + contention + list(dict.fromkeys(ignored)) + anomaly_notes,
            blind_spots=[HISTORY_BLIND_SPOT],
            anomalies=anomalies,
        )

    def _assess(self, request: AssessRequest) -> AssessResult:
        playbook, target = request.playbook, request.target
        if target.is_workflow:
            return self._assess_workflows(request)
        rules = playbook.detection
        slow = endpoints_to_inspect(request.baseline.endpoints, playbook)
        # Plans are read behind every endpoint, not only the slow ones: a large scan is found before it hurts.
        served = served_endpoints(request.baseline.endpoints, playbook)
        analysis, burst, coverage = self._traces(request)
        findings = missing_index_findings(
            served,
            self._statement_evidence(request, served, analysis),
            playbook,
            analysis.server_mean_ms if analysis is not None else None,
        )
        notes: list[str] = []
        if analysis is not None:
            findings += analysis.findings + burst
        else:
            notes.append("no spans of the baseline: only latency and plans were analysed (trace detectors need spans)")
        gaps = blind_spots(target, request.baseline.endpoints, coverage, spans_expected=target.traces is not None)
        mix = (
            analysis.mix
            if analysis is not None
            else Traffic({s.endpoint: s.requests for s in request.baseline.endpoints})
        )
        page_loads: list[SloCheck] = []
        if request.probe is not None:
            probe = ProbeReport.model_validate_json(Path(request.probe.file).read_text())
            page_loads = page_load_checks(probe.page_loads, playbook)
            findings += page_load_findings(page_loads, probe.page_loads)
            page_note = unchecked_page_load_note(probe.page_loads, len(probe.pages), playbook)
            notes += [page_note] if page_note else []
            over = slow_endpoints(request.baseline.endpoints, playbook)
            findings += payload_findings(probe, over, mix, rules) + render_blocking_findings(probe, mix, rules)
            findings += web_vitals_findings(probe, mix, rules) + http_caching_findings(probe, mix, rules)
            own_work = analysis.own_work if analysis is not None else {}
            findings += cacheable_findings(probe, own_work, repeat_ratios(target, request.baseline), mix, rules)
        findings += error_hotspots(request.baseline, request.load_shapes, rules)
        explained = {f.endpoint for f in findings}
        server_p95 = analysis.server_p95_ms if analysis is not None else None
        dependencies = analysis.dependencies if analysis is not None else None
        unexplained, contention = unexplained_slow_findings(
            slow,
            explained,
            1,
            server_p95,
            rules.min_inspect_p50_ms,
            dependencies,
            over=self._slower_than_threshold(request.baseline, slow),
            significance=playbook.validation.significance,
        )
        # The service as a whole: its processes' resources under the baseline, and the stress run's knee.
        service_checks = check_resource_slos(request.baseline.resources, playbook)
        findings += resource_findings(service_checks, request.baseline.resources)
        stress = last_stress(request.load_shapes)
        throughput = throughput_check(stress, playbook)
        findings += capacity_findings(throughput, stress, playbook)
        service_checks += [throughput] if throughput else []
        statements = (
            statement_times(self.settings.spans_file(request.baseline.run_id))
            if playbook.slo.db_p95_ms is not None
            else None
        )
        statement_check = database_check(statements, playbook)
        findings += database_findings(statement_check, statements)
        service_checks += [statement_check] if statement_check else []
        hit_rates = cache_checks(request.baseline.caches, playbook)
        findings += cache_findings(hit_rates, request.baseline.caches)
        service_checks += hit_rates + page_loads
        findings, ignored = split_ignored(findings + unexplained, target.ignore)
        findings = numbered(judged_by_slo(findings, request.baseline.endpoints, playbook))
        overloaded = overload_note(request.baseline.endpoints, playbook, server_p95)
        notes = ([overloaded] if overloaded else []) + notes + contention + list(dict.fromkeys(ignored))
        unchecked = [
            unchecked_resources_note(request.baseline.resources, playbook),
            unchecked_throughput_note(stress, playbook),
            unchecked_database_note(statements, playbook),
            unchecked_cache_note(request.baseline.caches, target, playbook),
        ]
        notes += [note for note in unchecked if note]
        self._store(request.campaign_id, findings)
        database, inspection_notes = self._inspect(request)
        anomalies, anomaly_notes = self._anomalies(request)
        return AssessResult(
            findings=findings,
            slo=check_slos(request.baseline.endpoints, playbook) + service_checks,
            database=database,
            notes=notes + inspection_notes + anomaly_notes,
            blind_spots=gaps,
            anomalies=anomalies,
        )

    def _slower_than_threshold(self, baseline: LoadTestResult, slow: list[SlowEndpoint]) -> dict[str, int]:
        """Per endpoint over its threshold, how many of the baseline's requests were slower than it."""
        samples = self.settings.samples_file(baseline.run_id)
        if not samples.is_file():
            return {}
        return {
            s.stats.endpoint: int((endpoint_durations(samples, s.stats.endpoint) > s.threshold_ms).sum())
            for s in slow
            if s.over_threshold
        }

    def _store(self, campaign_id: str, findings: list[Finding]) -> None:
        with session_for(self.store_url) as session:
            for f in findings:
                session.merge(
                    FindingRecord(
                        id=f"{campaign_id}:{f.id}",
                        campaign_id=campaign_id,
                        type=f.type.value,
                        endpoint=f.endpoint,
                        severity=f.severity,
                        impact=f.impact,
                        summary=f.summary,
                        evidence_json=json.dumps(f.evidence),
                    )
                )
            session.commit()

    @activity.defn(name="find_bottlenecks")
    async def find_bottlenecks(self, request: AssessRequest) -> AssessResult:
        """Findings with evidence: critical paths of the baseline's traces, plans of the statements that
        dominate slow endpoints, the probe's answers, errors under load."""
        return await asyncio.to_thread(self._assess, request)
