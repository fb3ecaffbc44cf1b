"""The quality bars of validation, measured on the demo shop with real k6 runs and Ratchet's own verdicts.

    python -m bench.validation [--repetitions 20] [--runs 3] [--run-seconds 4] [--slowdown 0.2]

Each repetition measures three arms, interleaved (the order rotates every round, so drift favours none):
``A`` and ``A'`` on the unchanged shop, ``S`` with one endpoint made ``--slowdown`` slower (the shop's
injected-slowdown flag). ``A`` against ``A'`` is an A/A validation: any endpoint declared improved or
regressed there is a false verdict (goal: in at most 5% of the repetitions). ``A`` against ``S``
must declare the slowed endpoint regressed (goal: in at least 90%), and the campaign's decision on those
verdicts (``validation_outcome``) must be the rollback of the change. The verdicts are those a campaign gives:
``judge_endpoints`` with the default playbook's validation rules, Holm across the endpoints, and the same
procedure: ``--runs`` per arm, then one more round at a time while a verdict is inconclusive, up to
``--max-runs``.
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
from ratchet.analysis.decisions import validation_outcome
from ratchet.analysis.significance import ArmsOfEndpoint, judge_endpoints
from ratchet.cli.demo import SHOP_TARGET, announced_process, prepare_shop_database
from ratchet.config.loading import load_target
from ratchet.config.playbook import Playbook
from ratchet.contracts import LoadTestRequest, LoadTestResult, ValidationOutcome, Verdict
from ratchet.settings import Settings
from ratchet.store.samples import endpoint_arms

GOAL_FALSE_SHARE = 0.05
GOAL_CAUGHT_SHARE = 0.90
# Fast clean endpoints and one with real work in it (~30 ms of CPU per answer): the one that is slowed.
ENDPOINTS = ("product", "customer", "health", "recommendations")
SLOWED = "recommendations"
SLOWED_ROUTE = "/recommendations/{customer_id}"


@dataclass
class Tally:
    aa_false: int = 0
    caught: int = 0
    rolled_back: int = 0
    slowed_inconclusive: int = 0
    repetitions: int = 0
    rounds: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _arms(settings: Settings, before: list[LoadTestResult], after: list[LoadTestResult]) -> dict[str, ArmsOfEndpoint]:
    return endpoint_arms(
        [settings.samples_file(r.run_id) for r in before], [settings.samples_file(r.run_id) for r in after]
    )


async def _bench(args: argparse.Namespace, console: Console) -> Tally:
    home = Path(tempfile.mkdtemp(prefix="ratchet-bench-validation-"))
    settings = Settings(home=home)
    database = prepare_shop_database(home / "shop")
    os.environ["SHOP_DB"] = str(database)
    os.environ["SHOP_URL"] = url = f"http://127.0.0.1:{args.port}"
    target = load_target(SHOP_TARGET)
    # Equal weights: every endpoint, the slowed one included, gets a quarter of the rate (the shop's own weights
    # would leave it a handful of requests per run).
    endpoints = [e.model_copy(update={"weight": 1}) for e in target.endpoints if e.name in ENDPOINTS]
    target = target.model_copy(update={"endpoints": endpoints, "traces": None, "levers": []})
    playbook = Playbook(name="bench", approvers=["bench"])
    measure = MeasurementActivities(settings)
    environment = ActivityEnvironment()
    tally = Tally()
    shop_argv = [sys.executable, "-m", "examples.shop", "--db", str(database), "--port", str(args.port)]
    with announced_process(shop_argv, ready="shop listening", log=home / "shop.log"):

        async def run(label: str, slowed: bool) -> LoadTestResult:
            shares = {SLOWED_ROUTE: args.slowdown} if slowed else {}
            httpx.post(f"{url}/admin/flags", json={"injected_slowdown": shares}).raise_for_status()
            request = LoadTestRequest(
                campaign_id="bench-validation", label=label, target=target, rate=args.rate,
                duration_s=args.run_seconds, warmup_s=1.0, max_vus=50, request_timeout_s=10,
            )  # fmt: skip
            return await environment.run(measure.run_load_test, request)

        await run("warm-up", False)
        for repetition in range(args.repetitions):
            arms: dict[str, list[LoadTestResult]] = {"A": [], "A'": [], "S": []}
            order = ["A", "A'", "S"]
            round_number = 0
            # As a campaign does: the playbook's runs per arm, then one more round at a time while a verdict is
            # inconclusive, up to its budget.
            while True:
                turn = order[round_number % 3 :] + order[: round_number % 3]
                for arm in turn if (repetition + round_number) % 2 == 0 else reversed(turn):
                    arms[arm].append(await run(f"r{repetition}-{arm.replace(chr(39), 'b')}-{round_number}", arm == "S"))
                round_number += 1
                if round_number < args.runs:
                    continue
                aa = judge_endpoints(_arms(settings, arms["A"], arms["A'"]), playbook)
                slow = {v.endpoint: v for v in judge_endpoints(_arms(settings, arms["A"], arms["S"]), playbook)}
                undecided = [v for v in [*aa, *slow.values()] if v.verdict == Verdict.INCONCLUSIVE]
                if not undecided or round_number >= args.max_runs:
                    break
            false = [v for v in aa if v.verdict in (Verdict.IMPROVED, Verdict.REGRESSED)]
            tally.repetitions += 1
            tally.aa_false += bool(false)
            verdict = slow[SLOWED]
            tally.caught += verdict.verdict == Verdict.REGRESSED
            # The campaign's own decision on these verdicts (no SLO in play): regressed rolls every change back.
            tally.rolled_back += validation_outcome(list(slow.values()), [], playbook) == ValidationOutcome.REGRESSED
            tally.slowed_inconclusive += verdict.verdict == Verdict.INCONCLUSIVE
            for v in false:
                tally.notes.append(f"repetition {repetition + 1}, A/A: {v.endpoint} {v.verdict.value}: {v.explanation}")
            if verdict.verdict != Verdict.REGRESSED:
                tally.notes.append(
                    f"repetition {repetition + 1}, slowed: {verdict.verdict.value}: {verdict.explanation}"
                )
            tally.rounds.append(round_number)
            console.print(
                f"repetition {repetition + 1}/{args.repetitions} ({round_number} runs per arm): A/A {'FALSE ' + str(len(false)) if false else 'clean'}; "
                f"{SLOWED} +{args.slowdown:.0%}: {verdict.verdict.value} ({verdict.ratio_text()})"
            )
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="Runs per arm to start with (the playbook's default).")
    parser.add_argument("--max-runs", type=int, default=6, help="Runs per arm at most, while undecided.")
    parser.add_argument("--run-seconds", type=float, default=4.0)
    # 60 req/s saturates a 2-core machine running the shop and k6 together: latencies then multiply, not add.
    parser.add_argument("--rate", type=float, default=40.0, help="Requests per second over the four endpoints.")
    parser.add_argument("--slowdown", type=float, default=0.2)
    parser.add_argument("--port", type=int, default=8811)
    args = parser.parse_args()
    console = Console()
    tally = asyncio.run(_bench(args, console))
    false_share = tally.aa_false / tally.repetitions
    caught_share = tally.caught / tally.repetitions
    mean_rounds = sum(tally.rounds) / len(tally.rounds)
    table = Table(
        title=f"Validation quality bars ({tally.repetitions} repetitions, {args.runs}-{args.max_runs} runs per arm, "
        f"{mean_rounds:.1f} on average, {args.run_seconds:g} s each)"
    )
    for column in ("bar", "goal", "measured", "met"):
        table.add_column(column)
    table.add_row(
        "A/A: a change declared (any endpoint)", f"<= {GOAL_FALSE_SHARE:.0%}",
        f"{tally.aa_false}/{tally.repetitions} = {false_share:.0%}", "yes" if false_share <= GOAL_FALSE_SHARE else "NO",
    )  # fmt: skip
    table.add_row(
        f"{SLOWED} {args.slowdown:.0%} slower: regressed", f">= {GOAL_CAUGHT_SHARE:.0%}",
        f"{tally.caught}/{tally.repetitions} = {caught_share:.0%} ({tally.slowed_inconclusive} inconclusive)",
        "yes" if caught_share >= GOAL_CAUGHT_SHARE else "NO",
    )  # fmt: skip
    table.add_row(
        "... and the campaign rolls back", f">= {GOAL_CAUGHT_SHARE:.0%}",
        f"{tally.rolled_back}/{tally.repetitions} = {tally.rolled_back / tally.repetitions:.0%}",
        "yes" if tally.rolled_back / tally.repetitions >= GOAL_CAUGHT_SHARE else "NO",
    )  # fmt: skip
    console.print(table)
    for note in tally.notes:
        console.print(f"  {note}")


if __name__ == "__main__":
    main()
