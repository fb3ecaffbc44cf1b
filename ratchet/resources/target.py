"""The processes of a target, as its `processes` section (or, by default, its base URL) says."""

from __future__ import annotations

from urllib.parse import urlsplit

import psutil

from ratchet.config.target import Target
from ratchet.resources.processes import (
    processes_by_command,
    processes_by_pid_file,
    processes_by_port,
    with_children,
)

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def target_processes(target: Target) -> list[psutil.Process]:
    """The target's processes and their children; empty when none can be found on this machine."""
    selector = target.processes
    found: list[psutil.Process] = []
    if selector is not None:
        if selector.pid_file is not None:
            found = processes_by_pid_file(selector.pid_file)
        if not found and selector.port is not None:
            found = processes_by_port(selector.port)
        if not found and selector.command is not None:
            found = processes_by_command(selector.command)
    else:
        url = urlsplit(target.base)
        if url.hostname in _LOCAL_HOSTS:
            found = processes_by_port(url.port or (443 if url.scheme == "https" else 80))
    return with_children(found)
