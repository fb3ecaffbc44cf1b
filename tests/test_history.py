"""`ratchet history` on a real SQLite store filled with synthetic campaigns: the queries, the change point of a
baseline that rose 40%, the drift sentence, --json, and the messages for an unknown target or an empty store.

No Temporal here: the command reads the store only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.cli.app import EXIT_NOT_FOUND, app
from ratchet.settings import Settings, get_settings
from ratchet.store.engine import session_for
from ratchet.store.history import baseline_points, known_targets, optimization_results
from ratchet.store.tables import Campaign, Measurement, OptimizationResult

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 10, 1, 9, 30, tzinfo=UTC)
# A symmetric wobble: every four campaigns average exactly the level, so the means are known to the digit.
WOBBLE = (-0.03, -0.01, 0.01, 0.03)
SLOW = "orders-by-email"
FLAT = "product"
STEP_AT = 16  # c-17, the 17th campaign, is the first measured at the new level
CAMPAIGNS = 24


def campaign_id(number: int) -> str:
    return f"c-{number:02d}"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A data folder of its own, seen by the CLI in this process (and by a `ratchet` subprocess through env)."""
    monkeypatch.setenv("RATCHET_HOME", str(tmp_path / "ratchet"))
    monkeypatch.delenv("RATCHET_STORE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def fill(settings: Settings) -> None:
    """Shop: 24 campaigns; the orders endpoint's baseline p95 steps from 100 to 140 ms at c-17, product stays at 20.
    Every third campaign validated (after p95 at 70%). Blog: three campaigns, too few for a change point."""
    with session_for(settings.resolved_store_url) as session:
        for i in range(CAMPAIGNS):
            cid, at = campaign_id(i + 1), START + timedelta(days=i)
            session.add(Campaign(id=cid, target="shop", playbook="web-api", state="completed", created_at=at))
            orders = (100.0 if i < STEP_AT else 140.0) * (1 + WOBBLE[i % 4])
            for endpoint, p95 in ((SLOW, orders), (FLAT, 20.0 * (1 + WOBBLE[i % 4]))):
                session.add(measurement(cid, endpoint, p95, at))
                # Other runs of the same campaign are not baselines.
                session.add(measurement(cid, endpoint, p95 * 0.5, at + timedelta(hours=1), label="validation"))
                if i % 3 == 2:
                    session.add(
                        OptimizationResult(
                            campaign_id=cid,
                            target="shop",
                            endpoint=endpoint,
                            before_p95=p95,
                            after_p95=p95 * 0.7,
                            p95_ratio=0.7,
                            p_value=0.0012,
                            verdict="improved",
                            at=at + timedelta(hours=2),
                        )
                    )
        # c-01's baseline was measured twice (a run cut short, then retried): the later one counts.
        session.add(measurement(campaign_id(1), SLOW, 250.0, START - timedelta(hours=1)))
        for i in range(3):
            cid = f"b-{i + 1}"
            session.add(Campaign(id=cid, target="blog", playbook="quick-win", state="rolled-back"))
            session.add(measurement(cid, "home", 10.0 + i, START + timedelta(days=i)))
        session.commit()


def measurement(cid: str, endpoint: str, p95: float, at: datetime, *, label: str = "baseline") -> Measurement:
    return Measurement(
        run_id=f"{cid}-{label}-{at:%H%M}",
        campaign_id=cid,
        label=label,
        endpoint=endpoint,
        requests=1200,
        errors=0,
        p50=p95 * 0.5,
        p95=p95,
        p99=p95 * 1.5,
        mean=p95 * 0.6,
        samples_path="",
        measured_at=at,
    )


def run(*args: str) -> tuple[int, str, str]:
    """`ratchet ARGS` in this process: exit code, stdout, stderr."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def row_of(output: str, cid: str) -> str:
    [line] = [line for line in output.splitlines() if f"│ {cid} " in line]
    return line


# ------------------------------------------------------------------ queries


def test_queries_give_one_baseline_per_campaign_oldest_first_and_the_results(store: Settings) -> None:
    fill(store)
    with session_for(store.resolved_store_url) as session:
        assert known_targets(session=session) == ["blog", "shop"]
        points = baseline_points(session=session, target="shop", endpoint=SLOW)
        results = optimization_results(session=session, target="shop", endpoint=SLOW)
    assert [p.campaign_id for p in points] == [campaign_id(i + 1) for i in range(CAMPAIGNS)]
    # The retried baseline, neither the attempt cut short nor the validation run.
    assert (points[0].p95, points[0].measured_at) == (97.0, START)
    assert points[STEP_AT].p95 == pytest.approx(140 * 0.97)
    assert (points[1].p50, points[1].p99, points[1].requests) == (pytest.approx(49.5), pytest.approx(148.5), 1200)
    assert [r.campaign_id for r in results] == [campaign_id(i + 1) for i in range(2, CAMPAIGNS, 3)]
    assert {(r.verdict, r.p95_ratio) for r in results} == {("improved", 0.7)}


# ------------------------------------------------------------------ the command


def test_history_shows_each_campaign_the_change_point_and_the_drift(store: Settings) -> None:
    fill(store)
    code, out, _ = run("history", "shop")
    assert code == 0
    assert "shop / orders-by-email: baselines and results (ms)" in out
    assert "shop / product" in out and "blog" not in out

    orders = out[out.index("shop / orders-by-email") : out.index("shop / product")]
    # A validated campaign: its baseline, the after p95 and the verdict (p95 101.0 -> 70.7).
    assert re.search(
        r"2026-10-03 09:30 .* c-03 .* 1200 .* 50\.5 .* 101\.0 .* 151\.5 .* 70\.7 .* 0\.70 .* improved", orders
    )
    # One that did not validate: no after numbers.
    assert not re.search(r"improved|0\.70|rose", row_of(orders, "c-02"))
    # The step is marked on the campaign where it happened, and only there.
    assert "rose (+40%)" in row_of(orders, "c-17")
    assert orders.count("rose (+40%)") == 1
    assert re.search(
        r"change point at campaign c-17 \(2026-10-17\): baseline p95 100\.0 -> 140\.0 ms \(\+40%\), p=0\.000\d", orders
    )
    assert re.search(
        r"drift: orders-by-email: baseline p95 rose 40% at campaign c-17 \(2026-10-17\), p=0\.000\d", orders
    )

    product = out[out.index("shop / product") :]
    assert "no change point in the baseline p95" in product
    assert "product: baseline p95 steady, no change point in 24 campaigns" in product


def test_a_change_older_than_the_latest_campaigns_is_no_drift(store: Settings) -> None:
    fill(store)
    code, out, _ = run("history", "shop", "--endpoint", SLOW, "--latest", "5")
    assert code == 0
    assert "shop / product" not in out
    assert re.search(
        r"orders-by-email: baseline p95 steady over the latest 5 campaigns \(last change: rose 40% at campaign c-17",
        out,
    )
    assert "drift:" not in out


def test_without_a_target_every_target_is_shown_and_a_short_series_has_no_change_point(store: Settings) -> None:
    fill(store)
    code, out, _ = run("history")
    assert code == 0
    assert "blog / home" in out and "shop / orders-by-email" in out
    blog = out[out.index("blog / home") : out.index("shop / orders-by-email")]
    assert "home: baseline p95 steady, no change point in 3 campaigns" in blog


def test_json_has_the_campaigns_the_change_points_and_the_drift(store: Settings) -> None:
    fill(store)
    code, out, _ = run("history", "shop", "--endpoint", SLOW, "--json")
    assert code == 0
    [shop] = json.loads(out)["targets"]
    assert shop["target"] == "shop"
    [orders] = shop["endpoints"]
    assert orders["endpoint"] == SLOW
    campaigns = orders["campaigns"]
    assert [c["campaign_id"] for c in campaigns] == [campaign_id(i + 1) for i in range(CAMPAIGNS)]
    validated = campaigns[2]
    assert validated["measured_at"] == "2026-10-03T09:30:00Z"
    assert validated["p95"] == pytest.approx(101.0)
    assert (validated["after_p95"], validated["p95_ratio"], validated["verdict"]) == (
        pytest.approx(70.7),
        0.7,
        "improved",
    )
    assert campaigns[1]["after_p95"] is None and campaigns[1]["verdict"] is None
    assert [c["campaign_id"] for c in campaigns if c["change_point"]] == ["c-17"]

    [change] = orders["change_points"]
    assert change["index"] == STEP_AT and change["label"] == "c-17" and change["at"] == "2026-10-17T09:30:00Z"
    assert change["mean_after"] == pytest.approx(140.0)
    assert change["relative_shift"] == pytest.approx(0.4, abs=0.005)
    assert change["p_value"] <= 0.001
    drift = orders["drift"]
    assert drift["drifting"] is True and drift["latest"] == 10
    assert drift["change_point"]["label"] == "c-17"
    assert drift["sentence"].startswith("orders-by-email: baseline p95 rose 40% at campaign c-17 (2026-10-17), p=")


def test_an_unknown_target_names_the_known_ones_and_exits_3(store: Settings) -> None:
    fill(store)
    # As a user types it: the real entry point in its own process.
    env = os.environ | {"RATCHET_HOME": str(store.home)}
    done = subprocess.run(
        [sys.executable, "-m", "ratchet.cli", "history", "shopp"], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert done.returncode == EXIT_NOT_FOUND == 3
    assert done.stdout == ""
    assert "no campaign for target 'shopp' in the store; known targets: blog, shop" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_unknown_endpoint_names_the_known_ones(store: Settings) -> None:
    fill(store)
    code, _, err = run("history", "shop", "--endpoint", "checkout")
    assert code == EXIT_NOT_FOUND
    assert "no baseline of endpoint 'checkout' for target 'shop'; known endpoints: orders-by-email, product" in err
    code, _, err = run("history", "--endpoint", "checkout")
    assert code == EXIT_NOT_FOUND
    assert "no target has a baseline of endpoint 'checkout'; known targets: blog, shop" in err


def test_an_empty_store_says_so_and_exits_0(store: Settings) -> None:
    code, out, _ = run("history")
    assert code == 0
    assert "no campaigns in the store yet" in out and "ratchet launch" in out
    code, out, err = run("history", "shop", "--json")
    assert code == 0
    assert json.loads(out) == {"targets": []}
    assert "no campaigns in the store yet" in err
