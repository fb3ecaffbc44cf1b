"""The quality bars of validation, measured on the demo shop with real k6 runs and Ratchet's own verdicts.

    python -m bench.validation [--repetitions 20] [--runs 3] [--run-seconds 4] [--slowdown 0.2]

The shop's endpoints run at their production weights, and the endpoints under test get the focused rates a
campaign's validation gives them (sized from a baseline run, within the same total rate). Each repetition
measures three arms, interleaved (the order rotates every round, so drift favours none): ``A`` and ``A'`` on
the unchanged shop, and ``X`` with recommendations (weight 0.1) made ``--slowdown`` slower and
product-availability (weight 0.1) and catalog-export (weight 0.05) made slower by 1/0.7 (the shop's
injected-slowdown flag, proportional to each request's own time). Then:

- ``A`` against ``A'`` is an A/A validation: any endpoint declared improved or regressed there is a false
  verdict (goal: in at most 5% of the repetitions);
- ``A`` against ``X`` must declare recommendations regressed (goal: at least 90%), and the campaign's decision
  on those verdicts (``validation_outcome``) must be the rollback;
- ``X`` against ``A`` is a true 30% improvement of product-availability and of catalog-export: each must be
  declared improved (goal: at least 90% each).

The verdicts are those a campaign gives: ``judge_endpoints`` with the default playbook's validation rules,
Holm across the endpoints, and the same procedure: ``--runs`` per arm, then one more round at a time while a
verdict is inconclusive, up to ``--max-runs``. The shop sends its spans to a trace receiver, and every
repetition is judged twice on the same runs, side by side: on the server's clock (each request's root span,
as a campaign judges an endpoint its traces cover) and on the load generator's. The extra rounds follow the
server's verdicts, as a campaign's would.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table
from temporalio.testing import ActivityEnvironment

from activities.measurement import MeasurementActivities
from ratchet.analysis.decisions import undecided_endpoints, validation_outcome
from ratchet.analysis.power import focus_rates, requests_per_run
from ratchet.analysis.server_side import server_side_arms
from ratchet.analysis.significance import ArmsOfEndpoint, judge_endpoints
from ratchet.cli.demo import SHOP_TARGET, announced_process, prepare_shop_database
from ratchet.config.common import Role
from ratchet.config.loading import load_target
from ratchet.config.playbook import Playbook
from ratchet.contracts import (
    ChangeRecord,
    EndpointVerdict,
    LoadTestRequest,
    LoadTestResult,
    ValidationOutcome,
    Verdict,
)
from ratchet.settings import Settings
from ratchet.store.samples import endpoint_arms, endpoint_durations
from ratchet.store.server_time import server_durations
from ratchet.traces.serve import READY_LINE

GOAL_FALSE_SHARE = 0.05
GOAL_CAUGHT_SHARE = 0.90
# Fast clean endpoints as background, at their production weights, and the three under test.
ENDPOINTS = ("product", "customer", "health", "recommendations", "product-availability", "catalog-export")
SLOWED = "recommendations"
SLOWED_ROUTE = "/recommendations/{customer_id}"
# A true 30% improvement: their before arm is slower by 1/0.7 - 1, the after arm is the plain shop.
IMPROVED = {"product-availability": "/products/{product_id}/availability", "catalog-export": "/catalog/export"}
IMPROVEMENT = 0.30
# The changes the improvements stand for, as validation sees them: one per improved endpoint.
GAINS = [
    ChangeRecord(
        change_id=f"C{n}",
        recommendation_id=f"R{n}",
        lever=f"speed-up-{endpoint}",
        kind="http",
        role=Role.BACKEND_DEVELOPER,
        endpoint=endpoint,
    )
    for n, endpoint in enumerate(IMPROVED, start=1)
]


@dataclass
class Tally:
    aa_false: int = 0
    caught: int = 0
    improved: dict[str, int] = field(default_factory=lambda: dict.fromkeys(IMPROVED, 0))
    rolled_back: int = 0
    slowed_inconclusive: int = 0
    repetitions: int = 0
    rounds: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


CLOCKS = ("server", "client")


def _arms(
    settings: Settings, before: list[LoadTestResult], after: list[LoadTestResult], clock: str
) -> tuple[dict[str, ArmsOfEndpoint], dict[str, str]]:
    """The arms as a campaign judges them (``server``: root spans where the traces cover the requests), or on
    the load generator's samples alone (``client``)."""
    client = endpoint_arms(
        [settings.samples_file(r.run_id) for r in before], [settings.samples_file(r.run_id) for r in after]
    )
    if clock == "client":
        return client, {}
    return server_side_arms(
        client,
        [server_durations(settings.spans_file(r.run_id)) for r in before],
        [server_durations(settings.spans_file(r.run_id)) for r in after],
    )


def _judged(
    settings: Settings, before: list[LoadTestResult], after: list[LoadTestResult], clock: str, playbook: Playbook
) -> list[EndpointVerdict]:
    arms, measured_at = _arms(settings, before, after, clock)
    return judge_endpoints(arms, playbook, measured_at)


