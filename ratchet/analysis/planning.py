"""Turn findings into ranked recommendations: the target's own levers first, generated ones from evidence."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ratchet.analysis.advice import advice
from ratchet.analysis.conflicts import conflict
from ratchet.config.common import FindingType, Role
from ratchet.config.target import Lever, SqlLever, Target
from ratchet.contracts import Finding, Recommendation

_CREATE_INDEX = re.compile(r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+.*?\bON\s+\"?(\w+)\"?\s*\(([^)]*)\)", re.I | re.S)
_RISK_FACTOR = {"low": 1.0, "medium": 2.0, "high": 4.0}


class GainEstimator(Protocol):
    """Gains learned from earlier campaigns' outcomes (``ratchet.analysis.learning.LearnedGains``)."""

    @property
    def description(self) -> str:
        """Where the gains come from, e.g. 'learned from 34 earlier outcomes'."""
        ...

    def gains(self, pairs: Sequence[tuple[Finding, Lever, float]]) -> list[float]:
        """The predicted gain (ms) of each (finding, lever, feasibility)."""
        ...

    def traffic_share(self, endpoint: str) -> float:
        """The endpoint's share of the baseline's requests."""
        ...


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


def _specific(lever: Lever, finding: Finding) -> bool:
    """True when the lever names this finding's endpoint, not only '*'."""
    return any(a.finding == finding.type and a.endpoint == finding.endpoint for a in lever.addresses)


def _candidates(finding: Finding, target: Target) -> list[tuple[Lever | None, float, str]]:
    """(lever, feasibility, rationale) for every way to address a finding, best first."""
    declared = [lever for lever in target.levers if _addresses(lever, finding)]
    if finding.type != FindingType.MISSING_INDEX:
        # A lever written for this very endpoint is a surer fix than one declared for any endpoint.
        options: list[tuple[Lever | None, float, str]] = [
            (lever, 0.6, f"declared for {finding.type.value} on {finding.endpoint}")
            if _specific(lever, finding)
            else (lever, 0.5, f"declared for {finding.type.value} on any endpoint")
            for lever in declared
        ]
        options.sort(key=lambda option: -option[1])
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
    if not covering and target.database is None:
        # Nothing here can create the index (no lever covers it, no database to generate one on): a person
        # does, and the levers that do not index the column stay mere alternatives.
        options.insert(0, (None, 0.3, f"no lever indexes {what} and the target declares no database to do it"))
    return options


@dataclass
class _Draft:
    """One lever's recommendation while it is being ranked: every finding it addresses."""

    lever: Lever
    addressed: list[tuple[Finding, float, str, bool]] = field(default_factory=list)
    """(finding, feasibility, rationale, whether the lever is that finding's best option)."""
    held_back: str = ""
    gains: dict[str, float] = field(default_factory=dict)
    """Learned: the predicted gain (ms) per finding id; empty: the rules'."""
    learned_score: float | None = None

    @property
    def recommended(self) -> bool:
        return not self.held_back and any(best for *_, best in self.addressed)

    @property
    def primary(self) -> tuple[Finding, float, str, bool]:
        """The finding it is ranked for: one it is the best option for, the most valuable first."""
        return max(self.addressed, key=lambda a: (a[3], a[0].impact * a[1]))

    @property
    def score(self) -> float:
        if self.learned_score is not None:
            return self.learned_score
        return _score(self.impact, self.primary[1], self.lever.risk)

    @property
    def impact(self) -> float:
        return min(1.0, sum(max(finding.impact, 0.0001) for finding, *_ in self.addressed))


def _score(impact: float, feasibility: float, risk: str) -> float:
    return round(impact * feasibility / _RISK_FACTOR[risk], 5)


def _learn(drafts: list[_Draft], learned: GainEstimator) -> None:
    """Each draft's predicted gain per finding, and its score: the gain per request over the traffic mix, i.e.
    per endpoint the best gain x the endpoint's traffic share, summed over its endpoints, / the risk factor."""
    pairs = [(finding, draft.lever, feasibility) for draft in drafts for finding, feasibility, *_ in draft.addressed]
    predicted = iter(learned.gains(pairs))
    for draft in drafts:
        draft.gains = {finding.id: round(next(predicted), 2) for finding, *_ in draft.addressed}
        per_endpoint: dict[str, float] = {}
        for finding, *_ in draft.addressed:
            gain = draft.gains[finding.id]
            per_endpoint[finding.endpoint] = max(per_endpoint.get(finding.endpoint, gain), gain)
        expected = sum(gain * learned.traffic_share(endpoint) for endpoint, gain in per_endpoint.items())
        draft.learned_score = round(expected / _RISK_FACTOR[draft.lever.risk], 4)


