"""The Python API: run a campaign, score a program, load an optimizer, add your own tasks.

    import discover

    summary = discover.run_campaign("campaign.toml")            # or a dict, or a CampaignConfig
    results = discover.evaluate("best", tiers=["search", "validation"])
    print(results["validation"].fitness)                         # speed-up over tuned AdamW
    Optimizer = discover.load_optimizer("best")                  # a torch.optim.Optimizer class

Your own workloads: write a :class:`sandbox.tasks.Task` subclass in a module of its own (see
``examples/custom_task.py`` and the README's "Your own tasks"), then name the module in the
config (``evaluation.task_modules = ["my_tasks.py"]``) and the task in ``evaluation.tasks``,
or call :func:`load_task_module` / pass ``task_modules=`` to :func:`evaluate`. Candidate code
still runs only in the sandbox workers; each worker imports the module before it runs the task.

Every bad input raises :class:`~discover.errors.UserError` with a one-line message (the CLI
prints the same line and exits with code 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from archive.export import ExportError, load_optimizer, resolve_source
from discover.config import CampaignConfig, load_config
from discover.errors import UserError
from sandbox.tasks import Task, TaskModuleError, load_task_module, register_task

TIER_SEEDS: dict[str, tuple[int, ...]] = {"search": (100, 101), "validation": (200, 201, 202), "test": (300, 301)}
"""Fresh measurement seeds per tier: the campaign's measure, confirm and test seeds (as `discover eval`)."""


def run_campaign(config: CampaignConfig | Mapping[str, Any] | str | Path, *, preset: str | None = None,
                 on_event: Callable[[Any], None] | None = None):
    """Run a discovery campaign to the end of its budget and return its
    :class:`~discover.campaign.CampaignSummary` (``directory``, ``best_id``, ``best_fitness``,
    ``counts``, ``stop_reason``, ...). The archive is in ``summary.directory``.

    ``config``: a :class:`~discover.config.CampaignConfig`, a dict of the same fields as the TOML
    file (``{"budget": {"max_evaluations": 20}, "evaluation": {"tasks": ["my_task"]}}``) or the
    path of a TOML file. ``preset`` (``quick`` or ``standard``) fills what a dict or file leaves
    out. ``on_event`` receives every :class:`~discover.campaign.Event` (new programs, new bests).
    """
    from discover.campaign import Campaign

    if isinstance(config, CampaignConfig):
        cfg = load_config(None, preset=preset, overrides=[config.model_dump(mode="json", exclude_unset=True)]) \
            if preset else config
    elif isinstance(config, Mapping):
        cfg = load_config(None, preset=preset, overrides=[dict(config)])
    elif isinstance(config, (str, Path)):
        cfg = load_config(Path(config), preset=preset)
    else:
        raise UserError(f"config must be a CampaignConfig, a dict or a TOML path, got {type(config).__name__}")
    campaign = Campaign.create(cfg)
    if on_event is not None:
        campaign.on_event = on_event
    try:
        return campaign.run()
    finally:
        campaign.close()


def evaluate(program: str, tiers: str | Sequence[str] = ("search",), tasks: Sequence[str] = (),
             seeds: int | Sequence[int] | None = None, *, steps_scale: float = 1.0, device: str = "auto",
             workers: int | None = None, task_modules: Sequence[str] = ()) -> dict[str, Any]:
    """Score one program under the campaign's protocol; returns ``{tier: EvaluationResult}``.

    ``program``: program source text (anything with a newline), a candidate file (``path.py``),
    a reference name (``adamw``) or an archived program (``campaign_dir:ID``, ``ID`` or ``best``).
    ``tiers``: ``search``, ``validation`` and/or ``test``. ``tasks``: score on exactly these
    tasks (``NAME`` or ``NAME@VARIANT``) instead of the tier's; give one tier with it.
    ``seeds``: how many fresh measurement seeds (the tier's own seeds by default), or the seeds.
    ``task_modules``: modules of your own tasks to load first (see :func:`load_task_module`).

    Each result has ``fitness`` (geometric mean over tasks of the speed-up to tuned AdamW's
    validation target; 1.0 = as fast as tuned AdamW), ``fitness_spread`` and per-task
    ``tasks[name].score``. A program that breaks the contract or fails in training is not an
    error: its result has ``failure = (reason, message)`` and the remaining tiers are skipped.
    """
    from discover.devices import resolve_device
    from sandbox.contract import CandidateError, load_program
    from sandbox.evaluate import EvalSettings, Evaluator
    from sandbox.executor import make_executor
    from sandbox.jobbound import TimeBoundExecutor
    from sandbox.runcache import RunCache
    from sandbox.tasks import TIERS, get_task

    for ref in task_modules:
        try:
            load_task_module(ref)
        except TaskModuleError as exc:
            raise UserError(str(exc)) from None
    tier_list = [tiers] if isinstance(tiers, str) else list(dict.fromkeys(tiers))
    if not tier_list:
        raise UserError("give at least one tier: search, validation or test")
    for tier in tier_list:
        if tier not in TIERS:
            raise UserError(f"unknown tier {tier!r}: choose {', '.join(TIERS)}")
    if isinstance(tasks, str):
        tasks = [tasks]
    if tasks and len(tier_list) > 1:
        raise UserError("tasks= picks the tasks of one tier: give a single tier with it")
    for spec in tasks:
        try:
            get_task(spec)
        except (KeyError, ValueError) as exc:
            raise UserError(str(exc.args[0]) if exc.args else str(exc)) from None
    source = _program_source(program)
    try:
        load_program(source)
    except CandidateError:
        pass  # the evaluator reports it as a failed result, like any candidate failure
    device = resolve_device(device)
    options: dict[str, Any] = {"device": device}
    if workers:
        options["size"] = workers
    results: dict[str, Any] = {}
    for tier in tier_list:
        settings = EvalSettings(suite=tier, tasks=tuple(tasks), measure_seeds=_seeds(tier, seeds), device=device,
                                screen=False, steps_scale=steps_scale)
        evaluator = Evaluator(TimeBoundExecutor(make_executor("local", **options)), RunCache(), settings)
        try:
            results[tier] = evaluator.evaluate(source, suite=tier, stage="full")
        finally:
            evaluator.executor.close()
        if results[tier].failure:
            break
    return results


def _seeds(tier: str, seeds: int | Sequence[int] | None) -> tuple[int, ...]:
    if seeds is None:
        return TIER_SEEDS[tier]
    if isinstance(seeds, bool) or not isinstance(seeds, (int, Sequence)):
        raise UserError(f"seeds must be a count or a list of ints, got {seeds!r}")
    if isinstance(seeds, int):
        if not 1 <= seeds <= 16:
            raise UserError(f"seeds must be 1..16 fresh seeds, got {seeds}")
        return tuple(range(TIER_SEEDS[tier][0], TIER_SEEDS[tier][0] + seeds))
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise UserError(f"seeds must be a non-empty list of ints, got {list(seeds)!r}")
    return tuple(seeds)


def _program_source(program: str) -> str:
    """Source text as is; otherwise a file, reference or archived program, resolved as
    `discover eval` and `discover export` resolve them."""
    if not isinstance(program, str) or not program.strip():
        raise UserError("program must be source text, a .py file, a reference name or campaign_dir:ID")
    if "\n" in program:
        return program
    try:
        return resolve_source(program).source
    except ExportError as exc:
        raise UserError(str(exc)) from None


__all__ = ["CampaignConfig", "Task", "UserError", "evaluate", "load_config", "load_optimizer", "load_task_module",
           "register_task", "run_campaign"]
