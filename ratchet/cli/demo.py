"""`ratchet demo`: the embedded Temporal server, a worker, the demo shop and one whole campaign."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from ratchet import campaigns
from ratchet.cli.follow import ask_at_gate, follow
from ratchet.config.loading import load_playbook
from ratchet.contracts import CampaignState, CampaignStatus
from ratchet.errors import RatchetError
from ratchet.settings import Settings, get_settings
from ratchet.temporal.client import connect
from ratchet.temporal.server import ServerHandle, start_server
from ratchet.traces.serve import READY_LINE

DEMO_APPROVER = "ratchet-demo"
SHOP_TARGET = Path(__file__).resolve().parents[2] / "examples" / "shop" / "target.yaml"
PIPELINE_TARGET = Path(__file__).resolve().parents[2] / "examples" / "pipeline" / "target.yaml"
PIPELINE_QUEUE = "document-pipeline"


def prepare_shop_database(folder: Path, name: str = "shop.db") -> Path:
    """A fresh copy of the seeded shop database, so every demo starts from the same slow shop."""
    folder.mkdir(parents=True, exist_ok=True)
    pristine, live = folder / "pristine.db", folder / name
    subprocess.run([sys.executable, "-m", "examples.shop", "--db", str(pristine), "--seed-only"], check=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(pristine, live)
    # On disk now, not written back by the kernel while the baseline runs (which would slow it alone).
    with live.open("rb+") as copy:
        os.fsync(copy.fileno())
    return live


@contextlib.contextmanager
def announced_process(argv: list[str], *, ready: str, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run a server until the block ends; yields the line it prints once it listens (it must contain ``ready``)."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if ready not in line:
            raise RatchetError(f"{' '.join(argv[1:3])} did not start (see {log}); is its port free?")
        yield line.strip()
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)


@contextlib.contextmanager
def worker_process(log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python worker.py` (all roles) until the block ends."""
    worker_script = Path(__file__).resolve().parents[2] / "worker.py"
    process = subprocess.Popen([sys.executable, str(worker_script)], stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)


def _start(console: Console, title: str, playbook: Path, auto_approve: bool) -> tuple[Settings, ServerHandle, bool]:
    """Check the playbook, start the embedded Temporal server; whether a person answers the gates."""
    settings = get_settings()
    load_playbook(playbook)  # bad playbook: say so before starting anything
    console.rule(title)
    home = settings.resolved_home
    server = start_server(home, address=settings.temporal_address, ui_port=settings.temporal_ui_port)
    console.print(f"Temporal server on {server.address}, UI {server.ui_url} (data in {home})")
    return settings, server, sys.stdin.isatty() and not auto_approve


def run_demo(console: Console, *, playbook: Path, auto_approve: bool, shop_port: int) -> int:
    """Run the demo campaign and return the exit code (0 when it completed)."""
    settings, _, interactive = _start(console, "Ratchet demo", playbook, auto_approve)
    home = settings.resolved_home
    console.print("Seeding the demo shop (500,000 orders; once) ...")
    database = prepare_shop_database(home / "shop")
    # A second instance of the shop plays production: the kept changes are rolled out to it in steps.
    production_database = prepare_shop_database(home / "shop", "production.db")
    production_url = f"http://127.0.0.1:{shop_port + 1}"
    target_file = demo_target(home / "shop", production_url, production_database)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    receiver_argv = [sys.executable, "-m", "ratchet.cli", "traces", "serve"]
    shop_url = f"http://127.0.0.1:{shop_port}"
    shop_argv = [sys.executable, "-m", "examples.shop", "--db", str(database), "--port", str(shop_port)]
    shop_env = os.environ | {"OTEL_EXPORTER_OTLP_ENDPOINT": settings.otlp_url}
    if settings.otlp_token:  # the receiver asks for it: the shop's exporter sends it
        shop_env["OTEL_EXPORTER_OTLP_HEADERS"] = f"Authorization=Bearer%20{settings.otlp_token}"
    production_argv = [
        sys.executable,
        "-m",
        "examples.shop",
        "--db",
        str(production_database),
        "--port",
        str(shop_port + 1),
    ]
    with (
        announced_process(receiver_argv, ready=READY_LINE, log=logs / "traces.log"),
        announced_process(shop_argv, ready="shop listening", log=logs / "shop.log", env=shop_env),
        announced_process(production_argv, ready="shop listening", log=logs / "production.log"),
        worker_process(logs / "worker.log"),
    ):
        os.environ["SHOP_URL"], os.environ["SHOP_DB"] = shop_url, str(database)
        os.environ.pop("SHOP_DATABASE_URL", None)  # the demo's shop runs on this SQLite file, whatever is set
        console.print(
            f"Demo shop on {shop_url}, its spans to {settings.otlp_url}; production on {production_url}; "
            f"worker started (logs in {logs})"
        )
        if not interactive:
            console.print(
                f"[yellow]Gates are approved automatically as {DEMO_APPROVER!r} (--auto-approve or no terminal).[/]"
            )
        status = asyncio.run(_campaign(console, settings, playbook, target_file, auto=not interactive))
    return print_outcome(console, settings, status)