async def _bench(args: argparse.Namespace, console: Console) -> dict[str, Tally]:
    home = Path(tempfile.mkdtemp(prefix="ratchet-bench-validation-"))
    settings = Settings(home=home, otlp_port=args.port + 1)
    database = prepare_shop_database(home / "shop")
    os.environ["SHOP_DB"] = str(database)
    os.environ["SHOP_URL"] = url = f"http://127.0.0.1:{args.port}"
    target = load_target(SHOP_TARGET)
    endpoints = [e for e in target.endpoints if e.name in ENDPOINTS]
    target = target.model_copy(update={"endpoints": endpoints, "levers": []})
    playbook = Playbook(name="bench", approvers=["bench"])
    rules = playbook.validation
    budget = rules.model_copy(update={"runs_per_arm": args.runs, "max_runs_per_arm": args.max_runs})
    measure = MeasurementActivities(settings)
    environment = ActivityEnvironment()
    tallies = {clock: Tally() for clock in CLOCKS}
    shop_argv = [sys.executable, "-m", "examples.shop", "--db", str(database), "--port", str(args.port)]
    receiver_argv = [sys.executable, "-m", "ratchet.cli", "traces", "serve"]
    receiver_env = os.environ | {"RATCHET_HOME": str(home), "RATCHET_OTLP_PORT": str(settings.otlp_port)}
    shop_env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": settings.otlp_url}
    with (
        announced_process(receiver_argv, ready=READY_LINE, log=home / "traces.log", env=receiver_env),
        announced_process(shop_argv, ready="shop listening", log=home / "shop.log", env=shop_env),
    ):

        async def run(label: str, slowed: bool, focus: dict[str, float]) -> LoadTestResult:
            shares = {SLOWED_ROUTE: args.slowdown} | dict.fromkeys(IMPROVED.values(), 1 / (1 - IMPROVEMENT) - 1)
            httpx.post(f"{url}/admin/flags", json={"injected_slowdown": shares if slowed else {}}).raise_for_status()
            request = LoadTestRequest(
                campaign_id="bench-validation",
                label=label,
                target=target,
                rate=args.rate,
                duration_s=args.run_seconds,
                warmup_s=1.0,
                max_vus=50,
                request_timeout_s=10,
                focus=focus,
            )
            return await environment.run(measure.run_load_test, request)

        # As a campaign does: a baseline run sizes the validation's focused load on the endpoints under test.
        baseline = await run("baseline", False, {})
        under_test = [SLOWED, *IMPROVED]
        needed = {
            e: requests_per_run(endpoint_durations(settings.samples_file(baseline.run_id), e), rules)
            for e in under_test
        }
        plan = focus_rates(needed, {e.name: e.weight for e in endpoints}, rate=args.rate, run_s=args.run_seconds)
        focus = plan.rates
        console.print(
            "focused load: "
            + ", ".join(f"{e} {focus[e]:.1f}/s ({needed[e]} per run needed)" for e in under_test)
            + (" - capped by the total rate" if plan.capped else "")
        )
        for repetition in range(args.repetitions):
            arms: dict[str, list[LoadTestResult]] = {"A": [], "A'": [], "X": []}
            order = ["A", "A'", "X"]
            round_number = 0
            # As a campaign does: the playbook's runs per arm, then one more round at a time while a verdict is
            # inconclusive, up to its budget.
            while True:
                turn = order[round_number % 3 :] + order[: round_number % 3]
                for arm in turn if (repetition + round_number) % 2 == 0 else reversed(turn):
                    label = f"r{repetition}-{arm.replace(chr(39), 'b')}-{round_number}"
                    arms[arm].append(await run(label, arm == "X", focus))
                round_number += 1
                if round_number < args.runs:
                    continue
                judged = {
                    clock: (
                        _judged(settings, arms["A"], arms["A'"], clock, playbook),
                        {v.endpoint: v for v in _judged(settings, arms["A"], arms["X"], clock, playbook)},
                        {v.endpoint: v for v in _judged(settings, arms["X"], arms["A"], clock, playbook)},
                    )
                    for clock in CLOCKS
                }
                aa, slow, fast = judged["server"]
                # Extra rounds as a campaign adds them: where the budget could still decide an inconclusive
                # endpoint, or prove the gain of a change's endpoint.
                undecided = [
                    *undecided_endpoints(aa, [], budget, decidable_only=True),
                    *undecided_endpoints([slow[SLOWED]], [], budget, decidable_only=True),
                    *undecided_endpoints([fast[e] for e in IMPROVED], GAINS, budget, decidable_only=True),
                ]
                if not undecided or round_number >= args.max_runs:
                    break
            line = []
            for clock in CLOCKS:
                aa, slow, fast = judged[clock]
                line.append(
                    f"{clock}: " + _tally(tallies[clock], repetition, round_number, aa, slow, fast, args, playbook)
                )
            console.print(
                f"repetition {repetition + 1}/{args.repetitions} ({round_number} runs per arm): " + "; ".join(line)
            )
    return tallies


