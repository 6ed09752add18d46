"""`discover eval`, `discover baselines`, `discover tasks`: score programs outside a campaign."""

from __future__ import annotations

import json
import math
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from discover.errors import UserError

console = Console()
_SHORT = {"sgd_momentum": "sgd-m"}

SuiteOpt = typer.Option("search", "--suite", help="search (used for selection), heldout (generalisation) or all")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: cuda if available)")
WorkersOpt = typer.Option(None, "--workers", help="sandbox worker processes (default: CPU cores, or one per GPU)")
JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON instead of tables")
StepsScaleOpt = typer.Option(1.0, "--steps-scale", min=0.05, max=4.0, help="multiply every task's step budget")


TasksOpt = typer.Option([], "--task", help="only this task (repeatable); default: every task of the suite")


def _suite_tasks(suite: str, only: list[str]) -> list:
    from sandbox.tasks import get_task, task_names
    from sandbox.tasks import suite as suite_tasks

    if suite not in ("search", "heldout", "all"):
        raise UserError(f"unknown suite {suite!r}: choose search, heldout or all")
    unknown = [t for t in only if t not in task_names()]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; `discover tasks` lists them")
    return [get_task(t) for t in only] if only else suite_tasks(suite)


def _read_source(ref: str) -> tuple[str, str]:
    """A candidate's source and a label: a file, a reference name (``adamw``) or an archived
    program (``campaign_dir:ID``, ``ID`` or ``best``), resolved as `discover export` resolves them."""
    from archive.export import ExportError, resolve_source

    try:
        found = resolve_source(ref)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    return found.source, found.origin.removeprefix("reference ")


def _evaluator(device: str, workers: Optional[int], seeds: Optional[int] = None, steps_scale: float = 1.0,
               screen: bool = False, suite: str = "search", tasks: tuple[str, ...] = ()):
    from discover.devices import resolve_device
    from sandbox.evaluate import EvalSettings, Evaluator
    from sandbox.executor import make_executor
    from sandbox.runcache import RunCache

    device = resolve_device(device)
    measure = tuple(range(100, 100 + seeds)) if seeds else (100, 101)
    settings = EvalSettings(suite=suite, tasks=tasks, measure_seeds=measure, device=device, screen=screen,
                            steps_scale=steps_scale)
    options = {"device": device}
    if workers:
        options["size"] = workers
    return Evaluator(make_executor("local", **options), RunCache(), settings)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    return format(x, spec)


