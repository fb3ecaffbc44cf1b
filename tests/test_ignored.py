"""A target's `ignore:`: findings its owners accept never stand as findings, and the assessment says which it
left out and by which rule."""

from __future__ import annotations

from ratchet.analysis.ignored import fingerprint, split_ignored
from ratchet.config.common import FindingType
from ratchet.config.target import Ignore
from ratchet.contracts import Finding


def finding(kind: FindingType, endpoint: str, **evidence: object) -> Finding:
    return Finding(
        id="F0",
        type=kind,
        endpoint=endpoint,
        severity="high",
        impact=0.5,
        estimated_gain_ms=10,
        summary=f"{kind.value} on {endpoint}",
        evidence=dict(evidence),
    )


EXPORT = finding(FindingType.SLOW_ENDPOINT, "export", fingerprint="slow-endpoint|export")
N_PLUS_ONE = finding(
    FindingType.N_PLUS_ONE,
    "orders",
    fingerprint="n-plus-one|orders|SELECT * FROM items WHERE order_id = ?",
    statement="SELECT * FROM items WHERE order_id = ?",
)
AUDIT = finding(FindingType.SEQUENTIAL_QUERIES, "checkout", statements=["INSERT INTO audit_log VALUES (?)", "SELECT 1"])
SCAN = finding(FindingType.MISSING_INDEX, "search", fingerprint="missing-index|search|books(title)")
EVERY = [EXPORT, N_PLUS_ONE, AUDIT, SCAN]


def test_nothing_ignored_keeps_every_finding() -> None:
    assert split_ignored(EVERY, Ignore()) == (EVERY, [])


def test_an_ignored_endpoint_fingerprint_and_statement_pattern_each_leave_their_finding_out() -> None:
    ignore = Ignore(endpoints=["export"], findings=[fingerprint(N_PLUS_ONE)], statements=[r"insert\s+into\s+audit_"])
    kept, notes = split_ignored(EVERY, ignore)
    assert kept == [SCAN]
    assert len(notes) == 3
    assert "ignored by the target (endpoint export)" in notes[0]
    assert "(its fingerprint)" in notes[1] and "n-plus-one on orders" in notes[1]
    assert "statement pattern" in notes[2] and "sequential-queries on checkout" in notes[2]


def test_a_pattern_that_matches_no_statement_ignores_nothing() -> None:
    kept, notes = split_ignored(EVERY, Ignore(statements=["FROM invoices"]))
    assert kept == EVERY and notes == []
