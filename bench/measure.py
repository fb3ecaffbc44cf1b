"""Run one benchmark step in a fresh Python process and read back its time and peak memory.

A fresh process per step, so one step's memory (or warm caches) never flatters the next; peak memory is the
child's maximum resident set size as the kernel counted it.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StepResult:
    """What one step took, and what it printed (JSON) for cross-checks."""

    seconds: float
    peak_rss_mb: float
    output: dict[str, Any]


def run_step(module: str, *args: str) -> StepResult:
    """Run ``python -m module args…`` (which prints one JSON object on stdout), timed as a whole."""
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", module, *args], check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    return StepResult(seconds=seconds, peak_rss_mb=float(output.pop("peak_rss_mb")), output=output)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_json(payload: dict[str, Any]) -> None:
    """A step's last line: its payload plus its own peak memory."""
    print(json.dumps(payload | {"peak_rss_mb": round(peak_rss_mb(), 1)}))


def step_main(
    argv: list[str],
    write_fixture: Callable[[Path, int], None],
    paths: dict[str, Callable[[Path], dict[str, Any]]],
) -> None:
    """A benchmark module's command line: ``fixture PATH N`` writes its input, any of ``paths`` runs on it."""
    command, path = argv[0], Path(argv[1])
    if command == "fixture":
        write_fixture(path, int(argv[2]))
        print_json({"written": str(path)})
    elif command in paths:
        print_json(paths[command](path))
    else:
        raise SystemExit(f"unknown command {command!r}: fixture or {', '.join(paths)}")
