"""The lines of k6's output that hold a kept metric's Point, found by a compiled scan (numba).

k6 writes every Point line as ``{"metric":…,"type":"Point",…}``: the lines we keep are what
``re.findall(rb'\\{"metric":"(?:http_req_duration|dropped_iterations)","type":"Point"[^\\n]*\\n', …)`` finds,
about 1 line in 13. That regex costs about a second per GB and holds the GIL while it scans, so the thread
that turns kept lines into Parquet waits for it; this scan finds the same bytes several times faster, 8 bytes
a step, without the GIL. Compiled once per install into numba's cache on disk (a few seconds); ``warm_up``
loads it before a test starts, so k6 never waits on the FIFO for the compiler.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from ratchet.compiled_memory import address, peek, poke, word

_METRICS = (b'{"metric":"http_req_duration","type":"Point"', b'{"metric":"dropped_iterations","type":"Point"')
_PATTERNS = np.frombuffer(b"".join(_METRICS), np.uint8)
_PATTERN_ENDS = np.cumsum([0] + [len(m) for m in _METRICS]).astype(np.int64)
_ONES, _HIGHS = 0x0101010101010101, 0x8080808080808080


@njit(cache=True, inline="always")
def _has_byte(bytes8: np.uint64, byte: int) -> bool:
    """Whether one of the 8 bytes is ``byte`` (the classic zero-byte test on their XOR with it)."""
    x = bytes8 ^ (np.uint64(_ONES) * np.uint64(byte))
    return ((x - np.uint64(_ONES)) & ~x & np.uint64(_HIGHS)) != np.uint64(0)


@njit(cache=True, inline="always")
def _next(data: int, p: int, end: int, byte: int) -> int:
    """Where ``byte`` next occurs at ``p`` or after (``end`` if nowhere before it)."""
    while p + 8 <= end and not _has_byte(word(data, p), byte):
        p += 8
    while p < end and peek(data, p) != byte:
        p += 1
    return p


@njit(cache=True, nogil=True)
def _keep(lines: np.ndarray, start: int, end: int, out: np.ndarray, patterns: np.ndarray, bounds: np.ndarray) -> int:
    """Copy into ``out`` what the regex finds in ``lines[start:end]``; returns how many bytes."""
    data, into, pattern = address(lines), address(out), address(patterns)
    o, p = 0, start
    while p < end:
        p = _next(data, p, end, 0x7B)  # "{": where a pattern can start
        if p >= end:
            break
        length = 0
        for k in range(len(bounds) - 1):
            first, last = bounds[k], bounds[k + 1]
            if p + last - first <= end:
                length = last - first
                for j in range(1, last - first):
                    if peek(data, p + j) != peek(pattern, first + j):
                        length = 0
                        break
            if length:
                break
        if not length:
            p += 1
            continue
        line_end = _next(data, p + length, end, 0x0A)
        if line_end >= end:  # no newline before the end: [^\n]*\n matches nowhere from here on
            break
        for j in range(p, line_end + 1):
            poke(into, o + j - p, peek(data, j))
        o += line_end + 1 - p
        p = line_end + 1
    return o


def kept_lines(lines: bytes | bytearray | memoryview, start: int = 0, end: int | None = None) -> bytes:
    """The lines in ``lines[start:end]`` that hold a kept metric's Point, joined (any buffer, read in place)."""
    view = memoryview(lines).cast("B")
    end = len(view) if end is None else end
    if end <= start:
        return b""
    out = np.empty(end - start, np.uint8)
    # Read-only whatever the buffer: a writable array would make numba compile the scan a second time.
    size = _keep(np.frombuffer(view.toreadonly(), np.uint8), start, end, out, _PATTERNS, _PATTERN_ENDS)
    return out[:size].tobytes()


def warm_up() -> float:
    """Compile the scan, or load it from numba's cache on disk; returns the seconds it took."""
    started = time.perf_counter()
    kept_lines(_METRICS[0] + b"}\n")
    return time.perf_counter() - started
