"""`discover eval`, `discover baselines`, `discover tasks`: score programs outside a campaign."""

from __future__ import annotations

import json
import math
import time
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from discover.errors import UserError

console = Console()
_SHORT = {"sgd_momentum": "sgd-m"}

TIER_HELP = ("search (picks parents), validation (decides what is announced) or test (reported only); "
             "`discover tasks` lists each tier's tasks")
SuiteOpt = typer.Option("search", "--tier", "--suite", help=TIER_HELP)
TiersOpt = typer.Option([], "--tier", "--suite", help=TIER_HELP + "; repeatable (default: all three)")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (auto: cuda if available)")
WorkersOpt = typer.Option(None, "--workers", help="sandbox worker processes (default: CPU cores, or one per core per GPU, at most 8 per GPU)")
JsonOpt = typer.Option(False, "--json", help="print machine-readable JSON instead of tables")
StepsScaleOpt = typer.Option(1.0, "--steps-scale", min=0.05, max=4.0, help="multiply every task's step budget")


TasksOpt = typer.Option([], "--task", help="only this task, NAME or NAME@VARIANT (repeatable); default: the tier's tasks")
TIER_SEEDS = {"search": (100, 101), "validation": (200, 201, 202), "test": (300, 301)}
"""Fresh measurement seeds per tier (the campaign's measure, confirm and test seeds)."""


def _check_tier(tier: str) -> None:
    from sandbox.tasks import TIERS

    if tier not in TIERS and tier != "all":
        hint = " (the held-out suite became the test tier)" if tier == "heldout" else ""
        raise UserError(f"unknown tier {tier!r}{hint}: choose {', '.join(TIERS)} or all")


def _task_specs(only: list[str]) -> list:
    """The tasks named by ``--task`` (``name`` or ``name@variant``), checked before anything runs."""
    from sandbox.tasks import get_task

    tasks = []
    for spec in only:
        try:
            tasks.append(get_task(spec))
        except KeyError:
            raise UserError(f"unknown task {spec.split('@')[0]!r}; `discover tasks` lists them") from None
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return tasks


def _suite_tasks(suite: str, only: list[str]) -> list:
    from sandbox.tasks import suite as suite_tasks

    _check_tier(suite)
    return _task_specs(only) or suite_tasks(suite)


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
    from sandbox.jobbound import TimeBoundExecutor
    from sandbox.runcache import RunCache

    device = resolve_device(device)
    base = TIER_SEEDS.get(suite, (100,))[0]
    measure = tuple(range(base, base + seeds)) if seeds else TIER_SEEDS.get(suite, (100, 101))
    settings = EvalSettings(suite=suite, tasks=tasks, measure_seeds=measure, device=device, screen=screen,
                            steps_scale=steps_scale)
    options = {"device": device}
    if workers:
        options["size"] = workers
    # A slow candidate is stopped at a multiple of tuned AdamW's time, not after 300 s per job.
    return Evaluator(TimeBoundExecutor(make_executor("local", **options)), RunCache(), settings)


def _fmt(x: float | None, spec: str = ".3g") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else "nan"
    return format(x, spec)


