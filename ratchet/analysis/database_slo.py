"""The database target: the p95 of the target's statement spans under the baseline load against the playbook's
``slo.db_p95_ms``, and a finding naming the slowest statements when it is missed."""

from __future__ import annotations

from ratchet.config.common import FindingType
from ratchet.config.playbook import Playbook
from ratchet.contracts import Finding, SloCheck
from ratchet.store.statement_times import StatementTimes

DATABASE = "(database)"
DB_P95 = "db_p95_ms"


def database_check(times: StatementTimes | None, playbook: Playbook) -> SloCheck | None:
    limit = playbook.slo.db_p95_ms
    if limit is None or times is None:
        return None
    return SloCheck(
        endpoint=DATABASE, metric=DB_P95, limit=limit, value=round(times.p95_ms, 3), met=times.p95_ms < limit
    )


def unchecked_database_note(times: StatementTimes | None, playbook: Playbook) -> str | None:
    if playbook.slo.db_p95_ms is None or times is not None:
        return None
    return (
        f"database target (p95 {playbook.slo.db_p95_ms:g} ms) not checked: the baseline has no statement span "
        "(no traces, or the database driver is not instrumented)"
    )


def database_findings(check: SloCheck | None, times: StatementTimes | None) -> list[Finding]:
    """A db-latency finding when the target is missed: high at twice the target, medium otherwise."""
    if check is None or check.met or times is None:
        return []
    slowest = "; ".join(
        f"{statement[:120]} ({calls} calls, p95 {p95:.1f} ms)" for statement, calls, p95 in times.slowest
    )
    return [
        Finding(
            id="",
            type=FindingType.DB_LATENCY,
            endpoint=DATABASE,
            severity="high" if check.value >= 2 * check.limit else "medium",
            impact=round(min(1.0, 1 - check.limit / check.value), 3),
            estimated_gain_ms=round(check.value - check.limit, 3),
            summary=f"the database's statements took p95 {check.value:.1f} ms over {times.spans} statement spans, "
            f"past the {check.limit:g} ms target; slowest: {slowest}",
            evidence={
                "fingerprint": f"{FindingType.DB_LATENCY.value}|{DATABASE}|{DB_P95}",
                "p95_ms": check.value,
                "limit_ms": check.limit,
                "spans": times.spans,
                "statements": [
                    {"statement": statement, "calls": calls, "p95_ms": round(p95, 3)}
                    for statement, calls, p95 in times.slowest
                ],
            },
        )
    ]
