"""The standing watch of the real demo shop: real k6 probes, a real 30% slowdown of one endpoint's handler
injected while it watches, the real judgement and a real webhook alert. Real Temporal, workers, k6, shop."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from ratchet import watches
from ratchet.contracts import WatchStatus
from ratchet.settings import Settings
from tests.conftest import Shop, playbook_with_watch_defaults
from tests.test_watch import wait_for_probe
from tests.webhook_receiver import Receiver

pytestmark = pytest.mark.asyncio(loop_scope="session")

# The availability check only (it waits on inventory and shipping: about 140 ms): each probe's p95 comes from
# 20 requests of its own, not from the share of a mixed load a lightly weighted endpoint would get.
AVAILABILITY_TARGET = """\
name: watched-shop
base_url: ${SHOP_URL}
endpoints:
  - name: product-availability
    path: /products/{id}/availability
    examples: [{id: 1}, {id: 77}, {id: 512}, {id: 1999}]
"""
SLOWDOWN = {"/products/{product_id}/availability": 0.3}  # the handler 30% slower, as a regression of its code would be
BEFORE = 10  # probes at the shop's own level first


async def test_the_watch_of_the_shop_alerts_once_on_a_lasting_30_percent_slowdown(
    client: Client, settings: Settings, worker: None, shop: Shop, receiver: Receiver, tmp_path: Path
) -> None:
    playbook = tmp_path / "watch.yaml"
    playbook.write_text(
        playbook_with_watch_defaults()
        + "watch: {interval: 1s, window: 2m, rate: 10, duration: 2s, min_points: 5}\n"
        + f"alerts: {{webhook_url: '{receiver.url(200)}'}}\n"
    )
    target = tmp_path / "target.yaml"
    target.write_text(AVAILABILITY_TARGET)
    await watches.start(client, settings, playbook_file=playbook, target_file=target)
    try:
        seen = await wait_for_probe(client, "watched-shop", BEFORE - 1)
        assert not seen.drifts and not receiver.received, seen.events  # the shop as found: nothing to say
        injected_at = datetime.now(UTC)
        httpx.post(f"{shop.url}/admin/flags", json={"injected_slowdown": SLOWDOWN}).raise_for_status()
        slowed_from = seen.probes + 1
        while not seen.alerted and seen.probes < slowed_from + 20:
            seen = await wait_for_probe(client, "watched-shop", seen.probes)
        assert seen.alerted, seen.events
        # A few more probes of the same slowness: no second alert.
        seen = await wait_for_probe(client, "watched-shop", seen.probes + 2)
    finally:
        final: WatchStatus = await watches.stop(client, "watched-shop")
    degraded = [e for e in final.events if " degraded: " in e]
    assert len(degraded) == 1 and "product-availability: p95 rose" in degraded[0], final.events
    # The new level's start is named at the injection, give or take the probe in flight and one after.
    [key] = final.alerted
    endpoint, _, since = key.rpartition("@")
    assert endpoint == "product-availability"
    began = datetime.fromisoformat(since)
    assert injected_at - timedelta(seconds=10) <= began <= injected_at + timedelta(seconds=20), (began, injected_at)
    [alert] = receiver.received
    body = json.dumps(alert.body)
    assert "product-availability" in body and "lasting degradation" in body, body
