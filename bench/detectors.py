"""Every trace detector over 1,000,000 stored spans (goal: under 5 s on this machine).

    python -m bench.detectors fixture PATH SPANS   write PATH: a run's spans as the store keeps them
    python -m bench.detectors ours PATH            critical paths, then every detector; prints what was found

The spans are a shop's requests: an order history with an N+1 (a list query, then 20 product lookups), an
availability page calling three services one after another, a page calling them concurrently, and clean
lookups; a tenth of the requests are N+1 histories. Ids are unique per request; times step 1 ms per request.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.measure import step_main

MS = 1_000_000


def _template() -> list[tuple[str, list[dict[str, Any]]]]:
    """(endpoint, spans) of one request of each kind; parent -1 is the root's remote parent, ids are indexes."""

    def span(parent: int, kind: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
        return {"parent": parent, "kind": kind, "start": start, "end": end} | extra

    history = [
        span(-1, "server", 0, 40),
        span(0, "client", 0, 4, statement="SELECT * FROM orders WHERE customer_id = ?"),
    ]
    history += [
        span(0, "client", 4 + i * 1.5, 5 + i * 1.5, statement="SELECT * FROM products WHERE id = ?") for i in range(20)
    ]
    calls = [span(-1, "server", 0, 100)]
    calls += [
        span(0, "client", i * 30, i * 30 + 28, url=f"http://{h}/items/7") for i, h in enumerate(("a:1", "b:2", "c:3"))
    ]
    parallel = [span(-1, "server", 0, 40)] + [
        span(0, "client", 1, 30, url=f"http://{h}/items/7") for h in ("a:1", "b:2", "c:3")
    ]
    lookup = [span(-1, "server", 0, 2), span(0, "client", 0.2, 0.5, statement="SELECT * FROM products WHERE id = ?")]
    mix = [("history", history), ("availability", calls), ("parallel", parallel)]
    return mix + [("product", lookup)] * 7  # a tenth of the requests each for the first three kinds


def write_fixture(path: Path, spans: int) -> None:
    kinds = _template()
    per_cycle = sum(len(s) for _, s in kinds)
    cycles = -(-spans // per_cycle)
    columns: dict[str, list[Any]] = {k: [] for k in ("endpoint", "kind", "parent", "start", "end", "statement", "url")}
    for endpoint, template in kinds:
        for item in template:
            columns["endpoint"].append(endpoint)
            for key in ("kind", "parent", "start", "end"):
                columns[key].append(item[key])
            columns["statement"].append(item.get("statement"))
            columns["url"].append(item.get("url"))
    offsets = np.cumsum([0] + [len(s) for _, s in kinds])[:-1]
    local_request = np.repeat(np.arange(len(kinds)), [len(s) for _, s in kinds])
    base = pa.table({k: v for k, v in columns.items()})
    tables = []
    for cycle in range(cycles):
        request = cycle * len(kinds) + local_request
        span_index = cycle * per_cycle + np.arange(per_cycle)
        parent = np.asarray(columns["parent"])
        parent_index = np.where(parent < 0, -1 - request, cycle * per_cycle + offsets[local_request] + parent)
        t0 = request.astype(np.int64) * MS
        tables.append(
            pa.table(
                {
                    "trace_id": pa.array([f"{r:032x}" for r in request]),
                    "span_id": pa.array([f"{s:016x}" for s in span_index]),
                    "parent_span_id": pa.array([f"{p:016x}" if p >= 0 else f"f{-p:015x}" for p in parent_index]),
                    "name": base["kind"],
                    "kind": base["kind"],
                    "service": pa.array(["shop"] * per_cycle),
                    "start_ns": pa.array(t0 + (np.asarray(columns["start"]) * MS).astype(np.int64)),
                    "end_ns": pa.array(t0 + (np.asarray(columns["end"]) * MS).astype(np.int64)),
                    "duration_ms": pa.array(np.asarray(columns["end"]) - np.asarray(columns["start"])),
                    "status": pa.array(["unset"] * per_cycle),
                    "http_method": pa.array([("GET" if u else None) for u in columns["url"]]),
                    "http_status": pa.array([None] * per_cycle, pa.int64()),
                    "url": base["url"],
                    "server_address": pa.array([None] * per_cycle, pa.string()),
                    "db_system": pa.array([("sqlite" if s else None) for s in columns["statement"]]),
                    "statement": base["statement"],
                    "endpoint": base["endpoint"],
                }
            )
        )
    table = pa.concat_tables(tables).slice(0, spans)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def ours(path: Path) -> dict[str, object]:
    import duckdb

    from ratchet.analysis.traces import analyze_run
    from ratchet.config.playbook import Detection

    started = time.perf_counter()
    with duckdb.connect() as con:
        analysis = analyze_run(con, f"read_parquet('{path}')", Detection())
        spans = con.execute("SELECT count(*) FROM sp").fetchall()[0][0]
    seconds = time.perf_counter() - started
    found = sorted(f"{f.type.value} {f.endpoint}" for f in analysis.findings)
    return {"check": found, "spans": int(spans), "detect_s": round(seconds, 2)}


def main(argv: list[str]) -> None:
    step_main(argv, write_fixture, {"ours": ours})


if __name__ == "__main__":
    main(sys.argv[1:])
