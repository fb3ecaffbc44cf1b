"""Finding a target's processes (pid file, port, command line) and sampling them once a second."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from ratchet.config.target import Processes, Target
from ratchet.resources.processes import processes_by_command, processes_by_pid_file, processes_by_port
from ratchet.resources.sampler import ResourceSampler
from ratchet.resources.target import target_processes
from tests.conftest import free_port

# A server that forks a child (like a pre-forking web server) and burns CPU in it until stopped.
_SERVER = """
import http.server, multiprocessing, sys
def burn():
    while True:
        sum(i * i for i in range(10_000))
if __name__ == "__main__":
    multiprocessing.Process(target=burn, daemon=True).start()
    server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler)
    print("ready", flush=True)
    server.serve_forever()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    script = tmp_path / "forking_server.py"
    script.write_text(_SERVER)
    # A session of its own: the burning child survives a SIGKILL of its parent, so the whole group is killed.
    process = subprocess.Popen(
        [sys.executable, str(script), str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    yield process, port
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_processes_are_found_by_pid_file_port_and_command(
    server: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = server
    pid_file = tmp_path / "server.pid"
    pid_file.write_text(f"{process.pid}\n")
    assert [p.pid for p in processes_by_pid_file(pid_file)] == [process.pid]
    assert [p.pid for p in processes_by_port(port)] == [process.pid]
    assert process.pid in [p.pid for p in processes_by_command(r"forking_server\.py \d+")]
    assert processes_by_pid_file(tmp_path / "missing.pid") == []
    pid_file.write_text("not a pid")
    assert processes_by_pid_file(pid_file) == []


def test_sampler_follows_the_server_and_its_child_once_a_second(
    server: tuple[subprocess.Popen[str], int], tmp_path: Path
) -> None:
    process, port = server
    target = Target(name="t", base_url=f"http://127.0.0.1:{port}", endpoints=[{"name": "home", "path": "/"}])
    found = target_processes(target)
    assert len(found) == 2 and found[0].pid == process.pid  # the server and the child it forked
    sampler = ResourceSampler(lambda: target_processes(target), interval_s=0.2)
    sampler.start()
    pause = threading.Event()
    deadline = time.monotonic() + 60
    while len(set(sampler.rows["ts"])) < 5 and time.monotonic() < deadline:  # five rounds, however slow
        pause.wait(0.05)
    sampler.stop()
    summary = sampler.summary()
    assert summary.processes == 2 and summary.samples >= 10
    # The child burns a core; CPU is in percent of one core, summed over the processes.
    assert summary.cpu_percent_max > 30 and summary.rss_mb_max > 5 and summary.threads_max >= 1
    out = tmp_path / "resources.parquet"
    assert sampler.write(out) == summary.samples
    pids = {pid for (pid,) in duckdb.sql(f"SELECT DISTINCT pid FROM read_parquet('{out}')").fetchall()}
    assert process.pid in pids and len(pids) == 2


def test_a_remote_target_without_a_selector_has_no_local_processes() -> None:
    target = Target(name="t", base_url="http://example.invalid:8080", endpoints=[{"name": "home", "path": "/"}])
    assert target_processes(target) == []
    by_command = Target(
        name="t",
        base_url="http://example.invalid",
        endpoints=[{"name": "home", "path": "/"}],
        processes=Processes(command=r"^no such process \d{40}$"),
    )
    assert target_processes(by_command) == []
