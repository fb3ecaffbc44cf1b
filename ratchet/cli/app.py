"""The `ratchet` command line (typer + rich).

Exit codes: 0 success; 1 the campaign ended without keeping a proven gain (rolled back, rejected,
aborted, failed, cancelled); 2 bad input (file, flag, answer); 3 no such campaign (for `history`: no such
target or endpoint); 4 Temporal unreachable; 5 the campaign refused an answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ratchet.cli.workflows import workflows_app
from ratchet.config.common import Phase, Role
from ratchet.config.loading import load_playbook, load_target
from ratchet.contracts import ApprovalInput, CampaignState, RejectionInput, RolloutDecision
from ratchet.errors import ConfigError, NotFoundError, RatchetError
from ratchet.settings import get_settings


def _lazy_module(name: str) -> ModuleType:
    """``name`` imported on first use (the standard library's LazyLoader recipe): Temporal's client and the
    store cost 36 MB and a third of a second that `traces serve` and `target validate` never need."""
    if name in sys.modules:  # imported already (a test, a worker): one module object, never a second copy
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


campaigns = _lazy_module("ratchet.campaigns")

EXIT_OK, EXIT_CAMPAIGN_NOT_KEPT, EXIT_BAD_INPUT, EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_REFUSED = 0, 1, 2, 3, 4, 5

app = typer.Typer(help="Ratchet: performance campaigns that only move one way.", no_args_is_help=True)
server_app = typer.Typer(help="The embedded Temporal server (dev server with UI, file-backed).")
playbook_app = typer.Typer(help="Playbook files.")
target_app = typer.Typer(help="Target files.")
traces_app = typer.Typer(help="The OTLP trace receiver that instrumented targets send their spans to.")
rollout_app = typer.Typer(help="A campaign's gradual rollout to production: promote or abort it.")
keys_app = typer.Typer(help="Approvers' signing keys (playbooks with `approvals: signed`).")
schedule_app = typer.Typer(help="Campaigns on a timetable (Temporal Schedules: a run still going skips the next).")
watch_app = typer.Typer(help="A standing watch of a target: probes at an interval, alerts on a lasting degradation.")
KEY_HELP = "Your private key (default: $RATCHET_HOME/keys/NAME.key, made by `ratchet keys create NAME`)."
PRINT_INPUT_HELP = "Print the (signed) answer as JSON for `temporal workflow update execute --input`; send nothing."
app.add_typer(server_app, name="server")
app.add_typer(playbook_app, name="playbook")
app.add_typer(target_app, name="target")
app.add_typer(traces_app, name="traces")
app.add_typer(rollout_app, name="rollout")
app.add_typer(keys_app, name="keys")
app.add_typer(schedule_app, name="schedule")
app.add_typer(watch_app, name="watch")
app.add_typer(workflows_app, name="workflows")

# Piped output (logs, CI) gets wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def exit_code_for(state: CampaignState) -> int:
    """0 when the campaign completed, 1 when it ended any other way."""
    return EXIT_OK if state == CampaignState.COMPLETED else EXIT_CAMPAIGN_NOT_KEPT


def _run(coroutine: Awaitable[T]) -> T:
    """Run a coroutine, turning the errors a user can cause into a message and an exit code."""
    try:
        return asyncio.run(coroutine)  # type: ignore[arg-type]
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except NotFoundError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    except campaigns.RefusedError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_REFUSED) from None
    except RatchetError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except RuntimeError as exc:
        if _unreachable(exc):
            address = get_settings().temporal_address
            err.print(f"[red]cannot reach Temporal at {address}: start it with `ratchet server start`[/]")
            raise typer.Exit(EXIT_UNREACHABLE) from None
        raise


def _unreachable(exc: RuntimeError) -> bool:
    """Whether a client error means Temporal could not be reached at all."""
    return "connect" in str(exc).lower() or "transport" in str(exc).lower()


def _client_command(function: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Give an async command a connected client as its first argument."""

    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        async def with_client() -> Any:
            client = await campaigns_client()
            return await function(client, *args, **kwargs)

        return _run(with_client())

    return wrapper


async def campaigns_client() -> Any:
    from ratchet.temporal.client import connect

    return await connect(get_settings())


# ---------------------------------------------------------------- server, worker


@server_app.command("start")
def server_start() -> None:
    """Start the embedded Temporal server in the background (UI included)."""
    from ratchet.temporal.codecs import configured_keys
    from ratchet.temporal.server import start_server

    settings = get_settings()
    try:
        # With a payload key the UI decodes through `ratchet codec-server` (its holders read payloads there).
        codec = f"http://127.0.0.1:{settings.codec_port}" if configured_keys() else None
        handle = start_server(
            settings.resolved_home,
            address=settings.temporal_address,
            ui_port=settings.temporal_ui_port,
            codec_endpoint=codec,
        )
    except RatchetError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    console.print(f"Temporal on {handle.address} (pid {handle.pid}); UI: {handle.ui_url}")
    if codec:
        console.print(f"payloads are encrypted: the UI decodes them at {codec} (run `ratchet codec-server`)")


@app.command("codec-server")
def codec_server(
    ui_origin: Annotated[str | None, typer.Option(help="The UI's origin (default: the embedded server's UI).")] = None,
) -> None:
    """Serve the payload keys to the Temporal UI (127.0.0.1:RATCHET_CODEC_PORT): decrypts for its holders."""
    import uvicorn

    from ratchet.temporal.codec_server import encryption_app
    from ratchet.temporal.codecs import configured_keys

    settings = get_settings()
    keys = configured_keys()
    if not keys:
        err.print("[red]no payload key: set RATCHET_PAYLOAD_KEYS (id:base64key,...) or RATCHET_PAYLOAD_KEY_FILE[/]")
        raise typer.Exit(EXIT_BAD_INPUT)
    origin = ui_origin or settings.ui_url
    console.print(f"codec server on http://127.0.0.1:{settings.codec_port} for {origin}")
    uvicorn.run(encryption_app(keys, origin), host="127.0.0.1", port=settings.codec_port, log_level="warning")


@server_app.command("stop")
def server_stop() -> None:
    """Stop the embedded Temporal server started from this data folder."""
    from ratchet.temporal.server import stop_server

    stopped = stop_server(get_settings().resolved_home)
    console.print("Temporal stopped" if stopped else "no Temporal server was running from this data folder")


@server_app.command("status")
def server_status() -> None:
    """Say whether the embedded server runs."""
    from ratchet.temporal.server import running_pid

    pid = running_pid(get_settings().resolved_home)
    console.print(f"running (pid {pid}); UI: {get_settings().ui_url}" if pid else "not running")
    raise typer.Exit(EXIT_OK if pid else EXIT_UNREACHABLE)


@traces_app.command("serve")
def traces_serve(
    port: Annotated[int | None, typer.Option(help="Port (default: RATCHET_OTLP_PORT, 4318, OTLP/HTTP's own).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Receive OTLP/HTTP spans (protobuf or JSON on /v1/traces) until interrupted; point a service at it with
    OTEL_EXPORTER_OTLP_ENDPOINT=http://HOST:PORT."""
    from ratchet.traces.serve import serve_receiver

    settings = get_settings()
    serve_receiver(
        settings.spans_dir,
        host=host,
        port=settings.otlp_port if port is None else port,
        token=settings.otlp_token,  # RATCHET_OTLP_TOKEN: exporters and Ratchet's own calls must carry it
    )


def _parse_roles(roles: str | None) -> list[Role]:
    if not roles:
        return list(Role)
    chosen = []
    for name in (part.strip() for part in roles.split(",") if part.strip()):
        try:
            chosen.append(Role(name))
        except ValueError:
            valid = ", ".join(r.value for r in Role)
            err.print(f"[red]--roles: unknown role {name!r}; valid: {valid}[/]")
            raise typer.Exit(EXIT_BAD_INPUT) from None
    return chosen


@app.command()
def worker(
    roles: Annotated[str | None, typer.Option(help="Comma-separated roles to serve (default: all).")] = None,
    workflows: Annotated[bool, typer.Option(help="Also run the campaign workflows.")] = True,
) -> None:
    """Run a worker for the campaign workflows and the chosen roles until interrupted."""
    from ratchet.temporal.worker import build_workers, run_workers

    chosen = _parse_roles(roles)

    async def serve() -> None:
        client = await campaigns_client()
        settings = get_settings()
        workers = build_workers(client, settings, chosen, with_workflows=workflows)
        console.print(
            f"worker on {settings.temporal_address}: roles {', '.join(r.value for r in chosen)}"
            + (" + campaign workflows" if workflows else ""),
        )
        await run_workers(workers)

    try:
        _run(serve())
    except KeyboardInterrupt:
        console.print("worker stopped")


# ---------------------------------------------------------------- campaigns


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="The approver's name, as in the playbook's approvers.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to keep the private key (default: $RATCHET_HOME/keys/NAME.key).")
    ] = None,
) -> None:
    """Make NAME's signing key; prints the public key line for the playbook's approvals.keys."""
    from ratchet.approvals import SigningKeyError, create_key, default_key_path

    path = out or default_key_path(get_settings().home, name)
    try:
        public = create_key(path)
    except SigningKeyError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    err.print(f"private key: {path} (keep it to yourself)")
    print(f"{name}: {public}")


@schedule_app.command("create")
def schedule_create(
    name: Annotated[str, typer.Argument(help="The schedule's name (letters, digits, - and _).")],
    playbook: Annotated[Path, typer.Option("--playbook", "-p", help="Playbook YAML file.")],
    target: Annotated[Path, typer.Option("--target", "-t", help="Target YAML file.")],
    cron: Annotated[str, typer.Option(help="When, as a cron expression, e.g. '0 9 * * 1' (Mondays 09:00 UTC).")],
    auto_approve_as: Annotated[
        str | None, typer.Option(help="Approve every gate of every run as this approver (plain approvals only).")
    ] = None,
) -> None:
    """Run a campaign on a timetable; each run is a campaign of its own (camp-TARGET-NAME-TIME)."""
    from ratchet import schedules

    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        err.print(f"[red]schedule name {name!r}: use letters, digits, - and _[/]")
        raise typer.Exit(EXIT_BAD_INPUT)
    _check_databases_or_exit(target, _load_or_exit(load_target, target))
    _load_or_exit(load_playbook, playbook)

    async def go(client: Any) -> int:
        made = await schedules.create(
            client,
            get_settings(),
            name=name,
            playbook_file=playbook,
            target_file=target,
            cron=cron,
            auto_approve_as=auto_approve_as,
        )
        console.print(f"schedule {name} created ({made}): {cron}")
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@schedule_app.command("list")
def schedule_list() -> None:
    """Ratchet's schedules: when they run next, whether paused, their latest runs."""
    from ratchet import schedules

    async def go(client: Any) -> int:
        table = Table("name", "cron", "state", "next runs (UTC)", "latest runs", "what")
        for view in await schedules.listed(client):
            table.add_row(
                view.name,
                view.cron,
                "paused" if view.paused else "active",
                ", ".join(f"{t:%Y-%m-%d %H:%M}" for t in view.next_runs),
                "\n".join(view.recent_runs) or "-",
                view.note,
            )
        console.print(table)
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


def _schedule_action(action: str, help_text: str) -> None:
    def command(name: Annotated[str, typer.Argument(help="The schedule's name.")]) -> None:
        from ratchet import schedules

        async def go(client: Any) -> int:
            await getattr(schedules, action)(client, name)  # each command is the module's function of its name
            console.print(f"schedule {name}: {action} done")
            return EXIT_OK

        raise typer.Exit(_client_command(go)())

    command.__doc__ = help_text
    schedule_app.command(action)(command)


_schedule_action("pause", "Pause a schedule: no run starts until it is resumed.")
_schedule_action("resume", "Resume a paused schedule.")
_schedule_action("delete", "Delete a schedule (campaigns it started are left alone).")
_schedule_action("trigger", "Start a run of a schedule now (skipped while one of its runs is going).")


@watch_app.command("start")
def watch_start(
    target: Annotated[Path, typer.Argument(help="Target YAML file.")],
    playbook: Annotated[Path, typer.Option("--playbook", "-p", help="Playbook YAML file (its watch: and alerts:).")],
) -> None:
    """Watch a target until stopped: the playbook's probe load every watch.interval, an alert (and with
    watch.on_drift: campaign, a campaign) when an endpoint's p95 rises past watch.degradation and stays."""
    from ratchet import watches

    _check_databases_or_exit(target, _load_or_exit(load_target, target))
    _load_or_exit(load_playbook, playbook)

    async def go(client: Any) -> int:
        started = await watches.start(client, get_settings(), playbook_file=playbook, target_file=target)
        console.print(f"watch {started} started: `ratchet watch status NAME`, `ratchet watch stop NAME`")
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@watch_app.command("status")
def watch_status(
    name: Annotated[str, typer.Argument(help="The watched target's name.")],
    as_json: Annotated[bool, typer.Option("--json", help="The status as JSON.")] = False,
) -> None:
    """What a target's watch saw: its latest probe, the degradations it judged, alerts and campaigns."""
    from ratchet import watches

    async def go(client: Any) -> int:
        seen = await watches.status(client, name)
        if as_json:
            print(seen.model_dump_json(indent=2))
            return EXIT_OK
        latest = seen.latest
        console.print(f"watch of {seen.target}: {seen.probes} probe(s), run {seen.runs}")
        if latest is not None:
            table = Table("endpoint", f"p95 ms at {latest.at:%Y-%m-%d %H:%M:%S}Z")
            for endpoint, p95 in sorted(latest.p95.items()):
                table.add_row(endpoint, f"{p95:.1f}")
            console.print(table)
        for drift in seen.drifts:
            console.print(f"[yellow]degraded[/]: {drift.sentence}", highlight=False)
        for campaign_id in seen.campaigns:
            console.print(f"campaign launched: {campaign_id}")
        for event in seen.events[-10:]:
            console.print(event, highlight=False)
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@watch_app.command("stop")
def watch_stop(name: Annotated[str, typer.Argument(help="The watched target's name.")]) -> None:
    """Stop a target's watch after its probe in flight (campaigns it launched go on)."""
    from ratchet import watches

    async def go(client: Any) -> int:
        ended = await watches.stop(client, name)
        console.print(f"watch of {name} stopped after {ended.probes} probe(s)")
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@app.command()
def launch(
    playbook: Annotated[Path, typer.Argument(help="Playbook YAML file.")],
    target: Annotated[Path, typer.Option("--target", "-t", help="Target YAML file.")],
    wait: Annotated[bool, typer.Option(help="Follow the campaign until it ends.")] = False,
    auto_approve: Annotated[bool, typer.Option(help="Approve every gate automatically.")] = False,
    approver: Annotated[
        str | None, typer.Option("--as", help="Your approver name (for --auto-approve/prompts).")
    ] = None,
    retry_disproved: Annotated[
        bool,
        typer.Option(
            help="Recommend again the levers earlier campaigns on this target undid for no effect on the same finding."
        ),
    ] = False,
    queue: Annotated[
        bool,
        typer.Option(
            help="Another campaign runs on the target: start when it ends (without this, the launch is refused, "
            "exit 5)."
        ),
    ] = False,
    key: Annotated[Path | None, typer.Option(help="With --auto-approve: " + KEY_HELP)] = None,
) -> None:
    """Validate the files and start a campaign; with --wait, follow it (asking at gates in a terminal).

    One campaign runs on a target at a time (its name and base URL), across machines: a second launch is
    refused with the running campaign's id (exit 5), or waits its turn with --queue."""
    # Bad files are reported before anything is contacted or started.
    book = _load_or_exit(load_playbook, playbook)
    _check_databases_or_exit(target, _load_or_exit(load_target, target))
    name = approver or book.approvers[0]

    async def go(client: Any) -> int:
        campaign_id = await campaigns.launch(
            client,
            get_settings(),
            playbook_file=playbook,
            target_file=target,
            auto_approve_as=name if auto_approve else None,
            retry_disproved=retry_disproved,
            queue=queue,
            signing_key=key,
        )
        console.print(f"launched {campaign_id}")
        console.print(
            f"Temporal UI: {get_settings().ui_url}/namespaces/{get_settings().temporal_namespace}/workflows/{campaign_id}"
        )
        if not wait:
            return EXIT_OK
        from ratchet.cli.follow import ask_at_gate, follow

        asker = ask_at_gate(console, name) if sys.stdin.isatty() and not auto_approve else None
        status = await follow(client, campaign_id, console, asker=asker)
        console.print(f"report: {status.report_html or '(none)'}")
        return exit_code_for(status.state)

    raise typer.Exit(_client_command(go)())


@rollout_app.command("promote")
def rollout_promote(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    approver: Annotated[str, typer.Option("--as", help="Your name, as listed in the playbook's approvers.")],
    key: Annotated[Path | None, typer.Option(help=KEY_HELP)] = None,
) -> None:
    """Go on to the rollout's next step now, without waiting out the pause (signed with your key when you have
    one)."""

    async def go(client: Any) -> None:
        decision = RolloutDecision(by=approver, **_signed(key, campaign_id, "rollout-promote", None, approver, None))
        console.print(await campaigns.decide_rollout(client, campaign_id, "promote", decision))

    _client_command(go)()


@rollout_app.command("abort")
def rollout_abort(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    approver: Annotated[str, typer.Option("--as", help="Your name, as listed in the playbook's approvers.")],
    reason: Annotated[str, typer.Option(help="Why, kept with the decision.")] = "",
    key: Annotated[Path | None, typer.Option(help=KEY_HELP)] = None,
) -> None:
    """Stop the rollout and undo it in production (the campaign then rolls back); signed as approve is."""

    async def go(client: Any) -> None:
        signed = _signed(key, campaign_id, "rollout-abort", None, approver, None)
        decision = RolloutDecision(by=approver, reason=reason, **signed)
        console.print(await campaigns.decide_rollout(client, campaign_id, "abort", decision))

    _client_command(go)()


def _signed(
    key: Path | None, campaign_id: str, action: str, phase: Phase | None, approver: str, only: list[str] | None
) -> dict[str, Any]:
    """The answer's signature fields, when the approver has a key (none: the answer goes unsigned)."""
    from ratchet.approvals import sign_answer, signing_key_path

    path = signing_key_path(get_settings().home, approver, key)
    if path is None:
        return {}
    signed_at, signature = sign_answer(
        path, campaign_id=campaign_id, action=action, phase=phase.value if phase else "", approver=approver, only=only
    )
    return {"signed_at": signed_at, "signature": signature}


@app.command()
def approve(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    phase: Annotated[Phase | None, typer.Option(help="The waiting phase (default: whichever waits).")] = None,
    only: Annotated[str | None, typer.Option(help="Approve only these recommendations, e.g. R1,R3.")] = None,
    approver: Annotated[str, typer.Option("--as", help="Your name, as listed in the playbook's approvers.")] = "",
    comment: Annotated[str, typer.Option(help="A note kept with the decision.")] = "",
    key: Annotated[Path | None, typer.Option(help=KEY_HELP)] = None,
    print_input: Annotated[bool, typer.Option(help=PRINT_INPUT_HELP)] = False,
) -> None:
    """Approve the phase that waits (all recommended changes, or --only some). Signed with your key when you
    have one (required by playbooks with `approvals: signed`)."""
    if only is not None and not [part for part in only.split(",") if part.strip()]:
        # `--only "$IDS"` with IDS unset must not approve every recommendation.
        err.print("[red]--only: no recommendation ids given (e.g. --only R1,R3); leave --only out to approve all[/]")
        raise typer.Exit(EXIT_BAD_INPUT)

    async def go(client: Any) -> None:
        waiting_phase = phase
        if waiting_phase is None:
            status = await campaigns.get_status(client, campaign_id)
            if status.waiting is None:
                raise campaigns.RefusedError(
                    f"refused: {campaign_id} is not waiting for approval ({status.state.value})"
                )
            waiting_phase = status.waiting.phase
        if not approver:
            raise RatchetError("--as: give your approver name (one of the playbook's approvers)")
        ids = [part.strip().upper() for part in only.split(",") if part.strip()] if only is not None else None
        answer = ApprovalInput(phase=waiting_phase, approver=approver, only=ids, comment=comment)
        answer = answer.model_copy(update=_signed(key, campaign_id, "approve", waiting_phase, approver, ids))
        if print_input:
            print(answer.model_dump_json(exclude_none=True))
            return
        console.print(await campaigns.approve(client, campaign_id, answer))

    _client_command(go)()


@app.command()
def reject(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the report).")],
    approver: Annotated[str, typer.Option("--as", help="Your name, as listed in the playbook's approvers.")] = "",
    phase: Annotated[Phase | None, typer.Option(help="The waiting phase (default: whichever waits).")] = None,
    key: Annotated[Path | None, typer.Option(help=KEY_HELP)] = None,
    print_input: Annotated[bool, typer.Option(help=PRINT_INPUT_HELP)] = False,
) -> None:
    """Reject the phase that waits; the campaign undoes what it applied. Signed with your key when you have one."""

    async def go(client: Any) -> None:
        if not approver:
            raise RatchetError("--as: give your approver name (one of the playbook's approvers)")
        if not reason.strip():
            raise RatchetError("--reason: say why")
        answer = RejectionInput(phase=phase, approver=approver, reason=reason)
        answer = answer.model_copy(update=_signed(key, campaign_id, "reject", phase, approver, None))
        if print_input:
            print(answer.model_dump_json(exclude_none=True))
            return
        console.print(await campaigns.reject(client, campaign_id, answer))

    _client_command(go)()


