"""Learning the gain of a lever from earlier campaigns' outcomes, so planning can rank by what changes achieved.

The rules predict a recommendation's gain from the finding alone (its estimate x the lever's feasibility). Once a
target has enough finished campaigns, what their changes actually took off their endpoints' p95 is a better
guide: a regressor learns the realised gain (ms) of a (finding, lever) pair from the finding's type and numeric
evidence, the lever's kind, risk and feasibility, and the endpoint's baseline p95 and traffic share.

Pure: the outcomes are extracted here from ``CampaignStatus`` payloads; reading them from the store is
``ratchet.store.outcomes``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import KFold, cross_val_predict

from ratchet.config.common import FindingType, Phase
from ratchet.config.target import Lever
from ratchet.contracts import CampaignStatus, ChangeState, EndpointVerdict, Finding

MIN_OUTCOMES = 20
"""Below this many outcomes of a target no model is trained: the rules decide."""
_FOLDS = 5
_SEED = 0
_LEVER_KINDS = ("sql", "http", "shell")
_RISK_FACTOR = {"low": 1.0, "medium": 2.0, "high": 4.0}
# The finding's numeric evidence (see the detectors). Each detector's milliseconds measure something else (an
# N+1's window, a handler's own work, a wait for a connection): a column each, so the trees never mix them.
# Shares, calls and bytes mean the same whichever detector wrote them: the first key present wins.
_MS_KEYS = (
    "statement_median_ms",
    "window_ms",
    "saved_ms",
    "self_ms",
    "median_wait_ms",
    "dependency_ms",
    "total_ms",
    "lcp_ms",
    "probe_median_ms",
)
_SHARE_KEYS = ("statement_share_of_endpoint", "share_of_request", "share_of_call", "dependency_share", "latency_share")
_CALL_KEYS = ("calls_per_request", "waiting_calls")
_BYTE_KEYS = ("blocking_bytes", "wire_bytes", "body_bytes", "page_weight_bytes")
FEATURES = (
    *(f"finding={t.value}" for t in FindingType),
    *(f"lever={k}" for k in _LEVER_KINDS),
    "risk_factor",
    "feasibility",
    "impact",
    "log_estimated_gain_ms",
    *(f"log_{key}" for key in _MS_KEYS),
    "evidence_share",
    "log_calls_per_request",
    "log_bytes",
    "log_table_rows",
    "hit_ratio",
    "log_baseline_p95_ms",
    "traffic_share",
)
"""The model's inputs, in column order."""


@dataclass(frozen=True)
class EndpointBaseline:
    """An endpoint in the campaign's baseline run: its p95 (ms) and its share of the run's requests."""

    p95_ms: float
    traffic_share: float


def endpoint_baselines(rows: Iterable[tuple[str, float, int]]) -> dict[str, EndpointBaseline]:
    """(endpoint, p95 ms, requests) of one baseline run -> each endpoint's p95 and share of the requests."""
    listed = list(rows)
    total = sum(requests for *_, requests in listed) or 1
    return {name: EndpointBaseline(p95, requests / total) for name, p95, requests in listed}


@dataclass(frozen=True)
class Pair:
    """A (finding, lever) pair as the planner sees it: what a gain is predicted for."""

    finding: Finding
    lever_kind: str
    risk: str
    feasibility: float
    baseline: EndpointBaseline | None = None


@dataclass(frozen=True)
class Outcome:
    """What one change did to one of the findings it addressed, in a finished campaign."""

    campaign_id: str
    change_id: str
    lever: str
    pair: Pair
    gain_ms: float
    """Realised: the endpoint's p95 before minus after (its own leave-one-out verdict when there is one)."""
    kept: bool

    @property
    def rules_gain_ms(self) -> float:
        """What the rules would have predicted for the pair."""
        return rules_gain(self.pair)


def rules_gain(pair: Pair) -> float:
    """The rule-based prediction: the finding's own estimate of what a fix takes off, x the lever's feasibility."""
    return pair.finding.estimated_gain_ms * pair.feasibility


