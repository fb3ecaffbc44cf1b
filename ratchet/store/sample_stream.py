"""Stream k6's raw output into Parquet while the test runs, in bounded memory and bounded disk.

k6 writes ``--out json`` into a FIFO that we own. A reader thread cuts the byte stream into chunks of whole
lines and keeps only the lines of the metrics we store (``http_req_duration``: one line per request, about
1 in 13 of what k6 writes; ``dropped_iterations``: the load generator running out of VUs; see kept_lines). A converter thread
has DuckDB turn each kept chunk into a Parquet part. Neither the whole output nor the samples are ever held
in Python memory, and nothing but the parts stays on disk, so a soak test of hours stays bounded.

A FIFO rather than a growing file: k6 writes at its own pace (the pipe only blocks it while we copy bytes
out), and the 2 KB per request that k6 writes never reach the disk.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import duckdb

from ratchet.k6.progress import Progress
from ratchet.store.kept_lines import kept_lines, warm_up

_READ_BYTES = 4 << 20
CHUNK_BYTES = 32 << 20

# The tags we read are fixed STRUCT fields rather than a MAP: DuckDB parses them about four times faster.
_K6_COLUMNS = (
    "{'metric': 'VARCHAR', 'type': 'VARCHAR', 'data': 'STRUCT(\"time\" VARCHAR, \"value\" DOUBLE, "
    "tags STRUCT({endpoint_tag} VARCHAR, scenario VARCHAR, status VARCHAR))'}"
)
# One row per kept sample. `metric` tells requests from dropped iterations; `generator` which load
# generator measured it (several when a test is split with execution segments).
_PART_SELECT = """
SELECT metric,
       data.tags[{endpoint_tag_literal}] AS endpoint,
       data.tags['scenario'] AS scenario,
       CAST(data.time AS TIMESTAMPTZ) AS ts,
       data.value AS value,
       coalesce(TRY_CAST(data.tags['status'] AS INTEGER), 0) AS status,
       {generator}::INTEGER AS generator
FROM read_json({source}, format = 'newline_delimited', columns = {columns}, ignore_errors = true)
WHERE type = 'Point'
"""


# A request's latency and status inside its kept line (k6 writes time, value, then tags, in that order).
_DURATION_POINT = re.compile(
    rb'\{"metric":"http_req_duration","type":"Point","data":\{"time":"[^"]*","value":([^,]+),"tags":\{[^}]*?"status":"(\d*)"'
)
_RECENT = 5000


class LiveCounts:
    """Requests, errors and the latest latencies seen in the stream: live progress when k6's own metrics are
    off (soak runs), in bounded memory."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.recent: deque[float] = deque(maxlen=_RECENT)
        self._lock = threading.Lock()

    def observe(self, kept: bytes) -> None:
        points = _DURATION_POINT.findall(kept)
        with self._lock:
            for value, status in points:
                self.requests += 1
                self.errors += status == b"" or status == b"0" or int(status) >= 400
                self.recent.append(float(value))

    def progress(self, elapsed_s: float) -> Progress:
        """Counts so far; the p95 is over the latest requests (a rolling view, as a soak wants)."""
        with self._lock:
            recent = sorted(self.recent)
            requests, errors = self.requests, self.errors
        p95 = recent[min(len(recent) - 1, int(0.95 * len(recent)))] if recent else None
        return Progress(
            requests=requests,
            rate=requests / elapsed_s if elapsed_s > 0 else 0.0,
            p95_ms=p95,
            error_rate=errors / requests if requests else 0.0,
            elapsed_s=elapsed_s,
        )