def plan(
    findings: list[Finding], target: Target, *, limit: int, learned: GainEstimator | None = None
) -> list[Recommendation]:
    """Ranked recommendations (impact x feasibility / risk), one per lever, manual advice where none fits.

    A lever that addresses several findings (gzip for every uncompressed answer) is one recommendation, its
    impact the sum of theirs. It is recommended when it is the best option for one of them, at most ``limit``
    of them, and never beside a better-ranked lever it conflicts with (they touch the same flag, index or
    command, or the target says so): that one is held back as an alternative. Every other option is listed
    as an alternative a person may still pick.

    With ``learned`` gains (a model of earlier outcomes), a lever's predicted gain is the model's and levers are
    ranked by predicted gain x traffic share / risk instead; which option is the best for a finding, and manual
    advice, stay the rules'.
    """
    drafts: dict[str, _Draft] = {}
    manual: list[Recommendation] = []
    for finding in findings:
        for position, (lever, feasibility, rationale) in enumerate(_candidates(finding, target)):
            if lever is None:
                manual.append(_manual(finding, feasibility, rationale))
            else:
                drafts.setdefault(lever.name, _Draft(lever)).addressed.append(
                    (finding, feasibility, rationale, position == 0)
                )
    if learned is not None and drafts:
        _learn(list(drafts.values()), learned)
    ranked = sorted(drafts.values(), key=lambda d: (not d.recommended, -d.score, d.lever.name))
    chosen: list[_Draft] = []
    for draft in ranked:
        if not draft.recommended:
            continue
        clash = next(((c, why) for c in chosen if (why := conflict(c.lever, draft.lever))), None)
        if clash is not None:
            draft.held_back = f"held back: it conflicts with {clash[0].lever.name} ({clash[1]})"
        elif len(chosen) >= limit:
            draft.held_back = f"held back: the playbook plans at most {limit} change(s) (max_recommendations)"
        else:
            chosen.append(draft)
    ranked.sort(key=lambda d: (not d.recommended, -d.score, d.lever.name))
    levered = [_recommendation(d, learned) for d in ranked]
    # What to do first, then what needs a person, then what a person may pick instead.
    ordered = [r for r in levered if r.recommended] + sorted(manual, key=lambda r: -r.score)
    ordered += [r for r in levered if not r.recommended]
    every = [r.model_copy(update={"id": f"R{i + 1}"}) for i, r in enumerate(ordered)]
    for r in every:
        if r.lever is not None:
            r.conflicts_with = [o.id for o in every if o.lever is not None and conflict(r.lever, o.lever)]
    return every


def _recommendation(draft: _Draft, learned: GainEstimator | None = None) -> Recommendation:
    finding, feasibility, rationale, _ = draft.primary
    others = [f for f, *_ in draft.addressed if f is not finding]
    if others:
        rationale += "; also addresses " + ", ".join(f"{f.id} ({f.type.value} on {f.endpoint})" for f in others)
    gain = round(finding.estimated_gain_ms * feasibility, 2)
    if learned is not None and finding.id in draft.gains:
        gain = draft.gains[finding.id]
        rationale += (
            f"; predicted gain {gain:.1f} ms {learned.description} (the rules: "
            f"{finding.estimated_gain_ms * feasibility:.1f} ms), ranked by gain x traffic share / risk"
        )
    if draft.held_back:
        rationale += f"; {draft.held_back}"
    lever = draft.lever
    return Recommendation(
        id="",
        finding_id=finding.id,
        endpoint=finding.endpoint,
        title=lever.description or lever.name,
        lever=lever,
        role=lever.role,
        recommended=draft.recommended,
        impact=round(draft.impact, 4),
        feasibility=feasibility,
        risk=lever.risk,
        effort="none",
        predicted_gain_ms=gain,
        gain_source="learned" if draft.gains else "rules",
        score=draft.score,
        rationale=rationale,
        finding_ids=[finding.id, *(f.id for f in others)],
        endpoints=list(dict.fromkeys([finding.endpoint, *(f.endpoint for f in others)])),
    )


def _manual(finding: Finding, feasibility: float, rationale: str) -> Recommendation:
    impact = max(finding.impact, 0.0001)
    return Recommendation(
        id="",
        finding_id=finding.id,
        endpoint=finding.endpoint,
        title=f"Manual: {finding.summary}",
        lever=None,
        role=Role.PERF_OPTIMIZER,
        recommended=False,
        impact=round(impact, 4),
        feasibility=feasibility,
        risk="medium",
        effort="medium",
        predicted_gain_ms=round(finding.estimated_gain_ms * feasibility, 2),
        score=_score(impact, feasibility, "medium"),
        rationale=rationale,
        advice=advice(finding),
        finding_ids=[finding.id],
        endpoints=[finding.endpoint],
    )
