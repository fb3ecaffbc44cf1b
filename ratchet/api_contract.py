"""The target's OpenAPI contract exercised with schemathesis (its command line, so its own process and its
own report format): which checks fail on which operations."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ratchet.config.target import ApiContract, Target
from ratchet.errors import LeverError

# schemathesis's console script, run by this interpreter: the same environment, wherever it is installed.
_SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def contract_failures(target: Target, api: ApiContract) -> tuple[list[str], str]:
    """The contract failures found, one line each ("ST103 Undocumented status code: GET /products/{id}"),
    sorted, and a one-line summary of the run. Inputs are generated deterministically, so an unchanged target
    gives the same lines. A run that could not test (schema unreachable, a crash) raises LeverError."""
    location = api.openapi if "://" in api.openapi else target.base.rstrip("/") + "/" + api.openapi.lstrip("/")
    with tempfile.TemporaryDirectory(prefix="ratchet-schemathesis-") as folder:
        report = Path(folder) / "report.json"
        argv = [
            sys.executable,
            "-c",
            _SCHEMATHESIS,
            "run",
            location,
            "--url",
            target.base,
            "--max-examples",
            str(api.max_examples),
            "--generation-deterministic",
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--checks",
            ",".join(api.checks),
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ]
        for method in api.methods:
            argv += ["--include-method", method]
        for path in api.exclude_paths:
            argv += ["--exclude-path", path]
        try:
            finished = subprocess.run(
                argv, capture_output=True, text=True, timeout=api.timeout.total_seconds(), cwd=folder
            )
        except subprocess.TimeoutExpired:
            raise LeverError(f"schemathesis did not finish in {api.timeout}") from None
        if not report.is_file():
            said = (finished.stderr or finished.stdout).strip()[-600:]
            raise LeverError(f"schemathesis could not run against {location}: {said}")
        result = json.loads(report.read_text())
    if result.get("errors") or not result.get("complete", False):
        raise LeverError(f"schemathesis could not test {location}: {json.dumps(result.get('errors'))[:600]}")
    failures = sorted(
        f"{failure['code']} {failure['title']}: {operation}"
        for failure in result.get("failures", [])
        for operation in failure.get("operations", [])
    )
    operations, cases = result["operations"]["tested"], result["test_cases"]["generated"]
    return failures, f"schemathesis: {operations} operations, {cases} cases, {len(failures)} failure(s)"