def eval_command(
    program: str = typer.Argument(..., help="candidate file, reference name (adamw) or archived program "
                                            "(campaign_dir:ID, ID or best)"),
    tier: list[str] = TiersOpt,
    seeds: Optional[int] = typer.Option(None, "--seeds", min=1, max=16,
                                        help="fresh measurement seeds per task (default: 2; 3 on validation)"),
    device: str = DeviceOpt,
    workers: Optional[int] = WorkersOpt,
    steps_scale: float = StepsScaleOpt,
    task: list[str] = TasksOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Score one program on the search, validation and test tiers: speed-up to tuned AdamW's
    validation target per task, the training-loss speed-up beside it, and every baseline."""
    from sandbox.contract import CandidateError, load_program
    from sandbox.tasks import TIERS

    tiers = list(dict.fromkeys(tier)) or (["search"] if task else list(TIERS))
    for name in tiers:
        _check_tier(name)
    if task and len(tiers) > 1:
        raise UserError("--task picks the tasks of one tier: give a single --tier with it")
    explicit = _task_specs(task)
    source, label = _read_source(program)
    try:
        load_program(source)  # a bad program fails here, in one clear line, before any worker starts
    except CandidateError as exc:
        if as_json:  # scripts get the failure as data too (the line on stderr and exit code 2 stay)
            print(json.dumps({"program": label, "failure": {"reason": exc.reason, "message": exc.message,
                                                            "line": exc.line}}, indent=2))
        raise
    results = {}
    for name in tiers:
        tasks = explicit or _suite_tasks(name, [])
        evaluator = _evaluator(device, workers, seeds, steps_scale, suite=name, tasks=tuple(t.key for t in tasks))
        try:
            with _progress(as_json) as progress:
                bar = progress.add_task(f"{label}: {name} tier", total=len(tasks))
                done = _TaskLines(progress, bar, f"{label} on the {name} tier", len(tasks))
                results[name] = evaluator.evaluate(source, suite=name, stage="full", on_task=done.scored)
        finally:
            evaluator.executor.close()
        if results[name].failure:
            break
    failed = next((r for r in results.values() if r.failure), None)
    if as_json:
        payload = {"program": label, "tiers": {n: r.to_dict() for n, r in results.items()},
                   "verdict": None if failed else _verdict(results)}
        print(json.dumps(payload, indent=2, default=_json_default))
        raise typer.Exit(1 if failed else 0)
    if failed:
        reason, message = failed.failure
        console.print(f"[bold red]{label} failed[/] ([bold]{reason}[/]): {message}")
        raise typer.Exit(1)
    for name, result in results.items():
        _print_tier(label, name, result, evaluator.baseline_names())
    if len(results) > 1:
        console.print("  ".join(f"{n} [bold]{r.fitness:.3f}[/] ± {r.fitness_spread:.3f}" for n, r in results.items()))
    verdict = _verdict(results)
    if verdict:
        console.print(verdict)


def _verdict(results: dict) -> str | None:
    """The announce rule in words, when the validation tier was scored."""
    from sandbox.evaluate import beats_adamw

    val = results.get("validation")
    if val is None:
        return None
    if beats_adamw(val.fitness, val.fitness_spread):
        return (f"beats tuned AdamW on the validation tier ({val.fitness:.3f} ± {val.fitness_spread:.3f} excludes 1.0): "
                "a campaign would announce it, after its long-horizon check")
    return (f"does not beat tuned AdamW on the validation tier ({val.fitness:.3f} ± {val.fitness_spread:.3f}): "
            "a campaign would not announce it")


def _print_tier(label: str, tier: str, result, baselines: tuple[str, ...]) -> None:
    others = [b for b in baselines if b != "adamw"]
    table = Table(title=f"{label} on the {tier} tier ({len(next(iter(result.tasks.values())).seed_scores)} fresh seeds); "
                        "score = speed-up to tuned AdamW's validation target",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  collapse_padding=True)  # fits 80 columns with three baselines
    table.add_column("task", no_wrap=True, min_width=len(max(result.tasks, key=len, default="task")))
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("train", justify="right", no_wrap=True)
    table.add_column("best lr", justify="right")
    table.add_column("val", justify="right", no_wrap=True, min_width=7)
    table.add_column("test", justify="right", no_wrap=True, min_width=6)
    for name in others:
        table.add_column(f"vs {_SHORT.get(name, name)}", justify="right")
    for name, t in result.tasks.items():
        lr = _fmt(t.best_lr, ".2g") + ("[yellow]*[/]" if t.lr_at_edge else "")
        metric = "-" if t.test_metric is None else f"{_fmt(t.test_metric, '.3g')}"
        score = f"{t.score:.2f}x" + ("" if t.status == "ok" else f" [red]{t.status}[/]")
        train = "-" if t.train_score is None else f"{t.train_score:.2f}x"
        table.add_row(name, score, train, lr, _fmt(t.val_final, ".3g"), metric,
                      *[f"{t.vs_baselines.get(b, float('nan')):.2f}x" for b in others])
    console.print(table)
    console.print("train = training-loss speed-up; val = final validation value (target: tuned AdamW's best); "
                  "test = the task's test metric; vs X = speed-up to tuned X's target", style="dim")
    console.print(f"{tier} fitness (geometric mean over tasks): [bold]{result.fitness:.3f}[/] "
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
    evaluator = _evaluator(device, workers, steps_scale=steps_scale, suite=suite, tasks=tuple(t.key for t in tasks))
    try:
        with _progress(as_json) as progress:
            bar = progress.add_task("tuning baselines", total=len(tasks))
            lines = _TaskLines(progress, bar, f"baselines on the {suite} tier", len(tasks))
            table_data = evaluator.baseline_table(suite, progress=lines.starting)
            lines.starting(None)
    finally:
        evaluator.executor.close()
    if as_json:
        print(json.dumps({task: {b: r.__dict__ for b, r in row.items()} for task, row in table_data.items()},
                         indent=2, default=_json_default))
        return
    table = Table(title=f"Tuned baselines on the {suite} tier (score = speed-up to tuned AdamW's validation target)",
                  title_justify="left")
    table.add_column("task")
    for name in evaluator.baseline_names():
        table.add_column(name, justify="right")
    for task, row in table_data.items():
        cells = []
        for name in evaluator.baseline_names():
            r = row[name]
            edge = "[yellow]*[/]" if r.lr_at_edge else ""
            cells.append(f"{r.score:.2f}x  lr {r.best_lr:.2g}{edge}\nval {_fmt(r.val_final, '.3g')}")
        table.add_row(task, *cells)
    console.print(table)
    console.print(f"[yellow]*[/] best lr at the edge of the grid. Results are cached in {evaluator.cache.path}.")


def tasks_command(as_json: bool = JsonOpt) -> None:
    """List the proxy tasks: family, the tiers (and variants) each appears in, budget, the
    validation and test metrics, and tuned AdamW's validation target where it is already known."""
    from sandbox.evaluate import cached_target
    from sandbox.runcache import RunCache
    from sandbox.tasks import FAMILIES, TIERS, UNTIERED, get_task, parse_task_spec, task_names

    cache = RunCache()
    rows = []
    for name in task_names():
        task = get_task(name)
        placements = []
        for tier, specs in TIERS.items():
            for spec in specs:
                spec_name, variant = parse_task_spec(spec)
                if spec_name == name:
                    placements.append(tier if variant == 0 else f"{tier}@{variant}")
        rows.append({"name": name, "family": task.family, "tiers": placements, "steps": task.steps,
                     "schedule": task.schedule, "version": task.version, "val_metric": task.val_metric_name,
                     "test_metric": task.test_metric_name, "target": cached_target(cache, task),
                     "variant_space": {k: list(v) for k, v in task.variant_space.items()},
                     "description": task.description, "untiered": UNTIERED.get(name)})
    if as_json:
        print(json.dumps(rows, indent=2, default=_json_default))
        return
    table = Table(title=f"Proxy tasks ({len(rows)} in {len({r['family'] for r in rows})} families)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col, justify in (("name", "left"), ("family", "left"), ("tiers", "left"), ("steps", "right"),
                         ("target", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "tiers")
    for r in rows:
        tiers = " ".join(t.replace("validation", "val") for t in r["tiers"]) or "-"
        table.add_row(r["name"], r["family"], tiers, str(r["steps"]), _fmt(r["target"], ".3g"))
    console.print(table)
    console.print("tiers: search picks parents; validation (variants @1) decides what is announced; test (@2) is "
                  "reported only. target = tuned AdamW's validation target on the default workload (- = not "
                  "computed yet: `discover baselines`). `discover tasks --json` has descriptions and variant spaces.",
                  style="dim")
    console.print("families: " + "; ".join(f"{k} ({sum(r['family'] == k for r in rows)})" for k in FAMILIES), style="dim")
    for r in rows:
        if r["untiered"]:  # in no tier: say why (`discover eval --task` still runs it)
            console.print(f"not in a tier: {r['name']}: {r['untiered']}", style="dim", soft_wrap=True, markup=False)


class _TaskLines:
    """One line on stderr per finished task (``[3/24] ...``) above a progress bar: minutes of
    work are never silent, in a terminal or a log (stdout keeps only the results)."""

    def __init__(self, progress: Progress, bar, what: str, total: int):
        self.progress, self.bar, self.what, self.total = progress, bar, what, total
        self.done = 0
        self.current: str | None = None
        self.started = self.since = time.perf_counter()

    def _line(self, text: str) -> None:
        self.done += 1
        now = time.perf_counter()
        if not self.progress.disable:  # --json: the caller asked for data only
            self.progress.console.print(f"[{self.done}/{self.total}] {self.what}: {text} "
                                        f"({now - self.since:.0f} s, {now - self.started:.0f} s in all)",
                                        highlight=False, soft_wrap=True)
        self.since = now
        self.progress.update(self.bar, completed=self.done)

    def scored(self, task: str, result) -> None:
        """``Evaluator.evaluate``'s ``on_task``: a task's result is in."""
        status = "" if result.status == "ok" else f" {result.status}"
        self._line(f"{task} {result.score:.2f}x{status}")

    def starting(self, label: str | None) -> None:
        """``Evaluator.baseline_table``'s ``progress`` names the ``task: baseline`` it starts;
        the first baseline of a task tunes them all there, so a line is printed per task, when
        the next task starts (None: the last one is done)."""
        task = None if label is None else label.split(":")[0]
        if task == self.current:
            return
        if self.current is not None:
            self._line(f"{self.current}: baselines tuned")
        self.current = task
        if task is not None:
            self.progress.update(self.bar, description=f"tuning baselines on {task}")


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
