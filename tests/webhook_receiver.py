"""A webhook receiver on 127.0.0.1 for the alert tests: records every request, answers the status that ends
its path (/hook/500 answers 500)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    """A webhook receiver on a free port: records every request, answers the status at the path's end."""

    base: str
    received: list[Received] = field(default_factory=list)

    def url(self, status: int = 200) -> str:
        return f"{self.base}/services/T000/B000/secret-token/{status}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[Received] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            # Recorded before answering: once the client has the answer, the body is in the list.
            received.append(Received(self.path, dict(self.headers), json.loads(raw)))
            status = int(self.path.rsplit("/", 1)[1])
            answer = {200: b"ok", 400: b"invalid_payload", 404: b"no_service", 429: b"rate_limited"}.get(
                status, b"server_error"
            )
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "7")
            if 300 <= status < 400:
                self.send_header("Location", "https://example.com/login")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() is seen at the next poll: a short interval keeps each test's teardown quick.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield Receiver(base=f"http://127.0.0.1:{server.server_address[1]}", received=received)
    server.shutdown()
    server.server_close()
    thread.join()
