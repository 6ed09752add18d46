"""Evaluate a candidate on a suite: LR grid, selection seeds, fresh measurement seeds, funnel.

The protocol (shared/DESIGN.md section 3), identical for candidates and baselines:

1. *Select*: train with every LR of the grid on the selection seeds; the best LR minimises the
   mean (over selection seeds) of the final validation value (the mean of the last three
   measurements). A best LR on the edge of the grid is flagged: the grid was too narrow there.
   Tuned AdamW, the reference, also tunes its weight decay (``REFERENCE_WEIGHT_DECAYS``).
2. *Measure*: train at the chosen LR on fresh seeds; the task score is the speed-up to the
   *validation target*, the best validation value tuned AdamW reaches within its budget (mean
   over its selection seeds), measured against tuned AdamW's own measured curve, and capped at
   "how far it got" when the candidate ends worse than AdamW beyond seed noise
   (:func:`sandbox.scoring.validation_score`, :func:`sandbox.scoring.end_value_cap`). The
   training-loss speed-up is reported beside it (``objective="train"`` scores on it instead:
   the protocol before validation targets, kept for comparison).
3. *Funnel*: a cheap screen (one seed, the first two tasks, the whole grid) first; a program whose
   screen fitness is clearly bad stops there. Then, inside selection, successive halving over the
   LR grid (``EvalSettings.halving``, :mod:`sandbox.halving`): on the tasks the screen covers, the
   screen's full-length seed-0 runs rank the LRs and only the better half runs the other seeds
   (*seed-ranked*); on every other task all configs train to a rung (1/4 of the budget) and only
   the better half of the LRs trains on (*rung*, in the worker job). The pick is the best LR
   among the survivors, judged as above. The same for candidates and baselines.

The LR grid is log-spaced, absolute and *the same for every program*: half-decade steps from
3e-5 to 3 by default (11 points), wide enough for Lion-like sign updates at the bottom and
SGD-momentum at the top. A program's own ``HPARAMS["lr"]`` is only its default for export; it
does not move the grid, so no baseline can be "badly tuned" relative to a candidate.

Untrusted code runs only in executor workers; this module sees raw losses and scores them.
Every run is cached by (normalised program hash, task, version, seed, lr, steps, device).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from sandbox import halving as halving_rules
from sandbox import scoring
from sandbox.contract import CandidateError, load_program, program_hash
from sandbox.halving import PRUNED, RECOMMENDED, Schedule
from sandbox.references import reference_source, with_hparams
from sandbox.runcache import RunCache, run_key
from sandbox.tasks import get_task, suite as suite_tasks, task_module_of
from sandbox.tasks.base import val_steps

BASELINES = ("adamw", "adam", "sgd_momentum", "lion")
"""Tuned baselines every candidate is compared with; AdamW is the reference for scores."""
REFERENCE_BASELINE = "adamw"
REFERENCE_WEIGHT_DECAYS = (0.01, 0.0)
"""Tuned AdamW tunes its weight decay beside its LR, as AlgoPerf's baselines do: its default
(0.01, first, so it wins ties) and none. A fixed decay pulls every parameter towards zero; where
the optimum is elsewhere (Rosenbrock's (1, 1), an L2-regularised softmax) that biased the
reference, and any rule without decay scored 2.6-3x on those tasks for it alone."""
DEFAULT_LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 3e-1, 1.0, 3.0)
"""Half-decade steps, identical for candidates and baselines."""
OBJECTIVES = ("val", "train")
"""What a task score measures: speed to tuned AdamW's validation target (the protocol), or the
training-loss speed-up (the protocol before validation targets, for comparisons)."""
END_POINTS = 3
"""Validation measurements averaged into a run's "final" value (damps the last point's noise)."""


@dataclass(frozen=True)
class EvalSettings:
    """How hard to evaluate. Defaults are the `standard` protocol."""

    suite: str = "search"
    tasks: tuple[str, ...] = ()  # non-empty: evaluate on exactly these tasks instead of the suite's
    validation_tasks: tuple[str, ...] = ()  # non-empty: the validation tier is exactly these tasks
    test_tasks: tuple[str, ...] = ()  # non-empty: the test tier is exactly these tasks
    selection_seeds: tuple[int, ...] = (0, 1)
    measure_seeds: tuple[int, ...] = (100, 101)
    confirm_seeds: tuple[int, ...] = (200, 201, 202)  # the validation tier's fresh seeds
    test_seeds: tuple[int, ...] = (300, 301)
    lr_grid: tuple[float, ...] = DEFAULT_LR_GRID
    screen: bool = True
    screen_tasks: tuple[str, ...] = ()  # empty: the suite's first two tasks
    screen_threshold: float = 0.3  # screen fitness below this stops the program
    # On the search tier (screen: noisy_quadratic, logreg_separable) no program of the 51 in
    # benchmarks/funnel.py whose full fitness reaches 0.8 screens below 0.3 (lowest: 0.664); the
    # screen (the whole grid, seed 0) stops 10 of the 51 and saves 13% of their run-steps.
    device: str = "cpu"
    job_timeout: float = 300.0
    steps_scale: float = 1.0  # multiply every task budget (quick demos use < 1)
    objective: str = "val"  # see OBJECTIVES
    halving: Schedule | None = RECOMMENDED
    """Successive halving inside LR selection (None: the whole grid on every selection seed).
    The rules (seed-ranked on the screened tasks, one rung at 1/4 keeping half on the others) are
    in ``Evaluator._select``; the screen's own selection, and the ``train`` objective, never halve.
    Simulated on the reference library's full-grid runs (``benchmarks/funnel.py --tiers
    search,validation,test``, 51 programs, 1,581 program-task pairs): 14 picks changed (0.9%), one
    with a measured task score below 0.95x the full grid's pick's (0.94x), no program's fitness
    moved across 0.8, 33.4% of the selection run-steps saved (search tier: 29.5%, 3 of 357 picks
    changed; the screened tasks' seed-0 runs count here, though the screen has paid for them).
    The search tier without rosenbrock (``funnel.py --limit 51``): 3 of 306 picks changed, 29.8% saved."""

    def grid(self, coarse: bool = False) -> list[float]:
        """The LR grid; ``coarse`` keeps every other point, ends included (the screen used it
        until it dropped a good program whose best LRs fell between them; benchmarks use it)."""
        grid = sorted(self.lr_grid)
        if not coarse or len(grid) <= 3:
            return grid
        return grid[::2] if len(grid) % 2 else grid[::2] + [grid[-1]]

    def steps_for(self, task) -> int:
        return max(10, int(round(task.steps * self.steps_scale)))


@dataclass
class TaskResult:
    """One program on one task: the score and everything needed to explain it."""

    task: str
    task_version: int | str
    score: float
    seed_scores: list[float]
    best_lr: float | None
    lr_at_edge: bool
    final_loss: float
    test_metric: float | None
    status: str  # ok | nan | diverged | failed
    reason: str | None = None
    message: str = ""
    curve: list[float] = field(default_factory=list)  # downsampled mean measured training-loss curve
    vs_baselines: dict[str, float] = field(default_factory=dict)
    diverged_at: int | None = None
    train_score: float | None = None  # training-loss speed-up over tuned AdamW (reported beside)
    val_final: float | None = None  # mean final validation value of the measured runs
    target: float | None = None  # tuned AdamW's validation target on this task
    val_curve: list[float] = field(default_factory=list)  # mean measured validation curve
    val_steps: list[int] = field(default_factory=list)  # the steps of val_curve
    objective: str = "val"


@dataclass
class EvaluationResult:
    """A program on a suite. ``fitness`` is the geometric mean of task scores."""

    program_hash: str
    suite: str
    stage: str  # screen | full
    fitness: float
    fitness_spread: float  # std over measurement seeds of the per-seed geometric mean
    tasks: dict[str, TaskResult]
    failure: tuple[str, str] | None = None  # (reason, message) when the program failed outright
    runs_executed: int = 0
    runs_cached: int = 0
    seconds: float = 0.0
    run_records: list[dict[str, Any]] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # per sandbox job: where the time went

    @property
    def passed_screen(self) -> bool:
        return self.stage == "full"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("run_records")
        data.pop("jobs")
        return data


class Evaluator:
    """Runs the protocol through an executor (anything with ``submit(job, payload, timeout)``)."""

    def __init__(self, executor, cache: RunCache, settings: EvalSettings = EvalSettings()):
        self.executor = executor
        self.cache = cache
        self.settings = settings
        self._baseline_memo: dict[tuple, list[float]] = {}
        self._local = threading.local()  # .jobs: the job log of the evaluate() call on this thread
        self._screened: frozenset[str] | None = None  # screened_tasks(), once known

    # --- runs -------------------------------------------------------------------------------

    def _runs(self, source: str, phash: str, task, configs: list[tuple[float, int]], steps: int,
              stats: dict) -> list[dict]:
        """Raw run records for ``configs`` (lr, seed), from the cache or one worker job.

        Raises ``CandidateError`` when the worker reports a candidate failure.
        """
        return self._collect(self._submit_runs(source, phash, task, configs, steps, stats))

    def _keys(self, phash, task, configs, steps) -> list[str]:
        return [run_key(phash, task.key, task.version, seed, lr, steps, self.settings.device) for lr, seed in configs]

    def _submit_runs(self, source, phash, task, configs, steps, stats, role="", *, halving: Schedule | None = None,
                     accept_pruned: bool = False, cached: dict | None = None):
        """Submit the configs the cache does not answer as one job (``halving``: halved in it).
        A cached ``pruned`` record (a config some halving selection stopped at a rung) answers
        only with ``accept_pruned``; otherwise that config runs again in full, and its full
        record replaces the pruned one. ``cached``: the lookups, when the caller already made them."""
        keys = self._keys(phash, task, configs, steps)
        if cached is None:
            cached = {k: self.cache.get(k) for k in keys}
        if not accept_pruned:
            cached = {k: None if r is not None and r.get("status") == PRUNED else r for k, r in cached.items()}
        missing = [(cfg, k) for cfg, k in zip(configs, keys) if cached[k] is None]
        stats["cached"] += len(configs) - len(missing)
        future = None
        if missing:
            payload = {
                "source": source,
                "task": task.key,
                "configs": [list(cfg) for cfg, _ in missing],
                "steps": steps,
                "device": self.settings.device,
            }
            module = task_module_of(task.name)
            if module is not None:  # a user's task: the worker imports its module first
                payload["task_modules"] = [module]
            if halving is not None:
                payload["halving"] = halving.to_json()
            future = self.executor.submit("evaluate", payload, self.settings.job_timeout)
            stats["executed"] += len(missing)
        job = {"task": task.key, "stage": role, "program": phash, "runs": len(missing),
               "cached_runs": len(configs) - len(missing), "device": self.settings.device, "submitted": time.time()}
        if future is not None:
            future.add_done_callback(lambda _, job=job: job.setdefault("done", time.time()))
        return keys, cached, missing, future, job

    def _collect(self, pending) -> list[dict]:
        keys, cached, missing, future, job = pending
        log = getattr(self._local, "jobs", None)
        if future is not None:
            result = future.result()
            job.update(seconds=result.seconds, worker=result.worker_pid, ok=result.ok)
        if log is not None:
            log.append(job)
        if future is not None:
            if not result.ok:
                raise CandidateError(result.reason or "crashed", result.message or "the worker failed")
            fresh = [(key, record) for (_, key), record in zip(missing, result.value["runs"])]
            self.cache.put_many(fresh)
            cached.update(fresh)
        return [cached[k] for k in keys]

    # --- one task ---------------------------------------------------------------------------

    def _select(self, source, phash, task, seeds, screen, steps, stats) -> "_Selection":
        """Submit the LR selection of one program on one task (collect it with :meth:`_choose`).

        The whole grid on every seed of ``seeds``, unless ``settings.halving`` cuts it:

        - *seed-ranked*, on the tasks the screen covers (:meth:`screened_tasks`): the first seed runs the
          whole grid to the end (the screen's own runs, so a program that passed the screen finds
          them cached), and only the ``keep`` best LRs by that seed's final value run the other
          seeds. No rung: the cut reads full-length runs.
        - *rung*, on every other task: one job trains every config to the schedule's rungs and
          continues only the surviving LRs (the harness); the rest come back ``pruned``. Which
          LRs survive is replayed from the records (:func:`sandbox.halving.replay`), so a cache
          holding them (pruned or full) answers without a job. When the cache holds only some of
          them (another grid, an earlier protocol), the configs lacking a full record run in full
          and the cut is replayed on full records: the same decision, no saving.

        Either way the pick is the best mean final value among the survivors (ties: the smaller
        LR), and the rule depends on the task and settings only, never on what is cached."""
        # The screen runs the whole grid too (on fewer seeds and tasks): on every other point a
        # program whose best LRs fall between them (Adamax: 0.1 and 1.0) screened at 0.27 and was
        # dropped with a search fitness of 0.92. Its runs are the selection's seed-0 runs, so a
        # program that passes pays nothing for them (benchmarks/funnel.py).
        grid = self.settings.grid()
        sel = _Selection(source, phash, task, grid, tuple(seeds), steps, stats, "screen" if screen else "select",
                         self._halving_rule(task, seeds, screen, grid))
        schedule = self.settings.halving
        if sel.rule == "seed":
            sel.first = self._submit_runs(source, phash, task, [(lr, seeds[0]) for lr in grid], steps, stats, sel.role)
            if sel.first[3] is None:  # all cached (the screen ran): the cut is known, the rest goes out now
                self._submit_ranked(sel)
        elif sel.rule == "rung":
            sel.configs = [(lr, seed) for lr in grid for seed in seeds]
            keys = self._keys(phash, task, sel.configs, steps)
            cached = {k: self.cache.get(k) for k in keys}
            records = [cached[k] for k in keys]
            if all(r is not None for r in records) and self._replay(sel, records) is not None:
                sel.sub = self._submit_runs(source, phash, task, sel.configs, steps, stats, sel.role,
                                            accept_pruned=True, cached=cached)
            elif all(r is None for r in records):
                sel.sub = self._submit_runs(source, phash, task, sel.configs, steps, stats, sel.role,
                                            halving=schedule, accept_pruned=True, cached=cached)
            else:
                sel.sub = self._submit_runs(source, phash, task, sel.configs, steps, stats, sel.role, cached=cached)
        else:
            sel.configs = [(lr, seed) for lr in grid for seed in seeds]
            sel.sub = self._submit_runs(source, phash, task, sel.configs, steps, stats, sel.role)
        return sel

    def _halving_rule(self, task, seeds, screen, grid) -> str | None:
        """``seed`` (seed-ranked), ``rung`` or None (the whole grid) for one selection."""
        if self.settings.halving is None or screen or self.settings.objective != "val" or len(grid) < 2:
            return None
        if len(seeds) > 1 and task.key in self.screened_tasks():
            return "seed"
        return "rung"

    def screened_tasks(self) -> frozenset[str]:
        """The task keys the settings' screen covers (none when the screen is off): the
        seed-ranked rule's tasks, whatever stage an evaluation asks for, so that a task's
        protocol never depends on the stage or the cache."""
        if self._screened is None:
            if not self.settings.screen:
                self._screened = frozenset()
            elif self.settings.screen_tasks:
                self._screened = frozenset(get_task(name).key for name in self.settings.screen_tasks)
            else:
                self._screened = frozenset(t.key for t in self.tasks_for(self.settings.suite)[:2])
        return self._screened

    def _submit_ranked(self, sel: "_Selection") -> None:
        """The seed-ranked rule's second half: the first seed's records decide which LRs run the
        other selection seeds."""
        sel.first_recs = self._collect(sel.first)
        kept = halving_rules.first_seed_survivors(dict(zip(sel.grid, sel.first_recs)), sel.steps, self.settings.halving)
        rest = [(lr, seed) for lr in kept for seed in sel.seeds[1:]]
        sel.candidates = kept
        sel.configs = [(lr, sel.seeds[0]) for lr in sel.grid] + rest
        sel.sub = self._submit_runs(sel.source, sel.phash, sel.task, rest, sel.steps, sel.stats, sel.role)

    def _replay(self, sel: "_Selection", records: list[dict]):
        runs: dict[float, list[dict]] = {lr: [] for lr in sel.grid}
        for (lr, _), rec in zip(sel.configs, records):
            runs[lr].append(rec)
        return halving_rules.replay(runs, sel.steps, val_steps(sel.steps), self.settings.halving)

    def _choose(self, sel: "_Selection") -> tuple[list, list[dict], float, bool, list[dict]]:
        """Wait for a selection: (configs, their records, best LR, at the grid's edge, the best
        LR's records). Raises ``CandidateError`` when a job reports a candidate failure."""
        if sel.rule == "seed":
            if sel.sub is None:
                self._submit_ranked(sel)
            recs = sel.first_recs + self._collect(sel.sub)
        else:
            recs = self._collect(sel.sub)
            if sel.rule == "rung":
                result = self._replay(sel, recs)
                if result is None:  # every record is there and full or pruned where the cut left it
                    raise RuntimeError(f"halving records of {sel.task.key} do not replay; this is a bug")
                sel.candidates = result.alive[-1]
        best, edge, best_recs = self._best_lr(sel.grid, sel.configs, recs, sel.steps, candidates=sel.candidates)
        return sel.configs, recs, best, edge, best_recs

    def _final_value(self, rec: dict, steps: int) -> float:
        """What LR selection minimises for one run: its final validation value (the mean of the
        last END_POINTS measurements), or under the train objective its final smoothed loss."""
        if rec["status"] != "ok":
            return math.inf
        if self.settings.objective == "train":
            curve = scoring.smooth(rec["losses"], steps)
            return float(curve[-1]) if curve.size == steps else math.inf
        values, points = rec.get("val_losses") or [], rec.get("val_steps") or []
        if not points or points[-1] != steps:
            return math.inf
        tail = values[-END_POINTS:]
        return float(np.mean(tail)) if all(math.isfinite(v) for v in tail) else math.inf

    def _best_lr(self, grid, configs, records, steps, candidates=None) -> tuple[float, bool, list[dict]]:
        """The LR of ``candidates`` (default: the whole grid; halving's survivors) with the best
        mean final value over its runs (ties: the smaller LR), whether it is on the grid's edge,
        and its records."""
        pool = sorted(grid if candidates is None else candidates)
        by_lr: dict[float, list[float]] = {lr: [] for lr in pool}
        for (lr, _), rec in zip(configs, records):
            if lr in by_lr:
                by_lr[lr].append(self._final_value(rec, steps))
        means = {lr: float(np.mean(v)) if v else math.inf for lr, v in by_lr.items()}
        best = min(pool, key=lambda lr: (means[lr], lr))
        return best, best in (grid[0], grid[-1]), [r for (lr, _), r in zip(configs, records) if lr == best]

    def _measure(self, source, phash, task, lr, seeds, steps, stats):
        return self._submit_runs(source, phash, task, [(lr, s) for s in seeds], steps, stats, "measure")

    # --- public API -------------------------------------------------------------------------

    def evaluate(self, source: str, *, suite: str | None = None, stage: str = "auto",
                 on_task: Callable[[str, TaskResult], None] | None = None,
                 measure_seeds: tuple[int, ...] | None = None) -> EvaluationResult:
        """Score ``source`` on a suite. ``stage``: "auto" (screen, then full if it passes),
        "screen" or "full". Candidate failures never raise: they become a failed result.
        ``result.jobs`` lists the sandbox jobs it waited for (tuned baselines' included)."""
        outer, self._local.jobs = getattr(self._local, "jobs", None), []
        try:
            result = self._evaluate(source, suite, stage, on_task, measure_seeds)
            result.jobs = self._local.jobs
        finally:
            self._local.jobs = outer
        return result

    def _evaluate(self, source, suite, stage, on_task, measure_seeds) -> EvaluationResult:
        started = time.perf_counter()
        suite = suite or self.settings.suite
        stats = {"executed": 0, "cached": 0}
        try:
            load_program(source)  # a contract violation fails here, before any worker runs
        except CandidateError as exc:
            return self._failed(source, suite, "screen", exc, started, stats)
        phash = program_hash(source)
        tasks = self.tasks_for(suite)
        records: list[dict] = []
        try:
            if stage in ("auto", "screen") and self.settings.screen:
                screen = self._screen(source, phash, suite, tasks, stats, records)
                if stage == "screen" or screen.fitness < self.settings.screen_threshold:
                    screen.seconds = time.perf_counter() - started
                    return screen
            result = self._full(source, phash, suite, tasks, stats, records, on_task,
                                measure_seeds or self.settings.measure_seeds)
        except CandidateError as exc:
            return self._failed(source, suite, "full" if stage == "full" else "screen", exc, started, stats)
        result.seconds = time.perf_counter() - started
        return result

    def _screen(self, source, phash, suite, tasks, stats, records) -> EvaluationResult:
        names = self.settings.screen_tasks or tuple(t.key for t in tasks[:2])
        seed = self.settings.selection_seeds[:1]
        pending = {}
        for name in names:
            task = get_task(name)
            steps = self.settings.steps_for(task)
            pending[name] = (task, steps, self._select(source, phash, task, seed, True, steps, stats))
        results: dict[str, TaskResult] = {}
        for name, (task, steps, sel) in pending.items():
            configs, recs, best, edge, best_recs = self._choose(sel)
            records.extend(_tagged(recs, configs, task, "screen"))
            base = self.baseline_reference(REFERENCE_BASELINE, task, screen=True)
            results[name] = self._task_result(task, best, edge, best_recs, steps, {REFERENCE_BASELINE: base})
        scores = [r.score for r in results.values()]
        return EvaluationResult(phash, suite, "screen", scoring.geometric_mean(scores), 0.0, results,
                                runs_executed=stats["executed"], runs_cached=stats["cached"], run_records=records)

    def _full(self, source, phash, suite, tasks, stats, records, on_task, measure_seeds) -> EvaluationResult:
        seeds = self.settings.selection_seeds
        selections = {}
        for task in tasks:
            steps = self.settings.steps_for(task)
            selections[task.key] = (task, steps, self._select(source, phash, task, seeds, False, steps, stats))
        measures = {}
        for name, (task, steps, sel) in selections.items():
            configs, recs, best, edge, _ = self._choose(sel)
            records.extend(_tagged(recs, configs, task, "select"))
            measures[name] = (task, steps, best, edge, self._measure(source, phash, task, best, measure_seeds, steps, stats))
        results: dict[str, TaskResult] = {}
        for name, (task, steps, best, edge, sub) in measures.items():
            recs = self._collect(sub)
            records.extend(_tagged(recs, [(best, s) for s in measure_seeds], task, "measure"))
            baselines = {b: self.baseline_reference(b, task, seeds=measure_seeds) for b in self.baseline_names()}
            results[name] = self._task_result(task, best, edge, recs, steps, baselines)
            if on_task:
                on_task(name, results[name])
        per_seed = np.array([r.seed_scores for r in results.values()])  # tasks x seeds
        seed_fitness = scoring.seed_fitnesses(per_seed)
        fitness = scoring.geometric_mean([r.score for r in results.values()])
        return EvaluationResult(phash, suite, "full", fitness, float(np.std(seed_fitness)), results,
                                runs_executed=stats["executed"], runs_cached=stats["cached"], run_records=records)

    def _task_result(self, task, lr, edge, recs, steps, baselines: dict[str, "BaselineReference"]) -> TaskResult:
        curves = [r["losses"] for r in recs]
        mean = scoring.mean_curve(curves, steps)
        points = val_steps(steps)
        val_mean = scoring.mean_val_curve(recs, points)
        adamw = baselines[REFERENCE_BASELINE]
        train_score = scoring.speedup_score(mean, adamw.train_curve, steps)
        ends = [self._final_value(r, steps) for r in recs] if self.settings.objective != "train" else []
        if self.settings.objective == "train":
            score = train_score
            seed_scores = [scoring.speedup_score(c, adamw.train_curve, steps) for c in curves]
            vs = {b: scoring.speedup_score(mean, ref.train_curve, steps) for b, ref in baselines.items()}
        else:
            score = adamw.val_score(points, val_mean, ends, steps)
            seed_scores = [adamw.val_score(points, scoring.mean_val_curve([r], points), [end], steps, cap_ends=ends)
                           for r, end in zip(recs, ends)]
            vs = {b: ref.val_score(points, val_mean, ends, steps) for b, ref in baselines.items()}
        statuses = [r["status"] for r in recs]
        status = "ok" if all(s == "ok" for s in statuses) else next(s for s in statuses if s != "ok")
        finals = [r["final_loss"] for r in recs]
        tests = [r.get("test_metric") for r in recs if r.get("test_metric") is not None]
        stopped = [r.get("stopped_at") for r in recs if r.get("stopped_at")]
        return TaskResult(
            task=task.key,
            task_version=task.version,
            score=score,
            seed_scores=seed_scores,
            best_lr=lr,
            lr_at_edge=edge,
            # What the score sees: the smoothed mean curve's last value (a raw last step can sit
            # in a trough of an oscillating curve and look far better than the run was).
            final_loss=float(scoring.smooth(mean, steps)[-1]) if all(math.isfinite(f) for f in finals) else math.inf,
            test_metric=float(np.mean(tests)) if tests else None,
            status=status,
            reason=None if status == "ok" else status,
            message="" if status == "ok" else f"{status} at step {min(stopped) if stopped else '?'} with lr {lr:g}",
            curve=scoring.downsample(mean),
            vs_baselines=vs,
            diverged_at=min(stopped) if stopped else None,
            train_score=train_score,
            val_final=float(np.mean(ends)) if ends and all(math.isfinite(v) for v in ends) else None,
            target=adamw.target,
            val_curve=[float(v) for v in val_mean],
            val_steps=list(points),
            objective=self.settings.objective,
        )

    def _failed(self, source, suite, stage, exc: CandidateError, started, stats) -> EvaluationResult:
        try:
            phash = program_hash(source)
        except CandidateError:
            phash = ""
        return EvaluationResult(phash, suite, stage, scoring.FAILED_SCORE, 0.0, {},
                                failure=(exc.reason, str(exc)), runs_executed=stats["executed"],
                                runs_cached=stats["cached"], seconds=time.perf_counter() - started)

    def tasks_for(self, suite: str) -> list:
        """The tasks of ``suite``; ``settings.tasks`` (for the settings' own suite),
        ``validation_tasks`` and ``test_tasks`` narrow a tier when set."""
        narrowed = {"validation": self.settings.validation_tasks, "test": self.settings.test_tasks}.get(suite, ())
        if suite == self.settings.suite and self.settings.tasks:
            narrowed = self.settings.tasks
        if narrowed:
            return [get_task(spec) for spec in narrowed]
        return suite_tasks(suite)

    # --- baselines --------------------------------------------------------------------------

    def baseline_names(self) -> tuple[str, ...]:
        return BASELINES

    def baseline_reference(self, name: str, task, *, seeds: tuple[int, ...] | None = None,
                           screen: bool = False) -> "BaselineReference":
        """A tuned baseline's target and measured curves on ``task`` (computed once per task
        version and settings; the runs themselves come from the run cache when they exist)."""
        memo_key = (name, task.key, task.version, seeds, screen, self.settings.steps_for(task))
        if memo_key not in self._baseline_memo:
            self._baseline_memo[memo_key] = self._baseline_reference(name, task, seeds, screen)
        return self._baseline_memo[memo_key]

    def baseline_curve(self, name: str, task, *, seeds: tuple[int, ...] | None = None,
                       screen: bool = False) -> list[float]:
        """Mean measured training-loss curve of a tuned baseline."""
        return self.baseline_reference(name, task, seeds=seeds, screen=screen).train_curve

    def baseline_sources(self, name: str) -> list[str]:
        """The programs a tuned baseline is tuned over (its LR grid runs on each): the reference
        itself, and for tuned AdamW each weight decay of ``REFERENCE_WEIGHT_DECAYS`` as well."""
        source = reference_source(name)
        if name != REFERENCE_BASELINE:
            return [source]
        return [source if i == 0 else with_hparams(source, {"weight_decay": wd})
                for i, wd in enumerate(REFERENCE_WEIGHT_DECAYS)]

    def _tune_baseline(self, name, task, seeds, screen, steps, stats):
        """(source, phash, best lr, lr at the grid's edge, the best runs): the LR grid on the
        selection ``seeds`` of every program of ``baseline_sources``; the best mean final value
        wins (ties: the earlier program, then the smaller LR)."""
        pending = []
        for source in self.baseline_sources(name):
            phash = program_hash(source)
            pending.append((source, phash, self._select(source, phash, task, seeds, screen, steps, stats)))
        best = None
        for source, phash, sel in pending:
            _, _, lr, edge, recs = self._choose(sel)
            value = float(np.mean([self._final_value(r, steps) for r in recs]))
            if best is None or value < best[0]:
                best = (value, source, phash, lr, edge, recs)
        return best[1:]

    def _baseline_reference(self, name, task, seeds, screen) -> "BaselineReference":
        steps = self.settings.steps_for(task)
        stats = {"executed": 0, "cached": 0}
        sel_seeds = self.settings.selection_seeds[:1] if screen else self.settings.selection_seeds
        source, phash, best, _, best_recs = self._tune_baseline(name, task, sel_seeds, screen, steps, stats)
        points = val_steps(steps)
        target = float(scoring.best_so_far(scoring.mean_val_curve(best_recs, points))[-1])
        if screen:
            recs = best_recs
        else:
            recs = self._collect(self._measure(source, phash, task, best, seeds or self.settings.measure_seeds, steps, stats))
        return BaselineReference(
            train_curve=scoring.mean_curve([r["losses"] for r in recs], steps),
            val_steps=points,
            val_curve=scoring.mean_val_curve(recs, points),
            target=target,
            ends=[self._final_value(r, steps) for r in recs],
        )

    def baseline_table(self, suite: str | None = None,
                       progress: Callable[[str], None] | None = None) -> dict[str, dict[str, TaskResult]]:
        """{task: {baseline: TaskResult}} for the suite, computing what is not cached yet."""
        table: dict[str, dict[str, TaskResult]] = {}
        for task in self.tasks_for(suite or self.settings.suite):
            row = {}
            for name in self.baseline_names():
                if progress:
                    progress(f"{task.key}: {name}")
                row[name] = self._baseline_result(name, task)
            table[task.key] = row
        return table

    def _baseline_result(self, name: str, task) -> TaskResult:
        steps = self.settings.steps_for(task)
        stats = {"executed": 0, "cached": 0}
        source, phash, best, edge, _ = self._tune_baseline(name, task, self.settings.selection_seeds, False,
                                                           steps, stats)
        recs = self._collect(self._measure(source, phash, task, best, self.settings.measure_seeds, steps, stats))
        baselines = {b: self.baseline_reference(b, task) for b in self.baseline_names()}
        return self._task_result(task, best, edge, recs, steps, baselines)


def beats_adamw(fitness: float, spread: float) -> bool:
    """The announce rule: a fitness beats tuned AdamW when its seed spread excludes 1.0."""
    return math.isfinite(fitness) and fitness - max(spread, 0.0) > 1.0


class _CacheOnly:
    """An executor that runs nothing: lets an Evaluator answer from the run cache alone."""

    def submit(self, job, payload, timeout):
        raise LookupError("not in the run cache")


def cached_target(cache: RunCache, task, settings: EvalSettings = EvalSettings()) -> float | None:
    """Tuned AdamW's validation target on ``task`` if its selection runs are all in the cache
    (nothing is run); None otherwise."""
    evaluator = Evaluator(_CacheOnly(), cache, settings)
    steps = settings.steps_for(task)
    try:
        *_, best_recs = evaluator._tune_baseline(REFERENCE_BASELINE, task, settings.selection_seeds, False, steps,
                                                 {"executed": 0, "cached": 0})
    except LookupError:
        return None
    return float(scoring.best_so_far(scoring.mean_val_curve(best_recs, val_steps(steps)))[-1])


@dataclass
class _Selection:
    """One LR selection in flight (``Evaluator._select`` submits it, ``_choose`` collects it)."""

    source: str
    phash: str
    task: Any
    grid: list[float]
    seeds: tuple[int, ...]
    steps: int
    stats: dict
    role: str  # screen | select
    rule: str | None  # seed | rung | None (the whole grid)
    configs: list[tuple[float, int]] = field(default_factory=list)  # every config whose record it returns
    sub: Any = None  # the pending _submit_runs of configs (seed rule: of the other seeds)
    first: Any = None  # seed rule: the pending first-seed runs (the whole grid)
    first_recs: list[dict] | None = None  # seed rule: their records, once collected
    candidates: list[float] | None = None  # the LRs the pick is among (None: the whole grid)


@dataclass(frozen=True)
class BaselineReference:
    """What a tuned baseline contributes to scoring on one task."""

    train_curve: list[float]  # mean measured training-loss curve, one value per step
    val_steps: list[int]
    val_curve: list[float]  # mean measured validation curve at val_steps
    target: float  # best validation value reached within the budget, mean over selection seeds
    ends: list[float]  # per measured seed: final validation value

    def val_score(self, points, values, ends, budget, cap_ends=None) -> float:
        """A curve's speed-up to this baseline's target, capped when it ends worse beyond noise
        (``cap_ends``: the seeds the cap judges; default ``ends``)."""
        score = scoring.validation_score(points, values, self.val_steps, self.val_curve, self.target, budget)
        cap = scoring.end_value_cap(ends if cap_ends is None else cap_ends, self.ends, self.val_steps,
                                    self.val_curve, budget)
        return score if cap is None else min(score, cap)


def _tagged(records: list[dict], configs, task, role: str) -> list[dict]:
    """Run records annotated with what the archive needs to store them."""
    return [
        {**rec, "lr": lr, "seed": seed, "task": task.key, "task_version": task.version, "role": role}
        for rec, (lr, seed) in zip(records, configs)
    ]