@app.command()
def status(
    campaign_id: Annotated[str, typer.Argument(help="Campaign id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable status once.")] = False,
    live: Annotated[bool, typer.Option(help="Follow until the campaign ends (default in a terminal).")] = True,
) -> None:
    """Show a campaign: phases, findings, plan, changes, per-endpoint numbers and verdicts."""

    finished = _finished_in_store(campaign_id)
    if finished is not None:  # all there is to show is in the store: no Temporal needed
        if as_json:
            print(json.dumps(campaigns.status_summary(finished) | {"source": "store"}, indent=2, default=str))
        else:
            from ratchet.cli.views import campaign_view

            console.print(campaign_view(finished, []))
            console.print("[dim](finished: as the campaign recorded it in this machine's store)[/]")
        raise typer.Exit(EXIT_OK)

    async def go(client: Any) -> int:
        if as_json:
            current = await campaigns.get_status(client, campaign_id, get_settings().resolved_store_url)
            print(json.dumps(campaigns.status_summary(current), indent=2, default=str))
            return EXIT_OK
        if live and sys.stdout.isatty():
            from ratchet.cli.follow import follow

            current = await follow(client, campaign_id, console)
        else:
            from ratchet.cli.views import campaign_view

            current = await campaigns.get_status(client, campaign_id, get_settings().resolved_store_url)
            progress = [] if current.finished else await campaigns.live_progress(client, campaign_id)
            console.print(campaign_view(current, progress))
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@app.command()
def calibrate(
    target: Annotated[Path, typer.Argument(help="Target YAML file.")],
    playbook: Annotated[Path, typer.Option("--playbook", "-p", help="Playbook YAML (load and validation rules).")],
    runs: Annotated[int, typer.Option(min=4, max=60, help="A/A runs, back to back.")] = 8,
    detect: Annotated[float, typer.Option(min=0.01, max=5.0, help="Slowdown to catch (0.2: 20%).")] = 0.2,
    power: Annotated[float, typer.Option(min=0.5, max=0.999, help="Share of such slowdowns to catch.")] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """A/A runs of the unchanged target: its run-to-run noise per endpoint, and the runs per arm and
    regression margin its validations need to catch a --detect slowdown with --power."""
    book = _load_or_exit(load_playbook, playbook)
    _check_databases_or_exit(target, _load_or_exit(load_target, target))

    async def go(client: Any) -> int:
        if not as_json:
            seconds = (book.validation.run_duration or book.load.duration).total_seconds()
            ramp = ", after a capacity ramp for `rate: auto`" if book.load.rate == "auto" else ""
            console.print(
                f"{runs} A/A runs of {seconds:g} s (+{book.load.warmup.total_seconds():g} s warm-up){ramp} ..."
            )
        result = await campaigns.calibrate(
            client, get_settings(), playbook_file=playbook, target_file=target, runs=runs, detect=detect, power=power
        )
        if as_json:
            print(result.model_dump_json(indent=2))
        else:
            from ratchet.cli.views import calibration_view

            console.print(calibration_view(result, book.validation))
        return EXIT_OK

    raise typer.Exit(_client_command(go)())


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """Campaigns, newest first: from Temporal, or from this machine's store when Temporal is down (said so)."""

    async def from_temporal() -> list[Any]:
        return await campaigns.list_campaigns(await campaigns_client(), limit=limit)

    source = "temporal"
    try:
        found = asyncio.run(from_temporal())
    except RuntimeError as exc:
        if not _unreachable(exc):
            raise
        found, source = campaigns.stored_campaigns(get_settings().resolved_store_url, limit=limit), "store"
        err.print(
            f"[yellow]Temporal at {get_settings().temporal_address} is not reachable: campaigns as this machine's "
            "store last recorded them[/]"
        )
    if as_json:
        print(json.dumps([vars(c) | {"source": source} for c in found], indent=2, default=str))
        return
    table = Table(title="Campaigns" + (" (from the store)" if source == "store" else ""))
    for column in ("id", "state", "phase", "target", "playbook", "started", "workflow"):
        table.add_column(column)
    for c in found:
        started = f"{c.started:%Y-%m-%d %H:%M:%S}" if c.started else ""
        table.add_row(c.campaign_id, c.state, c.phase, c.target, c.playbook, started, c.workflow_status)
    console.print(table)


@app.command()
def cancel(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Cancel a campaign: it undoes every applied change, newest first, then stops."""

    async def go(client: Any) -> None:
        await campaigns.cancel(client, campaign_id)
        if await campaigns.campaign_workers(client, get_settings()):
            console.print(f"cancellation requested for {campaign_id}: applied changes are being undone")
        else:
            # Said plainly: nothing is undone until a worker runs the campaign again.
            console.print(
                f"cancellation requested for {campaign_id}, but no worker serves campaigns now: its applied changes "
                "are undone once one runs (`ratchet worker`, the same RATCHET_HOME and task queue prefix)"
            )

    _client_command(go)()


@app.command()
def report(campaign_id: Annotated[str, typer.Argument(help="Campaign id.")]) -> None:
    """Write (or rewrite) the campaign's HTML and Markdown report and print where they are."""

    from activities.reporting import ReportActivities
    from ratchet.contracts import ReportRequest

    async def write(current: Any) -> None:
        written = await ReportActivities(get_settings()).write_report(ReportRequest(status=current))
        console.print(f"HTML: {written.html_path}\nMarkdown: {written.markdown_path}")

    finished = _finished_in_store(campaign_id)
    if finished is not None:  # a finished campaign's report needs the store only
        _run(write(finished))
        return

    async def go(client: Any) -> None:
        await write(await campaigns.get_status(client, campaign_id, get_settings().resolved_store_url))

    _client_command(go)()


def _finished_in_store(campaign_id: str) -> Any:
    """The final status of a finished campaign as its workflow recorded it in the store, else None (running, or
    not in this store: then Temporal is asked)."""
    recorded = campaigns.stored_status(get_settings().resolved_store_url, campaign_id)
    return recorded if recorded is not None and recorded.finished else None


@app.command()
def history(
    target: Annotated[str | None, typer.Argument(help="Target name (default: every target in the store).")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Only this endpoint.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    latest: Annotated[
        int, typer.Option(min=1, help="Drift: a change point among this many of the latest campaigns.")
    ] = 10,  # changepoints.DEFAULT_LATEST, written out: importing it would load numpy for every command
) -> None:
    """Campaigns over time per endpoint: baselines, validated results, change points of the baseline p95
    (E-divisive, p <= 0.001) and whether it drifts. Reads the store only (no Temporal needed)."""
    from ratchet.cli.history_view import history_json, history_view
    from ratchet.store.engine import session_for
    from ratchet.target_history import store_history

    url = get_settings().resolved_store_url
    try:
        with session_for(url) as session:
            found = store_history(session=session, target=target, endpoint=endpoint, latest=latest)
    except NotFoundError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    if not found:
        empty = f"no campaigns in the store yet ({url}); `ratchet launch` runs one"
        if as_json:
            print(json.dumps(history_json([]), indent=2))
            err.print(empty, highlight=False)
        else:
            console.print(empty, highlight=False)
        return
    if as_json:
        print(json.dumps(history_json(found), indent=2))
        return
    console.print(history_view(found))


@app.command()
def weekly(
    target: Annotated[str, typer.Argument(help="Target name, as the store knows it (`ratchet history`).")],
    out: Annotated[Path | None, typer.Option(help="Folder for the files (default: the reports folder).")] = None,
    cron: Annotated[
        str | None,
        typer.Option(help="Instead: write and post it on a timetable, e.g. '0 9 * * 1' (a Temporal Schedule)."),
    ] = None,
    playbook: Annotated[
        Path | None, typer.Option("--playbook", "-p", help="With --cron: the playbook whose alerts: webhook posts it.")
    ] = None,
) -> None:
    """The weekly report of a target across its campaigns: baseline p95 trends over 7/30/90 days, a 30-day
    forecast, the changes kept and the findings left open; HTML and Markdown. Reads the store only; with
    --cron, a schedule writes it and posts its summary to the playbook's webhook (`ratchet schedule list`)."""
    from datetime import UTC, datetime

    from ratchet.report.weekly import weekly_report, write_weekly
    from ratchet.store.engine import session_for

    settings = get_settings()
    if cron is not None:
        if playbook is None:
            err.print("[red]--cron needs --playbook: the playbook whose alerts: webhook_url posts the report[/]")
            raise typer.Exit(EXIT_BAD_INPUT)
        _load_or_exit(load_playbook, playbook)

        async def go(client: Any) -> int:
            from ratchet import schedules

            name, made = await schedules.create_weekly(
                client, settings, target_name=target, playbook_file=playbook, cron=cron
            )
            console.print(f"schedule {name} created ({made}): {cron}")
            return EXIT_OK

        raise typer.Exit(_client_command(go)())
    now = datetime.now(UTC)
    try:
        with session_for(settings.resolved_store_url) as session:
            report = weekly_report(session=session, target=target, now=now)
    except NotFoundError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_NOT_FOUND) from None
    html, markdown = write_weekly(report, out or settings.reports_dir)
    console.print(report.summary(), highlight=False)
    console.print(f"written: {html}, {markdown}", highlight=False)


# ---------------------------------------------------------------- files


def _load_or_exit(loader: Callable[[Path], T], path: Path) -> T:
    """Load a playbook or target; on a bad file print what is wrong and exit 2."""
    try:
        loaded = loader(path)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    _warn_of_short_secrets(path)
    return loaded


def _warn_of_short_secrets(path: Path) -> None:
    """Say which secrets the file used travel as written: too short to mask, and no payload key encrypts them."""
    from ratchet import secrets
    from ratchet.temporal.codecs import PayloadKeyError, configured_keys

    try:
        if configured_keys():
            return
    except PayloadKeyError:
        return  # said when a client or worker starts
    for name in secrets.too_short_to_mask():
        err.print(
            f"[yellow]{path}: warning: {name}'s value is under {secrets.MIN_MASKED_LENGTH} characters, too short "
            "to keep out of Temporal's history (masking it would garble other text): use a longer secret, or "
            "encrypt payloads (RATCHET_PAYLOAD_KEYS)[/]",
            highlight=False,
        )


def _check_databases_or_exit(path: Path, target: Any) -> None:
    from ratchet.config.loading import check_databases

    try:
        check_databases(path, target)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _validate(path: Path, loader: Callable[[Path], Any], kind: str) -> None:
    loaded = _load_or_exit(loader, path)
    console.print(f"{path}: valid {kind} {loaded.name!r}")


@playbook_app.command("validate")
def playbook_validate(path: Annotated[Path, typer.Argument(help="Playbook YAML file.")]) -> None:
    """Check a playbook; errors name the line, the field and what is valid."""
    _validate(path, load_playbook, "playbook")


@target_app.command("validate")
def target_validate(path: Annotated[Path, typer.Argument(help="Target YAML file.")]) -> None:
    """Check a target file; errors name the line, the field and what is valid. Its databases are opened
    read-only to check that they are there."""
    target = _load_or_exit(load_target, path)
    _check_databases_or_exit(path, target)
    console.print(f"{path}: valid target {target.name!r}")


@playbook_app.command("schema")
def playbook_schema(
    out: Annotated[Path, typer.Option(help="Folder for the JSON Schemas.")] = Path("playbooks/schema"),
) -> None:
    """Write JSON Schemas of playbooks and targets for editors."""
    from ratchet.config.schema import write_schemas

    for path in write_schemas(out):
        console.print(f"wrote {path}")


# ---------------------------------------------------------------- demo


@app.command()
def demo(
    auto_approve: Annotated[bool, typer.Option(help="Approve every gate without asking.")] = False,
    playbook: Annotated[Path, typer.Option(help="Playbook to run.")] = Path("playbooks/web-api.yaml"),
    shop_port: Annotated[int, typer.Option(help="Port of the demo shop.")] = 8800,
) -> None:
    """Run a whole campaign on the demo shop: server, worker, shop, campaign, report."""
    from ratchet.cli.demo import run_demo

    try:
        code = run_demo(console, playbook=playbook, auto_approve=auto_approve, shop_port=shop_port)
    except RatchetError as exc:  # e.g. the Temporal port taken by another program: say so, no traceback
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    raise typer.Exit(code)


@app.command("demo-workflows")
def demo_workflows(
    auto_approve: Annotated[bool, typer.Option(help="Approve every gate without asking.")] = False,
    playbook: Annotated[Path, typer.Option(help="Playbook to run.")] = Path("playbooks/workflows.yaml"),
    admin_port: Annotated[int, typer.Option(help="Port of the pipeline's admin API.")] = 8820,
) -> None:
    """Run a whole campaign on the example document pipeline, a Temporal workflow application: server,
    worker, pipeline, campaign, report."""
    from ratchet.cli.demo import run_workflows_demo

    try:
        code = run_workflows_demo(console, playbook=playbook, auto_approve=auto_approve, admin_port=admin_port)
    except RatchetError as exc:
        err.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ratchet` command.

    It ends the process with os._exit once the command is done: the Temporal client's native threads can
    abort the interpreter while it finalizes ("PyGILState_Release: thread state … must be current",
    temporalio/sdk-python#300, about 1 run in 40 here), which would turn a finished command into exit 134.
    """
    code = 0
    try:
        app(args=argv)  # standalone: usage errors are printed and every ending raises SystemExit
    except SystemExit as exiting:
        code = exiting.code if isinstance(exiting.code, int) else (0 if exiting.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
