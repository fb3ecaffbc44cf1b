"""The compiled scan for k6's kept lines (ratchet.store.kept_lines) finds what the regex it replaces found."""

from __future__ import annotations

import random
import re

import pytest

from ratchet.store.kept_lines import kept_lines

KEPT = re.compile(rb'\{"metric":"(?:http_req_duration|dropped_iterations)","type":"Point"[^\n]*\n')
DURATION = b'{"metric":"http_req_duration","type":"Point","data":{"time":"t","value":1.5,"tags":{"status":"200"}}}\n'
DROPPED = b'{"metric":"dropped_iterations","type":"Point","data":{"time":"t","value":1,"tags":{}}}\n'
OTHER = b'{"metric":"http_reqs","type":"Point","data":{"time":"t","value":1,"tags":{"status":"200"}}}\n'
METRIC = b'{"type":"Metric","data":{"name":"http_req_duration"},"metric":"http_req_duration"}\n'


@pytest.mark.parametrize(
    "lines",
    [
        b"",
        DURATION,
        OTHER + DURATION + METRIC + DROPPED + OTHER,
        DURATION[:-1],  # no newline yet: nothing (the next block completes it)
        b"junk {" + DURATION + b"{{{" + DURATION.replace(b"Point", b"Pint") + DURATION,  # mid-line, near misses
        DURATION[:40] + b"\n" + DURATION,  # a pattern cut by a newline
        b'x{"metric":"http_req_duration","type":"Point"\n',  # the pattern alone, then the newline
    ],
)
def test_the_scan_keeps_what_the_regex_keeps(lines: bytes) -> None:
    assert kept_lines(lines) == b"".join(KEPT.findall(lines))


def test_the_scan_keeps_what_the_regex_keeps_in_a_window_of_random_output() -> None:
    rng = random.Random(7)
    pieces = [DURATION, DROPPED, OTHER, METRIC, b"{", b"\n", b'{"metric":"', b"x" * 9]
    for _ in range(300):
        lines = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        start = rng.randint(0, len(lines))
        end = rng.randint(start, len(lines))
        assert kept_lines(lines, start, end) == b"".join(KEPT.findall(lines, start, end))
