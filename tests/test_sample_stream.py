"""k6's output read in blocks (ratchet.store.sample_stream): every request's sample reaches the Parquet parts,
whatever line a block boundary cuts, however long a line is, and with or without a newline at the end."""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path

import duckdb
import pytest
from temporalio.activity import ActivityCancellationDetails
from temporalio.testing import ActivityEnvironment

from activities.measurement import superseded
from ratchet.store import sample_stream
from ratchet.store.sample_stream import SampleStream
from ratchet.store.samples import finalize_run_samples

TIME = "2026-11-22T10:00:00.000123456Z"


def _request(value: float, endpoint: str) -> bytes:
    tags = f'{{"endpoint":"{endpoint}","expected_response":"true","scenario":"s","status":"200"}}'
    return (
        f'{{"metric":"http_reqs","type":"Point","data":{{"time":"{TIME}","value":1,"tags":{tags}}}}}\n'
        f'{{"metric":"http_req_duration","type":"Point","data":{{"time":"{TIME}","value":{value},"tags":{tags}}}}}\n'
    ).encode()


@pytest.mark.parametrize("newline_at_the_end", [True, False])
def test_every_request_reaches_the_parts_whatever_the_blocks_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, newline_at_the_end: bool
) -> None:
    monkeypatch.setattr(sample_stream, "_READ_BYTES", 97)  # blocks shorter than a line: every line is cut
    rng = random.Random(3)
    values = [round(rng.uniform(1, 500), 3) for _ in range(400)]
    endpoints = [("x" * 1000 if i == 150 else f"e{i % 4}") for i in range(len(values))]  # one line ~10 blocks long
    output = b"".join(_request(v, e) for v, e in zip(values, endpoints, strict=True))
    if not newline_at_the_end:
        output = output[:-1]

    stream = SampleStream(tmp_path / "parts", chunk_bytes=5_000)  # several parts
    stream.feed_file(io.BytesIO(output))

    parts = sorted((tmp_path / "parts").glob("*.parquet"))
    assert len(parts) > 1
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT value, endpoint FROM read_parquet(?, filename = true, file_row_number = true) ORDER BY filename, file_row_number",
            [[str(p) for p in parts]],
        ).fetchall()
    assert rows == list(zip(values, endpoints, strict=True))


def test_a_retried_run_keeps_only_its_latest_attempt_though_the_earlier_one_wrote_beside_it(tmp_path: Path) -> None:
    """A run whose heartbeat lapsed is retried while the earlier attempt may still be writing into the same
    folder (CI, 2026-12-08: the earlier attempt merged, then deleted, its retry's parts). Each attempt's parts
    are its own, and the run's samples are those of each generator's latest attempt."""
    parts = tmp_path / "run"
    earlier = SampleStream(parts, attempt=1, chunk_bytes=500)
    earlier.feed_file(io.BytesIO(b"".join(_request(900.0 + i, "slow") for i in range(20))))
    retry = SampleStream(parts, attempt=2, chunk_bytes=500)
    retry.feed_file(io.BytesIO(b"".join(_request(float(i), "fast") for i in range(30))))
    other_generator = SampleStream(parts, generator=1, attempt=1)
    other_generator.feed_file(io.BytesIO(_request(5.0, "fast")))
    assert list(parts.glob("chunk-0-a1-*.parquet"))  # the earlier attempt's parts are still there

    counts = finalize_run_samples(parts, tmp_path / "run.parquet", warmup_s=0)

    assert counts.kept == 31  # the retry's 30 and the other generator's one, none of the stalled attempt's
    with duckdb.connect() as con:
        assert con.execute(
            "SELECT max(duration_ms) FROM read_parquet(?)", [str(tmp_path / "run.parquet")]
        ).fetchone() == (29.0,)
    assert not list(parts.glob("*.parquet"))  # every part removed, the superseded attempt's too


@pytest.mark.parametrize(
    ("details", "gave_up"),
    [
        (ActivityCancellationDetails(timed_out=True), True),
        (ActivityCancellationDetails(not_found=True), True),
        (ActivityCancellationDetails(cancel_requested=True), False),
    ],
)
async def test_only_an_attempt_the_server_gave_up_on_is_superseded(
    details: ActivityCancellationDetails, gave_up: bool
) -> None:
    """A campaign's cancel keeps the partial samples; a lapsed heartbeat leaves the run to its retry."""

    waiting = asyncio.Event()

    async def measuring() -> bool:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return superseded()
        return False

    environment = ActivityEnvironment()
    running = asyncio.ensure_future(environment.run(measuring))
    await waiting.wait()
    environment.cancel(details)
    assert await running is gave_up


def test_an_earlier_attempt_finishing_late_leaves_its_retrys_k6_output_alone(tmp_path: Path) -> None:
    """CI, 2026-12-08: the host stalled, a load test's heartbeat lapsed and it was retried in the same worker.
    The stalled attempt, cancelled, finished its stream after the retry had made its FIFO, and removed the
    path: the retry's k6 then wrote to a plain file there, and the retry counted 0 requests."""
    parts = tmp_path / "run"
    stalled, retry = SampleStream(parts, attempt=1), SampleStream(parts, attempt=2)
    stalled.start()
    retry.start()
    stalled.finish()  # k6 of the stalled attempt stopped: nothing written

    with retry.source.open("wb") as k6_output:  # the retry's k6 opens its output only now
        k6_output.write(b"".join(_request(float(i), "fast") for i in range(30)))
    retry.finish()

    counts = finalize_run_samples(parts, tmp_path / "run.parquet", warmup_s=0)
    assert counts.kept == 30
