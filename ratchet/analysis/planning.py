"""Turn findings into ranked recommendations: the target's own levers first, generated ones from evidence."""

from __future__ import annotations

import re

from ratchet.config.common import FindingType, Role
from ratchet.config.target import Lever, SqlLever, Target
from ratchet.contracts import Finding, Recommendation

_CREATE_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+.*?\bON\s+\"?(\w+)\"?\s*\(([^)]*)\)", re.I | re.S)
_RISK_FACTOR = {"low": 1.0, "medium": 2.0, "high": 4.0}


def index_columns(lever: SqlLever) -> list[tuple[str, list[str]]]:
    """(table, columns) of every CREATE INDEX in a lever's apply statements."""
    found = []
    for statement in lever.apply:
        for table, columns in _CREATE_INDEX.findall(statement):
            names = [c.strip().strip('"').split()[0] for c in columns.split(",") if c.strip()]
            found.append((table, names))
    return found


def covers(lever: Lever, table: str, columns: list[str]) -> bool:
    """True when the lever creates an index on ``table`` whose leading column is the first filtered one."""
    if not isinstance(lever, SqlLever) or not columns:
        return False
    return any(t == table and cols and cols[0] == columns[0] for t, cols in index_columns(lever))


def generated_index_lever(finding: Finding, dialect: str) -> SqlLever:
    """A CREATE INDEX lever (with its DROP INDEX compensation) for a missing-index finding."""
    table = finding.evidence["table"]
    columns: list[str] = list(finding.evidence["columns"])
    name = f"ratchet_ix_{table}_{'_'.join(columns)}"[:60]
    if dialect == "postgresql":
        check = f"SELECT count(*) FROM pg_indexes WHERE indexname = '{name}'"
    else:
        check = f"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = '{name}'"
    return SqlLever(
        kind="sql",
        name=f"index-{table}-{'-'.join(columns)}".replace("_", "-"),
        description=f"Index {table}({', '.join(columns)}) so the filter stops scanning the whole table.",
        role=Role.BACKEND_DEVELOPER,
        addresses=[{"finding": FindingType.MISSING_INDEX, "endpoint": finding.endpoint}],  # type: ignore[list-item]
        risk="low",
        generated=True,
        apply=[f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({', '.join(columns)})"],
        rollback=[f"DROP INDEX IF EXISTS {name}"],
        check=check,
    )


def _addresses(lever: Lever, finding: Finding) -> bool:
    return any(a.finding == finding.type and a.endpoint in ("*", finding.endpoint) for a in lever.addresses)


def _candidates(finding: Finding, target: Target) -> list[tuple[Lever | None, float, str]]:
    """(lever, feasibility, rationale) for every way to address a finding, best first."""
    declared = [lever for lever in target.levers if _addresses(lever, finding)]
    if finding.type != FindingType.MISSING_INDEX:
        options: list[tuple[Lever | None, float, str]] = [
            (lever, 0.6, f"declared for {finding.type.value} on {finding.endpoint}") for lever in declared
        ]
        if not options:
            options.append((None, 0.3, "no lever addresses this; a person has to look"))
        return options
    table, columns = finding.evidence["table"], list(finding.evidence["columns"])
    what = f"{table}({', '.join(columns)})"
    options = []
    covering = [lever for lever in declared if covers(lever, table, columns)]
    for lever in covering:
        options.append((lever, 0.95, f"the target's own lever indexes {what}, the column the plan scans on"))
    if not covering and target.database is not None:
        generated = generated_index_lever(finding, target.database.dialect)
        options.append((generated, 0.9, f"generated from the plan: index {what}, the column the plan scans on"))
    for lever in declared:
        if lever not in covering:
            options.append(
                (lever, 0.2, f"declared for this finding, but it does not index {what}: the scan would remain")
            )
    return options


def _advice(finding: Finding) -> str:
    if finding.type == FindingType.MISSING_INDEX:
        ev = finding.evidence
        return f"Create an index on {ev['table']}({', '.join(ev['columns'])}); the plan shows: {ev['plan_line']}"
    return (
        f"Profile {finding.endpoint}: its p95 is {finding.evidence.get('endpoint_p95_ms')} ms and no declared "
        "statement explains it; add its queries to the target or collect traces."
    )


def plan(findings: list[Finding], target: Target, *, limit: int) -> list[Recommendation]:
    """Ranked recommendations (impact x feasibility / risk): one recommended option per finding, alternatives after."""
    drafts: list[Recommendation] = []
    for finding in findings:
        for position, (lever, feasibility, rationale) in enumerate(_candidates(finding, target)):
            risk = lever.risk if lever is not None else "medium"
            impact = max(finding.impact, 0.0001)
            drafts.append(
                Recommendation(
                    id="",
                    finding_id=finding.id,
                    endpoint=finding.endpoint,
                    title=(lever.description or lever.name) if lever else f"Manual: {finding.summary}",
                    lever=lever,
                    role=lever.role if lever else Role.PERF_OPTIMIZER,
                    recommended=position == 0 and lever is not None,
                    impact=round(impact, 4),
                    feasibility=feasibility,
                    risk=risk,
                    effort="none" if lever is not None else "medium",
                    predicted_gain_ms=round(finding.estimated_gain_ms * feasibility, 2),
                    score=round(impact * feasibility / _RISK_FACTOR[risk], 5),
                    rationale=rationale,
                    advice="" if lever is not None else _advice(finding),
                )
            )
    drafts.sort(key=lambda r: (not r.recommended, -r.score))
    return [r.model_copy(update={"id": f"R{i + 1}"}) for i, r in enumerate(drafts[:limit])]
