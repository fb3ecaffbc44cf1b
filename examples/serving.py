"""Several small HTTP services in one process, as the examples' stand-ins for other teams' services run them:
each on a free port of its own, announced in one line once all listen, stopped together on SIGTERM, SIGINT or
the end of stdin (the parent holds that pipe, so they never outlive it, even when it is killed)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import threading
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone: this process runs several and stops them together."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_apps(apps: dict[str, FastAPI], host: str, ready_line: str) -> None:
    """Serve ``apps`` until stopped; print ``ready_line name=URL ...`` once every one listens."""
    servers: dict[str, uvicorn.Server] = {}
    sockets: dict[str, socket.socket] = {}
    for name, app in apps.items():
        # proto=IPPROTO_TCP, not the default 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
        # that say they are TCP, and with it on, a response written in two parts waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        # Listening before uvicorn starts: connections wait in the backlog, so the URLs are good from now on.
        sock.listen(128)
        sockets[name] = sock
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        servers[name] = _QuietServer(config)

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server in servers.values():
            server.should_exit = True

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # A blocking read in a daemon thread: it returns at EOF, i.e. when the parent closes the pipe or dies.
    threading.Thread(target=lambda: (sys.stdin.buffer.read(), loop.call_soon_threadsafe(stop)), daemon=True).start()

    urls = " ".join(f"{n}=http://{host}:{sockets[n].getsockname()[1]}" for n in apps)
    print(f"{ready_line} {urls}", flush=True)
    await asyncio.gather(*(servers[n].serve(sockets=[sockets[n]]) for n in apps))