def _tally(
    tally: Tally,
    repetition: int,
    rounds: int,
    aa: list[EndpointVerdict],
    slow: dict[str, EndpointVerdict],
    fast: dict[str, EndpointVerdict],
    args: argparse.Namespace,
    playbook: Playbook,
) -> str:
    """Counts one repetition's verdicts on one clock; what it found, as a few words."""
    false = [v for v in aa if v.verdict in (Verdict.IMPROVED, Verdict.REGRESSED)]
    tally.repetitions += 1
    tally.aa_false += bool(false)
    verdict = slow[SLOWED]
    tally.caught += verdict.verdict == Verdict.REGRESSED
    # The campaign's own decision on these verdicts (no SLO in play): regressed rolls every change back.
    tally.rolled_back += validation_outcome(list(slow.values()), [], playbook) == ValidationOutcome.REGRESSED
    tally.slowed_inconclusive += verdict.verdict == Verdict.INCONCLUSIVE
    for endpoint in IMPROVED:
        tally.improved[endpoint] += fast[endpoint].verdict == Verdict.IMPROVED
        if fast[endpoint].verdict != Verdict.IMPROVED:
            tally.notes.append(
                f"repetition {repetition + 1}, {endpoint} 30% faster: {fast[endpoint].verdict.value}: "
                f"{fast[endpoint].explanation}"
            )
    for v in false:
        tally.notes.append(f"repetition {repetition + 1}, A/A: {v.endpoint} {v.verdict.value}: {v.explanation}")
    if verdict.verdict != Verdict.REGRESSED:
        tally.notes.append(f"repetition {repetition + 1}, slowed: {verdict.verdict.value}: {verdict.explanation}")
    tally.rounds.append(rounds)
    gains = ", ".join(f"{e} {fast[e].verdict.value} ({fast[e].ratio_text()})" for e in IMPROVED)
    return (
        f"A/A {'FALSE ' + str(len(false)) if false else 'clean'}, {SLOWED} +{args.slowdown:.0%} "
        f"{verdict.verdict.value} ({verdict.ratio_text()}), 30% faster: {gains}"
    )
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="Runs per arm to start with (the playbook's default).")
    parser.add_argument("--max-runs", type=int, default=6, help="Runs per arm at most, while undecided.")
    parser.add_argument("--run-seconds", type=float, default=8.0, help="As the web-api playbook's runs.")
    # 60 req/s saturates a 2-core machine running the shop and k6 together: latencies then multiply, not add.
    parser.add_argument("--rate", type=float, default=40.0, help="Requests per second over the four endpoints.")
    parser.add_argument("--slowdown", type=float, default=0.2)
    parser.add_argument("--port", type=int, default=8811)
    args = parser.parse_args()
    console = Console()
    tallies = asyncio.run(_bench(args, console))
    for clock, tally in tallies.items():
        _print_bars(console, clock, tally, args)


def _print_bars(console: Console, clock: str, tally: Tally, args: argparse.Namespace) -> None:
    false_share = tally.aa_false / tally.repetitions
    caught_share = tally.caught / tally.repetitions
    mean_rounds = sum(tally.rounds) / len(tally.rounds)
    table = Table(
        title=f"Validation quality bars on the {clock}'s clock ({tally.repetitions} repetitions, "
        f"{args.runs}-{args.max_runs} runs per arm, {mean_rounds:.1f} on average, {args.run_seconds:g} s each)"
    )
    for column in ("bar", "goal", "measured", "met"):
        table.add_column(column)
    table.add_row(
        "A/A: a change declared (any endpoint)",
        f"<= {GOAL_FALSE_SHARE:.0%}",
        f"{tally.aa_false}/{tally.repetitions} = {false_share:.0%}",
        "yes" if false_share <= GOAL_FALSE_SHARE else "NO",
    )
    table.add_row(
        f"{SLOWED} {args.slowdown:.0%} slower: regressed",
        f">= {GOAL_CAUGHT_SHARE:.0%}",
        f"{tally.caught}/{tally.repetitions} = {caught_share:.0%} ({tally.slowed_inconclusive} inconclusive)",
        "yes" if caught_share >= GOAL_CAUGHT_SHARE else "NO",
    )
    for endpoint, count in tally.improved.items():
        table.add_row(
            f"{endpoint} {IMPROVEMENT:.0%} faster: improved",
            f">= {GOAL_CAUGHT_SHARE:.0%}",
            f"{count}/{tally.repetitions} = {count / tally.repetitions:.0%}",
            "yes" if count / tally.repetitions >= GOAL_CAUGHT_SHARE else "NO",
        )
    table.add_row(
        "... and the campaign rolls back",
        f">= {GOAL_CAUGHT_SHARE:.0%}",
        f"{tally.rolled_back}/{tally.repetitions} = {tally.rolled_back / tally.repetitions:.0%}",
        "yes" if tally.rolled_back / tally.repetitions >= GOAL_CAUGHT_SHARE else "NO",
    )
    console.print(table)
    for note in tally.notes:
        console.print(f"  {clock}: {note}")


if __name__ == "__main__":
    main()