def sql_literal(path: Path | str) -> str:
    """A path as a SQL string literal (COPY and table functions cannot take prepared parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


def convert_chunk(ndjson: Path, part: Path, *, generator: int = 0, endpoint_tag: str = "endpoint") -> None:
    """Turn one chunk of kept k6 lines into a Parquet part (written under a temporary name, then renamed).

    ``endpoint_tag`` names the k6 tag that says which endpoint a request belongs to.
    """
    if not endpoint_tag.isidentifier():
        raise ValueError(f"endpoint tag {endpoint_tag!r} must be a plain name (letters, digits, underscores)")
    tmp = part.with_suffix(".tmp")
    columns = _K6_COLUMNS.replace("{endpoint_tag}", f'"{endpoint_tag}"')
    query = _PART_SELECT.format(
        generator=int(generator),
        source=sql_literal(ndjson),
        columns=columns,
        endpoint_tag_literal=sql_literal(endpoint_tag),
    )
    with duckdb.connect() as con:
        con.execute("SET threads TO 2")
        con.execute(f"COPY ({query}) TO {sql_literal(tmp)} (FORMAT parquet)")
    tmp.replace(part)


class SampleStream:
    """Receives one k6 process's ``--out json`` output and leaves Parquet parts in ``parts_dir``.

    Use: ``start()``, pass ``source`` to k6 as ``--out json=<source>``, and once k6 has exited call
    ``finish()``, which drains what k6 wrote and returns when every part is on disk.
    """

    def __init__(
        self,
        parts_dir: Path,
        *,
        generator: int = 0,
        attempt: int = 1,
        chunk_bytes: int = CHUNK_BYTES,
        live: LiveCounts | None = None,
        endpoint_tag: str = "endpoint",
    ) -> None:
        self.parts_dir = parts_dir
        self.generator = generator
        self.attempt = attempt
        self.endpoint_tag = endpoint_tag
        self.live = live
        self.chunk_bytes = chunk_bytes
        # Named by generator and attempt: an attempt whose heartbeat lapsed may still be writing when its retry
        # starts in the same folder (see run_parts).
        self.source = parts_dir / f"k6-output-{generator}-a{attempt}.fifo"
        self._chunks: queue.Queue[Path | None] = queue.Queue(maxsize=2)  # backpressure, not memory growth
        self._threads: list[threading.Thread] = []
        self._keepalive_fd: int | None = None
        self._errors: list[BaseException] = []
        self._count = 0

    def start(self) -> None:
        """Create the FIFO and start reading it (before k6 opens it, so k6 never blocks on open)."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        self.source.unlink(missing_ok=True)
        for stale in self.parts_dir.glob(f"{self._prefix}*"):  # left by a process of this attempt that crashed
            stale.unlink()
        warm_up()  # the line scan compiled or loaded now, not while k6 waits on a full FIFO
        os.mkfifo(self.source, 0o600)
        read_fd = os.open(self.source, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer end keeps the pipe open until finish(): without it the reader would see end-of-file
        # before k6 opened the FIFO, or never, if k6 failed before opening it.
        self._keepalive_fd = os.open(self.source, os.O_WRONLY)
        os.set_blocking(read_fd, True)
        reader = os.fdopen(read_fd, "rb", buffering=0)
        self._threads = [
            threading.Thread(target=self._guard, args=(self._read, reader), name="k6-sample-reader", daemon=True),
            threading.Thread(target=self._guard, args=(self._convert,), name="k6-sample-converter", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def feed_file(self, ndjson: BinaryIO) -> None:
        """Ingest an existing k6 output file through the same path (the benchmark and imports use this)."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        converter = threading.Thread(target=self._guard, args=(self._convert,), daemon=True)
        self._threads = [converter]
        converter.start()
        self._guard(self._read, ndjson)
        self.finish()

    def finish(self) -> int:
        """Wait for the rest of k6's output to be converted; return the number of Parquet parts written."""
        if self._keepalive_fd is not None:
            os.close(self._keepalive_fd)  # k6 has exited: the reader now gets end-of-file after the last byte
            self._keepalive_fd = None
        for thread in self._threads:
            thread.join()
        self.source.unlink(missing_ok=True)
        if self._errors:
            raise self._errors[0]
        return self._count

    @property
    def _prefix(self) -> str:
        return f"chunk-{self.generator}-a{self.attempt}-"

    def _guard(self, work: Callable[..., None], *args: object) -> None:
        try:
            work(*args)
        except BaseException as exc:  # handed to finish(), which re-raises it in the caller
            self._errors.append(exc)

    def _read(self, stream: BinaryIO) -> None:
        # k6's output is read into one reused buffer: a fresh 4 MiB bytes object per read cost about a third of
        # the scan again in page faults. Whole lines are scanned in place; the incomplete last line moves to the
        # buffer's front, and the next read completes it.
        buffer = bytearray(_READ_BYTES)
        held = 0  # bytes at the buffer's front that are the start of a line not yet complete
        kept = bytearray()
        try:
            while True:
                if held == len(buffer):  # a line longer than the buffer: make room for the rest of it
                    buffer.extend(bytes(len(buffer)))
                with memoryview(buffer)[held:] as free:  # (released at once: a bytearray in view cannot grow)
                    read = stream.readinto(free)  # type: ignore[attr-defined]  # files and pipes have it
                if not read:
                    break
                end = held + read
                lines_end = buffer.rfind(b"\n", held, end) + 1  # (what is held has no newline: 0 when none)
                new = kept_lines(buffer, 0, lines_end)
                if self.live is not None:
                    self.live.observe(new)
                kept += new
                buffer[: end - lines_end] = buffer[lines_end:end]
                held = end - lines_end
                if len(kept) >= self.chunk_bytes:
                    self._hand_over(kept)
            kept += kept_lines(bytes(buffer[:held]) + b"\n")  # a last line without its newline
            if kept:
                self._hand_over(kept)
        finally:
            stream.close()
            self._chunks.put(None)

    def _hand_over(self, kept: bytearray) -> None:
        chunk = self.parts_dir / f"{self._prefix}{self._count:05d}.ndjson"
        chunk.write_bytes(kept)
        kept.clear()
        self._count += 1
        self._chunks.put(chunk)

    def _convert(self) -> None:
        # After a failure keep draining (and deleting) chunks, so the reader never blocks on a full queue.
        while (chunk := self._chunks.get()) is not None:
            try:
                if not self._errors:
                    convert_chunk(
                        chunk, chunk.with_suffix(".parquet"), generator=self.generator, endpoint_tag=self.endpoint_tag
                    )
            except Exception as exc:  # handed to finish()
                self._errors.append(exc)
            finally:
                chunk.unlink(missing_ok=True)
