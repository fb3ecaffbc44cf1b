"""`ratchet workflows analyze`: where the executions of a Temporal workflow type spend their time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

workflows_app = typer.Typer(help="Temporal workflows of yours: where their executions spend their time.")
console = Console()
err = Console(stderr=True)


def _ms(figures: dict[str, float] | None, key: str) -> str:
    return "" if not figures else f"{figures[key]:,.1f}"


def steps_table(summary: dict[str, Any], workflow_type: str) -> Table:
    """The steps, most of the critical path first: queue wait and work percentiles, retries, failures."""
    table = Table(
        title=f"{workflow_type}: {summary['executions']} execution(s), total p50 {_ms(summary['total_ms'], 'p50')} ms, "
        f"p95 {_ms(summary['total_ms'], 'p95')} ms"
    )
    for column in (
        "step",
        "per exec",
        "wait p50",
        "wait p95",
        "work p50",
        "work p95",
        "work p99",
        "retried",
        "failed",
        "critical path",
    ):
        table.add_column(column, justify="left" if column == "step" else "right")
    for step in summary["steps"]:
        failed = sum(n for outcome, n in step["outcomes"].items() if outcome not in ("completed", "canceled"))
        table.add_row(
            step["step"],
            f"{step['per_execution']:g}",
            _ms(step["wait_ms"], "p50"),
            _ms(step["wait_ms"], "p95"),
            _ms(step["work_ms"], "p50"),
            _ms(step["work_ms"], "p95"),
            _ms(step["work_ms"], "p99"),
            str(step["attempts"]["retried"]),
            str(failed),
            f"{step['critical_path_share']:.0%}",
        )
    return table


@workflows_app.command("analyze")
def analyze(
    workflow_type: Annotated[str, typer.Option("--type", help="The workflow type to analyse.")],
    since: Annotated[str | None, typer.Option(help="Only executions closed within this long: 7d, 12h, 30m.")] = None,
    last: Annotated[int | None, typer.Option(min=1, help="Only the newest N closed executions.")] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Temporal namespace (default: RATCHET_TEMPORAL_NAMESPACE).")
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            help="Compare each step's variants: an input field (e.g. provider), task_queue, summary (the "
            "activity's) or search_attribute:NAME."
        ),
    ] = None,
    cost_field: Annotated[
        str | None, typer.Option(help="With --variant: a numeric result field, the call's cost.")
    ] = None,
    weights: Annotated[
        str | None,
        typer.Option(help="With --variant: performance,cost weights of the recommendation (default 0.6,0.4)."),
    ] = None,
    playbook: Annotated[
        Path | None,
        typer.Option(
            help="A playbook whose workflows: section gives the variant, cost field, prices per call and weights "
            "(the flags override it)."
        ),
    ] = None,
    save_baseline: Annotated[
        bool,
        typer.Option("--save-baseline", help="Keep this analysis as the type's baseline (the first is kept anyway)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Also write an HTML page here.")] = None,
) -> None:
    """Read the event histories of a workflow type's closed executions (any Temporal cluster: address and
    namespace as for Ratchet's own) and report per step its queue wait and work percentiles, retries, failures
    and share of the critical path, and how the executions' time splits. The steps are kept as Parquet."""
    from ratchet.cli.app import _run
    from ratchet.config.durations import parse_duration
    from ratchet.config.loading import load_playbook
    from ratchet.config.playbook import WorkflowAnalysis
    from ratchet.errors import ConfigError
    from ratchet.settings import get_settings
    from ratchet.temporal.client import connect
    from ratchet.workflow_analytics.bottlenecks import find_bottlenecks
    from ratchet.workflow_analytics.capacity import queue_capacity
    from ratchet.workflow_analytics.comparisons import compare_variants
    from ratchet.workflow_analytics.facts import store_steps
    from ratchet.workflow_analytics.fetch import fetch_executions
    from ratchet.workflow_analytics.history_cache import HistoryCache
    from ratchet.workflow_analytics.prediction import analyze_time
    from ratchet.workflow_analytics.report import render_workflows_html
    from ratchet.workflow_analytics.summary import against_baseline, summarize

    if since is not None and last is not None:
        err.print("[red]--since and --last: give one of them, not both[/]")
        raise typer.Exit(2)
    try:
        window = parse_duration(since) if since is not None else None
    except ValueError as exc:
        err.print(f"[red]--since: {exc}[/]")
        raise typer.Exit(2) from None
    rules = WorkflowAnalysis()
    if playbook is not None:
        try:
            rules = load_playbook(playbook).workflows
        except ConfigError as exc:
            err.print(f"[red]{exc}[/]", highlight=False)
            raise typer.Exit(2) from None
    variant = variant or rules.variant
    cost_field = cost_field or rules.cost_field
    performance, cost = rules.weights.performance, rules.weights.cost
    if weights is not None:
        try:
            performance, cost = (float(w) for w in weights.split(","))
            if performance < 0 or cost < 0 or performance + cost <= 0:
                raise ValueError
        except ValueError:
            err.print(f"[red]--weights: {weights!r} is not two non-negative numbers such as 0.6,0.4[/]")
            raise typer.Exit(2) from None
    settings = get_settings()
    if namespace:
        settings = settings.model_copy(update={"temporal_namespace": namespace})

    async def read() -> list[Any]:
        client = await connect(settings)
        with Progress(console=err, transient=True, disable=as_json or not err.is_terminal) as progress:
            task = progress.add_task("reading histories", total=None)
            return await fetch_executions(
                client,
                workflow_type,
                since=window,
                last=last,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
                cache=HistoryCache(settings.workflow_steps_dir, workflow_type),
            )

    executions = _run(read())
    if not executions:
        err.print(f"[yellow]no closed execution of {workflow_type} in namespace {settings.temporal_namespace}[/]")
        raise typer.Exit(3)
    summary = summarize(executions)
    bottlenecks = find_bottlenecks(executions)
    timing = analyze_time(executions)
    total_weight = performance + cost
    comparisons = (
        compare_variants(
            executions,
            variant,
            cost_field=cost_field,
            weights=(performance / total_weight, cost / total_weight),
            prices=rules.prices,
        )
        if variant
        else []
    )
    stored: Path = store_steps(settings.workflow_steps_dir, workflow_type, executions)
    baseline_file = stored.parent / "baseline.json"
    baseline = json.loads(baseline_file.read_text()) if baseline_file.is_file() else None
    changes = against_baseline(summary, baseline) if baseline is not None else []
    if baseline is None or save_baseline:
        baseline_file.write_text(json.dumps(summary | {"saved_from": str(stored)}, indent=2))
    document = {
        "workflow_type": workflow_type,
        **summary,
        "bottlenecks": [b.as_json() for b in bottlenecks],
        "comparisons": comparisons,
        "capacity": queue_capacity(
            executions, {b.evidence["task_queue"] for b in bottlenecks if b.type == "resource_exhaustion"}
        ),
        "prediction": timing.prediction,
        "anomalies": timing.anomalies,
        "baseline": {"file": str(baseline_file), "from": (baseline or {}).get("saved_from"), "changes": changes},
        "steps_file": str(stored),
    }
    if html is not None:
        html.write_text(render_workflows_html(workflow_type, executions, document))
        err.print(f"HTML: {html}")
    if as_json:
        print(json.dumps(document, indent=2))
        return
    console.print(steps_table(summary, workflow_type))
    split = summary["time_split"]
    console.print(
        f"Along the critical paths: {split['work']:.0%} work, {split['queue_wait']:.0%} waiting in task queues, "
        f"{split['timers']:.0%} timers and waits for answers, {split['workflow']:.0%} the workflow's own tasks. "
        f"Steps kept in {stored}."
    )
    if not bottlenecks:
        console.print(
            "No bottleneck: no step dominates, waits, is limited, repeats itself or grows faster than linear."
        )
    for b in bottlenecks:
        console.print(f"[bold]{b.severity} {b.type}[/] {b.summary}", highlight=False)
    slower = [c for c in changes if (c["work_ms_p95_ratio"] or 0) >= 1.2 or (c["wait_ms_p95_ratio"] or 0) >= 1.2]
    for change in slower:
        console.print(
            f"[yellow]slower than the baseline[/] {change['step']}: work p95 x{change['work_ms_p95_ratio']}, "
            f"wait p95 x{change['wait_ms_p95_ratio']} ({baseline_file})",
            highlight=False,
        )
    for comparison in comparisons:
        console.print(f"{comparison['step']} by {comparison['field']}: use {comparison['why']}", highlight=False)
    for queue in document["capacity"]:
        console.print(
            f"Task queue {queue['task_queue']}: {queue['bound']} {queue['executions_per_hour']:,} executions an hour "
            f"({queue['peak_running']} step(s) ran at once at most, {queue['work_ms_per_execution']:,.0f} ms of work "
            "per execution)",
            highlight=False,
        )
    if timing.prediction is not None:
        p = timing.prediction
        console.print(
            f"Execution time predicted from {', '.join(p['features'])}: off by {p['cross_validated_mae_ms']:,.0f} ms "
            f"on average on executions the model did not see ({p['relative_error']:.0%} of the mean)."
        )
        if p["steps"]:
            console.print(
                "Each step's time predicted: "
                + ", ".join(f"{s['step']} {s['relative_error']:.0%} off" for s in p["steps"]),
                highlight=False,
            )
    for anomaly in timing.anomalies:
        console.print(f"[yellow]anomalous[/] {anomaly['workflow_id']}: {anomaly['why']}", highlight=False)
