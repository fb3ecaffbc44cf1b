"""Read database plans: which tables a statement scans in full."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SQLITE_SCAN = re.compile(r"^SCAN (?:TABLE )?(\w+)(?: AS \w+)?$")
_PG_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")


@dataclass(frozen=True)
class FullScan:
    """A table the plan reads row by row."""

    table: str
    plan_line: str


def full_scans_sqlite(plan_details: list[str]) -> list[FullScan]:
    """Full table scans in the ``detail`` column of SQLite's EXPLAIN QUERY PLAN.

    ``SCAN orders`` is a full scan; ``SEARCH orders USING INDEX ...`` and ``SCAN orders USING INDEX``
    (an ordered walk of an index) are not what a missing index looks like.
    """
    scans = []
    for detail in plan_details:
        match = _SQLITE_SCAN.match(detail.strip())
        if match:
            scans.append(FullScan(match.group(1), detail.strip()))
    return scans


def full_scans_postgresql(plan_lines: list[str]) -> list[FullScan]:
    """Sequential scans with a filter in PostgreSQL's text EXPLAIN output."""
    scans = []
    for index, line in enumerate(plan_lines):
        match = _PG_SEQ_SCAN.search(line)
        if not match:
            continue
        following = plan_lines[index + 1 : index + 3]
        if any("Filter:" in nxt for nxt in following):
            scans.append(FullScan(match.group(1), line.strip()))
    return scans
