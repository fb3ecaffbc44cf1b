"""Run the OTLP receiver in the foreground with uvicorn, announcing its address once it accepts spans."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import uvicorn

from ratchet.traces.columnar import compiled_at_install
from ratchet.traces.receiver import create_receiver_app

READY_LINE = "ratchet traces listening on"


class _AnnouncingServer(uvicorn.Server):
    """Prints one line once the socket is bound, so whoever starts us can wait on it instead of sleeping."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]  # the real port, also when asked for port 0
            print(f"{READY_LINE} http://{self.config.host}:{port}", flush=True)


def serve_receiver(spans_dir: Path, *, host: str = "127.0.0.1", port: int = 4318, token: str | None = None) -> None:
    """Receive spans until SIGINT/SIGTERM; what is buffered is written out on the way down."""
    app = create_receiver_app(spans_dir, token=token)
    # Said before the wait, on stderr (stdout's first line is the ready line others wait for): without the
    # decoder `make` compiles at install, numba compiles it first, about a minute without a word otherwise.
    if not compiled_at_install():
        print(
            f"ratchet traces: preparing the span decoder for {host}:{port} with numba (half a second when `make` "
            "cached it at install; else compiled now, about a minute). `make decoder` compiles it ahead of time: "
            "a receiver then starts at once and idles at half the memory.",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    _AnnouncingServer(config).run()
