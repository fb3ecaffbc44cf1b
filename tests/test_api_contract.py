"""The test-engineer's OpenAPI contract check: schemathesis against a real FastAPI service, before and after a
change that breaks the documented answer (a field of the wrong type)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from temporalio.testing import ActivityEnvironment

from activities.behaviour import BehaviourActivities
from ratchet.config.target import Target
from ratchet.contracts import BehaviourRequest
from ratchet.settings import Settings


class Item(BaseModel):
    id: int
    name: str


def catalogue() -> tuple[FastAPI, dict[str, bool]]:
    """A small documented API; ``broken["name"]`` makes it answer a number where its schema says a string."""
    app = FastAPI()
    broken = {"name": False}

    @app.get("/items/{item_id}", response_model=Item)
    def item(item_id: int) -> Any:
        if broken["name"]:
            return JSONResponse({"id": item_id, "name": item_id * 2})
        return Item(id=item_id, name=f"item {item_id}")

    return app, broken


@pytest.fixture
def service() -> Iterator[tuple[str, dict[str, bool]]]:
    app, broken = catalogue()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    started = threading.Event()
    thread = threading.Thread(target=lambda: asyncio.run(_serve(server, started)), daemon=True)
    thread.start()
    assert started.wait(30), "the service did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", broken
    server.should_exit = True
    thread.join(timeout=30)


async def _serve(server: uvicorn.Server, started: threading.Event) -> None:
    config = server.config
    if not config.loaded:
        config.load()
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    started.set()
    await server.main_loop()
    await server.shutdown()


async def test_a_change_that_breaks_the_documented_answer_is_a_difference(
    service: tuple[str, dict[str, bool]], tmp_path: Path
) -> None:
    url, broken = service
    target = Target.model_validate(
        {
            "name": "catalogue",
            "base_url": url,
            "endpoints": [{"name": "item", "path": "/items/{id}", "examples": [{"id": 1}]}],
            "behaviour": {"examples_per_endpoint": 0, "api": {"openapi": "/openapi.json", "max_examples": 5}},
        }
    )
    activities = BehaviourActivities(Settings(home=tmp_path))
    request = BehaviourRequest(campaign_id="c1", target=target)
    recorded = await ActivityEnvironment().run(activities.record_behaviour, request)
    assert any(note.startswith("schemathesis: 1 operations") for note in recorded.notes), recorded.notes
    # Unchanged: generated deterministically, the same cases give the same result.
    assert (await ActivityEnvironment().run(activities.check_behaviour, request)).same
    broken["name"] = True
    check = await ActivityEnvironment().run(activities.check_behaviour, request)
    assert not check.same
    assert any(
        d.startswith("API contract (schemathesis), new:") and "GET /items/{item_id}" in d for d in check.differences
    ), check.differences
