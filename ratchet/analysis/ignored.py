"""Findings the target's owners accept (the target's `ignore:`): left out, and said to be."""

from __future__ import annotations

import re

from ratchet.config.target import Ignore
from ratchet.contracts import Finding


def fingerprint(finding: Finding) -> str:
    """The finding's identity across runs and campaigns (what `ignore.findings` lists)."""
    return str(finding.evidence.get("fingerprint") or f"{finding.type.value}|{finding.endpoint}|{finding.summary}")


def _statements(finding: Finding) -> list[str]:
    evidence = finding.evidence
    found = [evidence["statement"]] if isinstance(evidence.get("statement"), str) else []
    listed = evidence.get("statements")
    return found + ([s for s in listed if isinstance(s, str)] if isinstance(listed, list) else [])


def ignored_by(ignore: Ignore, finding: Finding) -> str | None:
    """Why the target ignores ``finding`` (which rule), or None when it does not."""
    if finding.endpoint in ignore.endpoints:
        return f"endpoint {finding.endpoint}"
    if fingerprint(finding) in ignore.findings:
        return "its fingerprint"
    for pattern in ignore.statements:
        if any(re.search(pattern, statement, re.IGNORECASE) for statement in _statements(finding)):
            return f"statement pattern {pattern!r}"
    return None


def split_ignored(findings: list[Finding], ignore: Ignore) -> tuple[list[Finding], list[str]]:
    """The findings the target does not ignore, and a note per one it does."""
    kept, notes = [], []
    for finding in findings:
        why = ignored_by(ignore, finding)
        if why is None:
            kept.append(finding)
        else:
            notes.append(
                f"ignored by the target ({why}): {finding.type.value} on {finding.endpoint}: {finding.summary}"
            )
    return kept, notes