def print_outcome(console: Console, settings: Settings, status: CampaignStatus) -> int:
    """The campaign's ending, its verdicts that changed, where to look; the exit code (0: completed)."""
    console.print()
    console.rule("Outcome")
    console.print(
        f"[bold]{status.state.value}[/]: {status.outcome}"
        + (f" - {status.outcome_detail}" if status.outcome_detail else "")
    )
    for verdict in status.verdicts:
        if verdict.verdict.value not in ("unchanged", "not worse"):
            console.print(f"  {verdict.endpoint}: {verdict.explanation}")
    if status.rollout is not None:
        steps = ", ".join(
            f"{step.percent:g}% ({'breached' if step.guard and step.guard.breached else 'held'})"
            for step in status.rollout.steps
        )
        console.print(f"Rollout to production: {status.rollout.outcome} - {steps}")
    console.print(
        f"Temporal UI: {settings.ui_url}/namespaces/{settings.temporal_namespace}/workflows/{status.campaign_id}"
    )
    console.print(f"Report: {status.report_html or '(not written)'}")
    console.print("The Temporal server keeps running for the UI; stop it with `ratchet server stop`.")
    return 0 if status.state == CampaignState.COMPLETED else 1


def run_workflows_demo(console: Console, *, playbook: Path, auto_approve: bool, admin_port: int) -> int:
    """Run the demo campaign on the example document pipeline (a temporal-workflow target); the exit code."""
    settings, server, interactive = _start(console, "Ratchet workflows demo", playbook, auto_approve)
    home = settings.resolved_home
    # Every demo starts from the pipeline as it ships: its settings file is removed, its results kept.
    pipeline_home = home / "pipeline"
    (pipeline_home / "settings.json").unlink(missing_ok=True)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    pipeline_argv = [
        sys.executable, "-m", "examples.pipeline", "--temporal-address", server.address,
        "--namespace", settings.temporal_namespace, "--task-queue", PIPELINE_QUEUE,
        "--admin-port", str(admin_port), "--home", str(pipeline_home),
    ]  # fmt: skip
    with (
        announced_process(pipeline_argv, ready="pipeline ready", log=logs / "pipeline.log") as ready,
        worker_process(logs / "worker.log"),
    ):
        os.environ["PIPELINE_ADMIN_URL"] = f"http://127.0.0.1:{admin_port}"
        os.environ["PIPELINE_TASK_QUEUE"] = PIPELINE_QUEUE
        console.print(f"Document pipeline: {ready}; worker started (logs in {logs})")
        if not interactive:
            console.print(
                f"[yellow]Gates are approved automatically as {DEMO_APPROVER!r} (--auto-approve or no terminal).[/]"
            )
        status = asyncio.run(_campaign(console, settings, playbook, PIPELINE_TARGET, auto=not interactive))
    return print_outcome(console, settings, status)


def demo_target(folder: Path, production_url: str, production_database: Path) -> Path:
    """The shop's target with a production environment: the demo's second shop instance."""
    path = folder / "target.yaml"
    path.write_text(
        SHOP_TARGET.read_text()
        + f"\n# Added by `ratchet demo`: the second shop instance, where kept changes are rolled out.\n"
        f"production:\n  base_url: {production_url}\n  database: {{url: 'sqlite:///{production_database}'}}\n"
    )
    return path


async def _campaign(
    console: Console, settings: Settings, playbook: Path, target_file: Path, *, auto: bool
) -> CampaignStatus:
    client = await connect(settings)
    # Every demo starts from a fresh copy of the shop, as a first campaign: what an earlier demo disproved is
    # tried again (on a real target the memory holds; see `ratchet launch --retry-disproved`).
    campaign_id = await campaigns.launch(
        client,
        settings,
        playbook_file=playbook,
        target_file=target_file,
        auto_approve_as=DEMO_APPROVER if auto else None,
        retry_disproved=True,
    )
    console.print(f"Campaign {campaign_id} launched")
    asker = None if auto else ask_at_gate(console, DEMO_APPROVER)
    return await follow(client, campaign_id, console, asker=asker)