def _first(evidence: Mapping[str, object], keys: Sequence[str]) -> float:
    for key in keys:
        value = evidence.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return 0.0


def _log(value: float) -> float:
    return math.log1p(max(value, 0.0))


def features(pair: Pair) -> list[float]:
    """The pair as the model's row (``FEATURES``); a missing number is 0 (the trees split it apart)."""
    finding, evidence = pair.finding, pair.finding.evidence
    baseline_p95 = pair.baseline.p95_ms if pair.baseline else _first(evidence, ("endpoint_p95_ms",))
    return [
        *(1.0 if finding.type == t else 0.0 for t in FindingType),
        *(1.0 if pair.lever_kind == k else 0.0 for k in _LEVER_KINDS),
        _RISK_FACTOR.get(pair.risk, 2.0),
        pair.feasibility,
        finding.impact,
        _log(finding.estimated_gain_ms),
        *(_log(_first(evidence, (key,))) for key in _MS_KEYS),
        _first(evidence, _SHARE_KEYS),
        _log(_first(evidence, _CALL_KEYS)),
        _log(_first(evidence, _BYTE_KEYS)),
        _log(_first(evidence, ("table_rows",))),
        _first(evidence, ("estimated_hit_ratio",)),
        _log(baseline_p95),
        pair.baseline.traffic_share if pair.baseline else 0.0,
    ]


@dataclass(frozen=True)
class GainModel:
    """A regressor of the realised gain (ms) of a (finding, lever) pair, with its out-of-sample error."""

    regressor: RandomForestRegressor
    outcomes: int
    campaigns: int
    cv_mae_ms: float
    """Mean absolute error of cross-validated predictions (each outcome predicted by a model that did not see it)."""
    rules_mae_ms: float
    """The rules' mean absolute error on the same outcomes."""

    @property
    def beats_rules(self) -> bool:
        """Whether it predicted the outcomes better than the rules did: only then does planning use it."""
        return self.cv_mae_ms < self.rules_mae_ms

    def predict(self, pairs: Sequence[Pair]) -> list[float]:
        """The predicted gain (ms) of each pair."""
        if not pairs:
            return []
        rows = np.array([features(p) for p in pairs], dtype=float)
        return [float(v) for v in self.regressor.predict(rows)]


def _regressor() -> RandomForestRegressor:
    # A forest: deterministic by seed, robust with a few dozen rows, and it never predicts beyond the gains it
    # has seen (no extrapolation to absurd values for an unusual finding).
    return RandomForestRegressor(n_estimators=200, min_samples_leaf=2, random_state=_SEED, n_jobs=1)


def train(outcomes: Sequence[Outcome], *, minimum: int = MIN_OUTCOMES) -> GainModel | None:
    """A model of the realised gain, or None below ``minimum`` outcomes; its error is ``_FOLDS``-fold
    cross-validated (shuffled, seeded), so it is comparable with the rules' error on the same outcomes."""
    if len(outcomes) < max(minimum, _FOLDS):
        return None
    x = np.array([features(o.pair) for o in outcomes], dtype=float)
    y = np.array([o.gain_ms for o in outcomes], dtype=float)
    folds = KFold(n_splits=_FOLDS, shuffle=True, random_state=_SEED)
    predicted = cross_val_predict(_regressor(), x, y, cv=folds)
    rules = np.array([o.rules_gain_ms for o in outcomes], dtype=float)
    return GainModel(
        regressor=_regressor().fit(x, y),
        outcomes=len(outcomes),
        campaigns=len({o.campaign_id for o in outcomes}),
        cv_mae_ms=float(np.mean(np.abs(predicted - y))),
        rules_mae_ms=float(np.mean(np.abs(rules - y))),
    )


