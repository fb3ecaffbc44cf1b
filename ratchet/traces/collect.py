"""After a load run: wait until the target has sent the run's spans, then keep them beside the run's samples."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from ratchet.traces.store import collect_run_spans, run_trace_prefix

_POLL_S = 0.1  # the shortest pause between two questions to the receiver


@dataclass(frozen=True)
class RunSpans:
    """What trace collection gave one run."""

    spans: int
    note: str = ""


async def wait_for_receiver(receiver_url: str, *, max_wait_s: float, on_wait: Callable[[str], None]) -> str:
    """Poll the receiver's health until it answers (or ``max_wait_s`` passed). Returns "" when it answers,
    otherwise what to do: a run measured without it keeps no span, and its findings would be blind.

    Its first start after an install takes tens of seconds (it compiles its decoders), so a campaign launched
    beside it waits rather than fails."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    async with httpx.AsyncClient(base_url=receiver_url, timeout=2.0) as client:
        while True:
            try:
                (await client.get("/health")).raise_for_status()
                return ""
            except httpx.HTTPError as exc:
                failure = exc.__class__.__name__
            if loop.time() >= deadline:
                return (
                    f"the trace receiver at {receiver_url} did not answer within {max_wait_s:g}s ({failure}), and the "
                    "target declares traces: start it with `ratchet traces serve` (the same RATCHET_HOME and "
                    "RATCHET_OTLP_PORT as the workers), or remove `traces:` from the target to measure without spans"
                )
            on_wait(f"waiting for the trace receiver at {receiver_url} ({failure})")
            await asyncio.sleep(1.0)


def receiver_headers(token: str | None) -> dict[str, str]:
    """What a call to the receiver carries when it asks for a token (RATCHET_OTLP_TOKEN)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


async def wait_for_run_spans(
    receiver_url: str,
    prefix: str,
    *,
    settle_s: float,
    max_wait_s: float,
    on_wait: Callable[[str], None],
    token: str | None = None,
    roots_expected: int | None = None,
) -> str:
    """Poll the receiver until no span of ``prefix`` arrived for ``settle_s`` (or ``max_wait_s`` passed).

    Exporters batch spans (every 5 s by default), so the last spans of a run arrive seconds after its last
    request. With ``roots_expected`` (the requests the target answered, for a run whose spans are read for
    their roots only) the wait also ends once that many request roots have arrived: what a later span could
    add (a downstream service's children) is not read. Returns "" when settled, otherwise why collection may
    be incomplete.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    async with httpx.AsyncClient(base_url=receiver_url, timeout=5.0, headers=receiver_headers(token)) as client:
        while True:
            try:
                state = (await client.get(f"/ratchet/prefixes/{prefix}")).raise_for_status().json()
            except (httpx.HTTPError, ValueError) as exc:
                return f"trace receiver at {receiver_url} not reachable ({exc.__class__.__name__}): no spans kept"
            idle = state.get("idle_s")
            if idle is not None and idle >= settle_s:
                break
            if roots_expected and state.get("roots", 0) >= roots_expected:
                break
            if loop.time() >= deadline:
                if not state.get("spans"):
                    return f"no spans arrived within {max_wait_s:.0f}s: does the target export to {receiver_url}?"
                break
            on_wait(f"waiting for the target's last spans ({state.get('spans', 0)} so far)")
            # Asked again when the quiet time would be reached (a run's roots are counted every 0.1 s): a
            # fixed half-second poll added a quarter of a second to every run on average.
            quiet_for = settle_s - (idle or 0.0)
            await asyncio.sleep(min(max(quiet_for, _POLL_S), 0.5) if not roots_expected else _POLL_S)
        try:
            (await client.post("/ratchet/flush")).raise_for_status()
        except httpx.HTTPError as exc:
            return f"trace receiver could not write its spans ({exc.__class__.__name__})"
    return ""


async def collect_spans_of_run(
    *,
    receiver_url: str,
    spans_dir: Path,
    run_id: str,
    endpoints: list[str],
    out_file: Path,
    settle_s: float,
    max_wait_s: float,
    on_wait: Callable[[str], None],
    warmup_s: float = 0.0,
    token: str | None = None,
    roots_expected: int | None = None,
) -> RunSpans:
    """Wait for the run's spans (see ``wait_for_run_spans``), then copy them (those of its warm-up left out)
    into ``out_file``."""
    prefix = run_trace_prefix(run_id)
    note = await wait_for_run_spans(
        receiver_url,
        prefix,
        settle_s=settle_s,
        max_wait_s=max_wait_s,
        on_wait=on_wait,
        token=token,
        roots_expected=roots_expected,
    )
    count = await asyncio.to_thread(collect_run_spans, spans_dir / "incoming", prefix, out_file, endpoints, warmup_s)
    return RunSpans(spans=count, note=note)
