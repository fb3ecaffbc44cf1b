"""A target that sends spans is measured only once the trace receiver answers: a receiver still starting is
waited for, one that never answers stops the run before any load, with what to do (not a blind baseline)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.measurement import MeasurementActivities
from ratchet.config.loading import load_target
from ratchet.contracts import LoadTestRequest
from ratchet.settings import Settings
from ratchet.traces.collect import wait_for_receiver
from tests.conftest import free_port


class _Healthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def late_receiver() -> Iterator[tuple[int, threading.Event]]:
    """A port where a receiver starts once `start` is set (by the waiting code itself, after its first miss)."""
    port = free_port()
    start = threading.Event()
    servers: list[ThreadingHTTPServer] = []

    def serve() -> None:
        start.wait()
        server = ThreadingHTTPServer(("127.0.0.1", port), _Healthy)
        servers.append(server)
        server.serve_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, start
    start.set()
    for server in servers:
        server.shutdown()


async def test_a_receiver_that_is_still_starting_is_waited_for(late_receiver: tuple[int, threading.Event]) -> None:
    port, start = late_receiver
    waits: list[str] = []

    def on_wait(text: str) -> None:
        waits.append(text)
        start.set()  # the receiver comes up only after the first miss: the wait is what finds it

    assert await wait_for_receiver(f"http://127.0.0.1:{port}", max_wait_s=30, on_wait=on_wait) == ""
    assert waits and "waiting for the trace receiver" in waits[0]


def traced_target(tmp_path: Path) -> Path:
    path = tmp_path / "traced.yaml"
    path.write_text(
        "name: traced\nbase_url: http://127.0.0.1:9\ntraces: {settle: 1s}\nendpoints:\n  - {name: home, path: /}\n"
    )
    return path


async def test_a_load_test_of_a_traced_target_refuses_to_run_without_the_receiver(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "ratchet", otlp_port=free_port(), trace_receiver_wait=0.5)
    request = LoadTestRequest(
        campaign_id="c1",
        label="baseline",
        target=load_target(traced_target(tmp_path)),
        rate=10,
        duration_s=2,
        warmup_s=0,
        max_vus=5,
        request_timeout_s=5,
    )
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(MeasurementActivities(settings).run_load_test, request)

    assert refused.value.non_retryable and refused.value.type == "TraceReceiverDown"
    message = str(refused.value)
    assert settings.otlp_url in message and "ratchet traces serve" in message and "remove `traces:`" in message
    assert not settings.samples_file("c1-baseline").exists()  # no load was sent, nothing measured