def describe(model: GainModel | None, outcomes: int, *, minimum: int = MIN_OUTCOMES) -> str:
    """How planning predicts gains, in a sentence (``PlanResult.gain_model``)."""
    if model is None:
        return f"rule-based: {outcomes} outcome(s) stored, {max(minimum, _FOLDS)} needed to learn from"
    errors = f"cross-validated MAE {model.cv_mae_ms:.1f} ms; the rules' {model.rules_mae_ms:.1f} ms"
    source = f"{model.outcomes} outcomes of {model.campaigns} campaign(s)"
    if not model.beats_rules:
        return f"rule-based: a model learned from {source} did no better than the rules ({errors})"
    return f"learned from {source} ({errors})"


class LearnedGains:
    """A trained model bound to the current campaign's baseline: what ``planning.plan`` asks gains of."""

    def __init__(self, model: GainModel, baselines: Mapping[str, EndpointBaseline]) -> None:
        self.model = model
        self.baselines = dict(baselines)

    @property
    def description(self) -> str:
        return f"learned from {self.model.outcomes} earlier outcomes"

    def gains(self, pairs: Sequence[tuple[Finding, Lever, float]]) -> list[float]:
        """The predicted gain (ms) of each (finding, lever, feasibility)."""
        return self.model.predict(
            [
                Pair(finding, lever.kind, lever.risk, feasibility, self.baselines.get(finding.endpoint))
                for finding, lever, feasibility in pairs
            ]
        )

    def traffic_share(self, endpoint: str) -> float:
        """The endpoint's share of the baseline's requests; 1 when the baseline does not say (all alike)."""
        baseline = self.baselines.get(endpoint)
        return baseline.traffic_share if baseline is not None else 1.0


# ---------------------------------------------------------------- outcomes of a finished campaign


def _validation_start(status: CampaignStatus) -> datetime | None:
    return next((p.started_at for p in status.phases if p.phase == Phase.VALIDATION), None)


def outcomes_of(status: CampaignStatus) -> list[Outcome]:
    """Per change that was measured (kept, or rolled back after the validation began) and per finding its
    recommendation addressed: the realised gain on the finding's endpoint.

    The gain is the change's own leave-one-out verdict on that endpoint when there is one (with it against
    without it), else the campaign's verdict (all its changes together). A change undone before the validation
    (functional safety, a tuning that kept the baseline) was never measured: it teaches nothing and is left out.
    """
    if not status.finished or not status.verdicts:
        return []
    findings = {f.id: f for f in status.findings}
    recommendations = {r.id: r for r in status.recommendations}
    verdicts = {v.endpoint: v for v in status.verdicts}
    started = _validation_start(status)
    baselines = (
        endpoint_baselines((s.endpoint, s.p95, s.requests) for s in status.baseline.endpoints)
        if status.baseline is not None
        else {}
    )
    found = []
    for change in status.changes:
        if change.state == ChangeState.ROLLED_BACK:
            undone = change.rolled_back_at
            if started is None or undone is None or undone < started:
                continue
        elif change.state != ChangeState.KEPT:
            continue
        recommendation = recommendations.get(change.recommendation_id)
        if recommendation is None or recommendation.lever is None:
            continue
        own = {v.endpoint: v for v in change.attribution}
        for finding_id in recommendation.finding_ids or [recommendation.finding_id]:
            finding = findings.get(finding_id)
            if finding is None:
                continue
            verdict: EndpointVerdict | None = own.get(finding.endpoint) or verdicts.get(finding.endpoint)
            if verdict is None or not math.isfinite(verdict.before.p95 - verdict.after.p95):
                continue
            # The recommendation keeps the feasibility of the finding it was ranked for; its others share it.
            pair = Pair(
                finding,
                recommendation.lever.kind,
                recommendation.lever.risk,
                recommendation.feasibility,
                baselines.get(finding.endpoint),
            )
            found.append(
                Outcome(
                    campaign_id=status.campaign_id,
                    change_id=change.change_id,
                    lever=change.lever,
                    pair=pair,
                    gain_ms=verdict.before.p95 - verdict.after.p95,
                    kept=change.state == ChangeState.KEPT,
                )
            )
    return found
