"""Sample the target's processes once a second while a load test runs; store the samples beside the run.

Per process and second: CPU (percent of one core, so 200 means two cores busy), resident memory, threads,
open files, and the bytes read and written since the previous sample. The processes are looked up again
every few seconds (and at once when one is gone), so a restart or a new worker process is followed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

from ratchet.contracts import ResourceSummary

_LOOKUP_EVERY = 5

RESOURCE_SCHEMA = pa.schema(
    [
        ("ts", pa.timestamp("us", tz="UTC")),
        ("pid", pa.int64()),
        ("name", pa.string()),
        ("cpu_percent", pa.float64()),
        ("rss_bytes", pa.int64()),
        ("threads", pa.int64()),
        ("open_files", pa.int64()),
        ("read_bytes", pa.int64()),
        ("write_bytes", pa.int64()),
    ]
)


class ResourceSampler:
    """A background thread sampling ``find()``'s processes every ``interval_s`` until ``stop()``."""

    def __init__(self, find: Callable[[], list[psutil.Process]], *, interval_s: float = 1.0) -> None:
        self.find = find
        self.interval_s = interval_s
        self.rows: dict[str, list[Any]] = {name: [] for name in RESOURCE_SCHEMA.names}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)
        self._known: dict[int, psutil.Process] = {}  # cpu_percent needs the same object between calls
        self._last_io: dict[int, tuple[int, int]] = {}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        processes = self._look_up()
        self._sample(processes, record=False)  # primes cpu_percent, whose first reading is always 0
        ticks = 0
        while not self._stop.wait(self.interval_s):
            ticks += 1
            # Looking processes up scans /proc (ports: every process's sockets); not every second.
            if ticks % _LOOKUP_EVERY == 0 or not processes or len(self._known) < len(processes):
                processes = self._look_up()
            self._sample(processes, record=True)

    def _look_up(self) -> list[psutil.Process]:
        processes = [self._known.setdefault(found.pid, found) for found in self.find()]
        return processes

    def _sample(self, processes: list[psutil.Process], *, record: bool) -> None:
        now = datetime.now(UTC)
        for process in processes:
            try:
                with process.oneshot():
                    cpu = process.cpu_percent()
                    memory = process.memory_info().rss
                    threads = process.num_threads()
                    files = process.num_fds() if hasattr(process, "num_fds") else len(process.open_files())
                    name = process.name()
                    reads, writes = _io_bytes(process)
            except psutil.Error:
                self._known.pop(process.pid, None)  # gone (restarted, say): looked up again next second
                continue
            before = self._last_io.get(process.pid, (reads, writes))
            self._last_io[process.pid] = (reads, writes)
            if record:
                for column, value in zip(
                    RESOURCE_SCHEMA.names,
                    (now, process.pid, name, cpu, memory, threads, files, reads - before[0], writes - before[1]),
                    strict=True,
                ):
                    self.rows[column].append(value)

    def write(self, out_file: Path) -> int:
        """Store the samples as Parquet; returns how many rows."""
        out_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_file.with_suffix(".tmp")
        pq.write_table(pa.table(self.rows, schema=RESOURCE_SCHEMA), tmp)
        tmp.replace(out_file)
        return len(self.rows["ts"])

    def summary(self) -> ResourceSummary:
        """Peak and typical figures over the run (CPU summed over the processes, per second)."""
        return summarize_resources(self.rows)


def read_resources(in_file: Path) -> dict[str, list[Any]]:
    """The samples a sampler stored (columns as lists), e.g. by another load generator's activity."""
    return pq.read_table(in_file, schema=RESOURCE_SCHEMA).to_pydict()


def resource_totals(in_file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per sample instant: seconds since the first, CPU summed over the processes (% of one core) and resident
    memory summed (bytes). Reads only those three columns."""
    table = pq.read_table(in_file, columns=["ts", "cpu_percent", "rss_bytes"])
    if not table.num_rows:
        return np.empty(0), np.empty(0), np.empty(0)
    totals = table.group_by("ts").aggregate([("cpu_percent", "sum"), ("rss_bytes", "sum")]).sort_by("ts")
    instants = totals.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()
    seconds = (instants - instants[0]) / 1e6
    cpu = totals.column("cpu_percent_sum").to_numpy().astype(float)
    memory = totals.column("rss_bytes_sum").to_numpy().astype(float)
    return seconds, cpu, memory


def summarize_resources(rows: dict[str, list[Any]]) -> ResourceSummary:
    """Peak and typical figures of sampled rows (CPU summed over the processes, per second)."""
    per_second: dict[datetime, float] = {}
    rss_per_second: dict[datetime, int] = {}
    for ts, cpu, rss in zip(rows["ts"], rows["cpu_percent"], rows["rss_bytes"], strict=True):
        per_second[ts] = per_second.get(ts, 0.0) + cpu
        rss_per_second[ts] = rss_per_second.get(ts, 0) + rss
    cpu_values = sorted(per_second.values())
    return ResourceSummary(
        samples=len(rows["ts"]),
        processes=len(set(rows["pid"])),
        cpu_percent_median=cpu_values[len(cpu_values) // 2] if cpu_values else 0.0,
        cpu_percent_max=cpu_values[-1] if cpu_values else 0.0,
        rss_mb_max=round(max(rss_per_second.values(), default=0) / 2**20, 1),
        threads_max=max(rows["threads"], default=0),
        cores=os.cpu_count() or 1,
        cpu_percent_mean=round(sum(cpu_values) / len(cpu_values), 2) if cpu_values else 0.0,
        rss_mb_mean=round(sum(rss_per_second.values()) / len(rss_per_second) / 2**20, 1) if rss_per_second else 0.0,
        memory_total_mb=round(psutil.virtual_memory().total / 2**20, 1),
    )


def _io_bytes(process: psutil.Process) -> tuple[int, int]:
    with contextlib.suppress(psutil.Error, AttributeError):
        counters = process.io_counters()
        return int(counters.read_bytes), int(counters.write_bytes)
    return 0, 0
