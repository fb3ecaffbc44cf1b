"""`ratchet calibrate`: A/A runs of the real shop through the calibration workflow, the noise per endpoint and
the runs per arm and margin it calls for; and the arithmetic behind them on data of known spread."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ratchet.analysis.calibration import endpoint_noise, recommended_margin, recommended_runs_per_arm
from ratchet.config.playbook import Validation
from ratchet.settings import Settings
from tests.campaign_helpers import ratchet_cli
from tests.conftest import Shop
from tests.test_load_shapes import CLEAN_ENDPOINTS, write_playbook, write_target

RULES = Validation(runs_per_arm=3, regression_margin=0.10, confidence=0.95)


def runs_with_spread(spread: float, count: int, seed: int = 5) -> list[np.ndarray]:
    """Runs whose levels differ by a log-normal factor of the given spread; plenty of requests each."""
    rng = np.random.default_rng(seed)
    return [np.full(400, 50.0) * math.exp(rng.normal(0, spread)) + rng.normal(0, 0.01, 400) for _ in range(count)]


def test_a_noisier_endpoint_needs_more_runs_and_a_wider_margin() -> None:
    quiet = endpoint_noise("quiet", runs_with_spread(0.03, 12), RULES, detect=0.2, power=0.9)
    noisy = endpoint_noise("noisy", runs_with_spread(0.15, 12), RULES, detect=0.2, power=0.9)
    assert quiet.run_spread is not None and noisy.run_spread is not None
    assert noisy.run_spread > 3 * quiet.run_spread
    assert quiet.runs_needed is not None and noisy.runs_needed is not None and noisy.runs_needed > quiet.runs_needed
    assert (noisy.noise_floor or 0) > (quiet.noise_floor or 0)
    # k >= 2 s^2 (z + z_power)^2 / (ln 1.2 - ln 1.1)^2, from the measured spread.
    s = noisy.run_spread
    expected = math.ceil(2 * s**2 * (1.959964 + 1.281552) ** 2 / (math.log(1.2) - math.log(1.1)) ** 2)
    assert noisy.runs_needed == expected
    assert recommended_runs_per_arm([quiet, noisy]) == noisy.runs_needed
    margin = recommended_margin([quiet, noisy], RULES, 3)
    assert margin is not None and margin == pytest.approx(noisy.noise_floor, abs=1e-3)


def test_too_few_requests_per_run_is_said_not_guessed() -> None:
    sparse = endpoint_noise("sparse", [np.full(5, 10.0)] * 6, RULES, detect=0.2, power=0.9)
    assert sparse.run_spread is None and "fewer than 20 requests per run" in sparse.note
    assert recommended_runs_per_arm([sparse]) is None


def test_a_slowdown_inside_the_margin_cannot_be_detected() -> None:
    noise = endpoint_noise("e", runs_with_spread(0.05, 8), RULES, detect=0.05, power=0.9)
    assert noise.runs_needed is None
    assert recommended_runs_per_arm([noise]) is None


async def test_calibrate_measures_the_shop_and_recommends(
    settings: Settings, worker: None, shop: Shop, tmp_path: Path
) -> None:
    target = write_target(tmp_path, shop, CLEAN_ENDPOINTS)
    playbook = write_playbook(tmp_path, "calibration", "  rate: 40\n  duration: 3s\n  warmup: 1s\n")
    shown = await ratchet_cli(settings, "calibrate", str(target), "--playbook", str(playbook), "--runs", "4", "--json")
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)
    assert result["target"] == "shop-subset" and result["runs"] == 4 and result["run_seconds"] == 3
    noises = {n["endpoint"]: n for n in result["endpoints"]}
    assert set(noises) == {"product", "health"}
    for noise in noises.values():
        assert noise["requests_per_run"] >= 40, noise  # 40 req/s for 3 s over two endpoints
        assert noise["run_spread"] is not None and noise["run_spread"] >= 0
        assert noise["aa_low"] <= noise["aa_high"]
    assert result["runs_per_arm"] is None or result["runs_per_arm"] >= 1
    assert result["rate"] == 40
    # The table a person reads, from the same command without --json; at the rate `auto` finds (a short ramp of
    # 20 and 40 req/s, which the shop's two light endpoints sustain).
    auto = write_playbook(
        tmp_path,
        "calibration-auto",
        "  rate: auto\n  auto: {max_rate: 40, steps: 2, step: 2s}\n  duration: 3s\n  warmup: 1s\n",
    )
    table = await ratchet_cli(settings, "calibrate", str(target), "--playbook", str(auto), "--runs", "4")
    assert table.returncode == 0, table.stderr
    assert "after a capacity ramp" in table.stdout
    assert "Noise of shop-subset: 4 A/A runs of 3 s at 40 req/s" in table.stdout, table.stdout
    assert "validation.regression_margin" in table.stdout


async def test_calibrate_refuses_a_bad_playbook_before_running_anything(settings: Settings, tmp_path: Path) -> None:
    playbook = tmp_path / "bad.yaml"
    playbook.write_text("name: bad\napprovers: [a]\nvalidation: {runs_per_arm: 5, max_runs_per_arm: 2}\n")
    target = tmp_path / "target.yaml"
    target.write_text("name: t\nbase_url: http://127.0.0.1:9\nendpoints:\n  - {name: h, path: /health}\n")
    shown = await ratchet_cli(settings, "calibrate", str(target), "--playbook", str(playbook))
    assert shown.returncode != 0
    assert "bad.yaml" in shown.stderr and "max_runs_per_arm" in shown.stderr, shown.stderr
