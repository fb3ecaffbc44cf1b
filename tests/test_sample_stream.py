"""k6's output read in blocks (ratchet.store.sample_stream): every request's sample reaches the Parquet parts,
whatever line a block boundary cuts, however long a line is, and with or without a newline at the end."""

from __future__ import annotations

import io
import random
from pathlib import Path

import duckdb
import pytest

from ratchet.store import sample_stream
from ratchet.store.sample_stream import SampleStream

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
