"""Find the target's processes: by pid file, by the port it listens on, or by a command-line pattern."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import psutil


def processes_by_pid_file(pid_file: Path) -> list[psutil.Process]:
    """The process whose id the file holds (none when the file is missing, stale or not a number)."""
    try:
        return [psutil.Process(int(pid_file.read_text().strip()))]
    except (OSError, ValueError, psutil.Error):
        return []


def processes_by_port(port: int) -> list[psutil.Process]:
    """The processes listening on a TCP port (all addresses)."""
    found: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.AccessDenied):
        for connection in psutil.net_connections(kind="tcp"):
            listening = connection.status == psutil.CONN_LISTEN and connection.laddr
            if listening and connection.laddr.port == port and connection.pid is not None:
                with contextlib.suppress(psutil.Error):
                    found[connection.pid] = psutil.Process(connection.pid)
    return list(found.values())


def processes_by_command(pattern: str) -> list[psutil.Process]:
    """The processes whose command line (arguments joined by spaces) matches the regular expression."""
    compiled = re.compile(pattern)
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info.get("cmdline") or [])
        if cmdline and compiled.search(cmdline):
            found.append(process)
    return found


def with_children(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes and all their descendants (worker processes of a pre-forking server, say), once each."""
    seen: dict[int, psutil.Process] = {}
    for process in processes:
        seen.setdefault(process.pid, process)
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                seen.setdefault(child.pid, child)
    return list(seen.values())