def eval_command(
    program: str = typer.Argument(..., help="candidate file, reference name (adamw) or archived program "
                                            "(campaign_dir:ID, ID or best)"),
    suite: str = SuiteOpt,
    seeds: int = typer.Option(2, "--seeds", min=1, max=16, help="fresh measurement seeds per task"),
    device: str = DeviceOpt,
    workers: Optional[int] = WorkersOpt,
    steps_scale: float = StepsScaleOpt,
    task: list[str] = TasksOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Score one program on a suite: speed-up over tuned AdamW per task, vs every baseline."""
    from sandbox.contract import load_program

    tasks = _suite_tasks(suite, task)
    source, label = _read_source(program)
    load_program(source)  # a bad program fails here, in one clear line, before any worker starts
    evaluator = _evaluator(device, workers, seeds, steps_scale, suite=suite, tasks=tuple(t.name for t in tasks))
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task(f"evaluating {label}", total=len(tasks))
            result = evaluator.evaluate(source, suite=suite, stage="full",
                                        on_task=lambda name, _: progress.advance(bar))
    finally:
        evaluator.executor.close()
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=_json_default))
        raise typer.Exit(1 if result.failure else 0)
    if result.failure:
        reason, message = result.failure
        console.print(f"[bold red]{label} failed[/] ([bold]{reason}[/]): {message}")
        raise typer.Exit(1)
    others = [b for b in evaluator.baseline_names() if b != "adamw"]
    table = Table(title=f"{label} on the {suite} suite ({len(evaluator.settings.measure_seeds)} fresh seeds); "
                        "score = speed-up over tuned AdamW", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)  # fits 80 columns with three baselines
    table.add_column("task", no_wrap=True, min_width=len(max(result.tasks, key=len, default="task")))
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("best lr", justify="right")
    table.add_column("loss", justify="right", no_wrap=True, min_width=8)
    table.add_column("test", justify="right", no_wrap=True, min_width=7)
    for name in others:
        table.add_column(f"vs {_SHORT.get(name, name)}", justify="right")
    for name, t in result.tasks.items():
        lr = _fmt(t.best_lr, ".2g") + ("[yellow]*[/]" if t.lr_at_edge else "")
        metric = "-" if t.test_metric is None else f"{_fmt(t.test_metric, '.3g')}"
        score = f"{t.score:.2f}x" + ("" if t.status == "ok" else f" [red]{t.status}[/]")
        table.add_row(name, score, lr, _fmt(t.final_loss, ".3g"), metric,
                      *[f"{t.vs_baselines.get(b, float('nan')):.2f}x" for b in others])
    console.print(table)
    console.print("loss = final loss; test = the task's test metric (`discover tasks`); vs X = speed-up over tuned X", style="dim")
    console.print(f"fitness (geometric mean over tasks): [bold]{result.fitness:.3f}[/] "
                  f"± {result.fitness_spread:.3f} over seeds  (1.0 = tuned AdamW; "
                  f"{result.runs_executed} runs executed, {result.runs_cached} from cache, {result.seconds:.0f} s)")
    edges = [n for n, t in result.tasks.items() if t.lr_at_edge]
    if edges:
        console.print(f"[yellow]*[/] the best lr sits at the edge of the LR grid on {', '.join(edges)}: "
                      "the grid may be too narrow for this program there")


def baselines_command(
    suite: str = SuiteOpt,
    device: str = DeviceOpt,
    workers: Optional[int] = WorkersOpt,
    steps_scale: float = StepsScaleOpt,
    task: list[str] = TasksOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Compute (or show, when cached) the tuned baselines: AdamW, Adam, SGD-momentum, Lion."""
    tasks = _suite_tasks(suite, task)
    evaluator = _evaluator(device, workers, steps_scale=steps_scale, suite=suite, tasks=tuple(t.name for t in tasks))
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task("baselines", total=len(tasks) * len(evaluator.baseline_names()))
            table_data = evaluator.baseline_table(suite, progress=lambda label: progress.update(
                bar, advance=1, description=f"baselines: {label}"))
    finally:
        evaluator.executor.close()
    if as_json:
        print(json.dumps({task: {b: r.__dict__ for b, r in row.items()} for task, row in table_data.items()},
                         indent=2, default=_json_default))
        return
    table = Table(title=f"Tuned baselines on the {suite} suite (score = speed-up over tuned AdamW)",
                  title_justify="left")
    table.add_column("task")
    for name in evaluator.baseline_names():
        table.add_column(name, justify="right")
    for task, row in table_data.items():
        cells = []
        for name in evaluator.baseline_names():
            r = row[name]
            edge = "[yellow]*[/]" if r.lr_at_edge else ""
            cells.append(f"{r.score:.2f}x  lr {r.best_lr:.2g}{edge}\nloss {_fmt(r.final_loss, '.3g')}")
        table.add_row(task, *cells)
    console.print(table)
    console.print(f"[yellow]*[/] best lr at the edge of the grid. Results are cached in {evaluator.cache.path}.")


def tasks_command(as_json: bool = JsonOpt) -> None:
    """List the proxy tasks, their suites, budgets and schedules."""
    from sandbox.tasks import SUITES, get_task, task_names

    rows = []
    for name in task_names():
        task = get_task(name)
        suites = [s for s, members in SUITES.items() if name in members]
        rows.append({"name": name, "suite": ",".join(suites), "steps": task.steps, "schedule": task.schedule,
                     "version": task.version, "test_metric": task.test_metric_name, "description": task.description})
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Proxy tasks", title_justify="left")
    for col, justify in (("name", "left"), ("suite", "left"), ("steps", "right"), ("schedule", "left"),
                         ("test metric", "left"), ("description", "left")):
        table.add_column(col, justify=justify, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["suite"], str(r["steps"]), r["schedule"], r["test_metric"], r["description"])
    console.print(table)


def _progress(quiet: bool) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True, disable=quiet)


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if hasattr(value, "__dict__"):
        return value.__dict__
    return str(value)


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("baselines")(baselines_command)
    app.command("tasks")(tasks_command)
