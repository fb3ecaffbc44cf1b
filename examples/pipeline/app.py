"""The pipeline's process: its providers (a child process), its Temporal worker, and the admin API its
operators (and Ratchet's levers) change the settings through.

``GET /admin/settings`` shows the settings; ``POST /admin/settings`` with some of them changes those (all
validated first: a bad value changes nothing) and answers once they are in effect, the worker restarted with
its new number of activity slots if that changed. ``GET /health`` answers while the worker polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import Worker

from examples.pipeline.config import SettingsFile
from examples.pipeline.providers import READY_LINE
from examples.pipeline.steps import PipelineActivities
from examples.pipeline.workflow import DocumentPipeline

READY = "pipeline ready"


async def start_providers() -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    """The providers' process, and their URLs once it says they listen. It holds our pipe as its stdin, so it
    stops with us even when we are killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.pipeline.providers",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
    if not line.startswith(READY_LINE):
        raise SystemExit(f"the providers did not start: {line or 'no output'}")
    urls = dict(item.split("=", 1) for item in line.removeprefix(READY_LINE).split())
    return process, urls


class WorkerSupervisor:
    """Runs the Temporal worker with the settings' number of activity slots, restarting it when that changes
    (gracefully: the activities in progress finish first)."""

    def __init__(self, client: Client, task_queue: str, activities: PipelineActivities, settings: SettingsFile) -> None:
        self.client = client
        self.task_queue = task_queue
        self.activities = activities
        self.settings = settings
        self.slots = 0
        self.worker: Worker | None = None
        self.running: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def apply(self) -> None:
        async with self.lock:
            wanted = self.settings.current().activity_slots
            if wanted == self.slots and self.running is not None and not self.running.done():
                return
            await self._shut_down()
            self.worker = Worker(
                self.client,
                task_queue=self.task_queue,
                workflows=[DocumentPipeline],
                activities=self.activities.all(),
                max_concurrent_activities=wanted,
                graceful_shutdown_timeout=timedelta(seconds=30),
            )
            self.running = asyncio.create_task(self.worker.run())
            self.slots = wanted

    async def stop(self) -> None:
        async with self.lock:
            await self._shut_down()

    async def _shut_down(self) -> None:
        """Stop the running worker, if any, once its activities in progress have finished."""
        if self.worker is not None and self.running is not None:
            await self.worker.shutdown()
            with contextlib.suppress(asyncio.CancelledError):
                await self.running


def admin_app(supervisor: WorkerSupervisor, settings: SettingsFile) -> FastAPI:
    app = FastAPI(title="document pipeline admin")

    @app.get("/admin/settings")
    async def show() -> dict[str, Any]:
        return settings.current().model_dump() | {"worker_activity_slots": supervisor.slots}

    @app.post("/admin/settings")
    async def change(changes: dict[str, Any]) -> dict[str, Any]:
        try:
            settings.update(changes)
        except ValidationError as error:
            raise HTTPException(422, detail=error.errors(include_url=False)) from None
        await supervisor.apply()
        return await show()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        running = supervisor.running is not None and not supervisor.running.done()
        if not running:
            raise HTTPException(503, detail="the worker is not running")
        return {"status": "ok", "task_queue": supervisor.task_queue, "activity_slots": supervisor.slots}

    return app


async def run(address: str, namespace: str, task_queue: str, home: Path, admin_port: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    settings = SettingsFile(home)
    settings.update({})  # validates an existing file before anything starts
    providers, urls = await start_providers()
    client = await Client.connect(address, namespace=namespace)
    supervisor = WorkerSupervisor(client, task_queue, PipelineActivities(home, urls), settings)
    await supervisor.apply()
    server = uvicorn.Server(
        uvicorn.Config(admin_app(supervisor, settings), host="127.0.0.1", port=admin_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)  # uvicorn has no started event to await
    if serving.done():
        raise SystemExit(f"the admin API could not listen on 127.0.0.1:{admin_port}")
    print(
        f"{READY} admin=http://127.0.0.1:{admin_port} task_queue={task_queue} "
        + " ".join(f"provider_{n}={u}" for n, u in urls.items()),
        flush=True,
    )
    try:
        await serving  # until SIGTERM or Ctrl-C (uvicorn's handlers)
    finally:
        await supervisor.stop()
        assert providers.stdin is not None
        providers.stdin.close()
        await providers.wait()
