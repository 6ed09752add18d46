"""What the report reads back from the training runs themselves, never re-running any.

Two sources, both written during the campaign:

* the archive's evaluation records: one row per run (tier, task, seed, learning rate, role
  ``select``/``measure``/``screen``), with the final training loss and a downsampled
  training-loss curve;
* the run cache (:mod:`sandbox.runcache`): the raw run records, keyed by program hash, task,
  seed, learning rate, steps and device kind, with the validation curves the scores are
  computed from. It lives on the machine that ran the campaign; elsewhere it is missing and
  the report falls back to the archive's training losses (and says so).

The cache is opened read-only: the report never creates or writes it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from archive.store import Archive, ProgramRecord
from discover.report_model import _num
from sandbox.contract import CandidateError, program_hash
from sandbox.evaluate import BaselineReference, EvalSettings, Evaluator, _CacheOnly
from sandbox.halving import PRUNED, RECOMMENDED
from sandbox.references import reference_source
from sandbox.runcache import default_cache_dir, run_key
from sandbox.tasks import get_task

LATER_TIERS = ("validation", "long_horizon", "test")
"""Evaluation suites run after a program's search-tier evaluation (confirmation, long-horizon
check, end-of-run test tier): they say nothing about when the search itself learnt a result."""
DEVICE_KINDS = ("cpu", "cuda")


class ReadOnlyRunCache:
    """The run cache's ``get``, on a read-only connection (the report never writes it)."""

    def __init__(self, path: Path):
        self.path = path
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30)
        self._conn.execute("SELECT 1 FROM runs LIMIT 1")  # not a run cache: fail here, not mid-report

    def get(self, key: str) -> dict[str, Any] | None:
        row = self._conn.execute("SELECT record FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, record: dict[str, Any]) -> None:  # pragma: no cover - never called
        raise PermissionError("the report's run cache is read-only")

    def close(self) -> None:
        self._conn.close()


def open_run_cache(path: str | Path | None = None) -> ReadOnlyRunCache | None:
    """The run cache at ``path`` (default: where campaigns write it), or None when there is none
    or it cannot be read."""
    file = Path(path) if path is not None else default_cache_dir() / "runs.sqlite"
    if not file.is_file():
        return None
    try:
        return ReadOnlyRunCache(file)
    except sqlite3.Error:
        return None


def eval_settings(config: dict, device_kind: str = "cpu") -> EvalSettings:
    """The evaluation settings a campaign's stored config ran under (its run-cache keys)."""
    ev = (config or {}).get("evaluation") or {}
    defaults = EvalSettings()

    def seeds(key: str) -> tuple[int, ...]:
        return tuple(ev.get(key) or getattr(defaults, key))

    return EvalSettings(
        suite=ev.get("suite") or defaults.suite, tasks=tuple(ev.get("tasks") or ()),
        validation_tasks=tuple(ev.get("validation_tasks") or ()), test_tasks=tuple(ev.get("test_tasks") or ()),
        selection_seeds=seeds("selection_seeds"), measure_seeds=seeds("measure_seeds"),
        confirm_seeds=seeds("confirm_seeds"), test_seeds=seeds("test_seeds"),
        lr_grid=tuple(ev.get("lr_grid") or defaults.lr_grid), device=device_kind,
        steps_scale=float(ev.get("steps_scale") or 1.0),
        # Which halving rule a task's selection followed depends on these two (seed-ranked on the
        # screened tasks, a rung elsewhere, none when off): the report replays the same cuts.
        screen=bool(ev.get("screen", defaults.screen)),
        halving=RECOMMENDED if ev.get("halving", True) else None)


def search_time(store: Archive, rec: ProgramRecord) -> str | None:
    """When ``rec``'s search-tier result was known: the last of its search-tier (or screen) run
    records, not its last record of any kind (validation and test-tier checks come later, the
    test tier only at the end of the run). None when it has no search-tier record."""
    times = [e.created_at for e in store.evaluations(rec.id) if e.suite not in LATER_TIERS]
    return max(times, default=None)


# --- learning-rate sensitivity ------------------------------------------------------------


@dataclass
class LRCurve:
    """One program on one task: the selection runs' final value at each learning rate of the grid.

    ``values[i]`` is the mean over the selection seeds at ``lrs[i]``; None when a run diverged,
    was pruned by successive halving (not a failure: not in ``diverged``) or is missing. ``measure`` says what the value is: ``validation`` (the final validation
    value LR selection minimises, from the run cache) or ``train`` (the final training loss
    stored in the archive, when the cache is not here).
    """

    label: str
    lrs: list[float]
    values: list[float | None]
    measure: str
    best_lr: float | None = None
    diverged: list[float] = field(default_factory=list)


def _mean(values: list[float]) -> float | None:
    if not values or not all(math.isfinite(v) for v in values):
        return None
    return float(np.mean(values))


class RunReader:
    """Per-LR results of archived programs, from the run cache when it is here."""

    def __init__(self, store: Archive, config: dict, cache: ReadOnlyRunCache | None):
        self.store = store
        self.config = config or {}
        self.cache = cache
        self.kind: str | None = None  # the device kind the campaign's runs are keyed under
        self.hits = 0  # lookups the cache answered (0 after the report: the cache is not this campaign's)
        self._evaluators: dict[str, Evaluator] = {}

    def evaluator(self, kind: str) -> Evaluator:
        """A cache-only evaluator (it raises LookupError instead of running anything)."""
        if kind not in self._evaluators:
            self._evaluators[kind] = Evaluator(_CacheOnly(), self.cache, eval_settings(self.config, kind))
        return self._evaluators[kind]

    def _kinds(self) -> tuple[str, ...]:
        return (self.kind,) if self.kind else DEVICE_KINDS

    def _cached(self, phash: str, task: str, version: str, seed: int, lr: float, steps: int) -> dict | None:
        if self.cache is None:
            return None
        for kind in self._kinds():
            record = self.cache.get(run_key(phash, task, version, seed, lr, steps, kind))
            if record is not None:
                self.kind = kind
                self.hits += 1
                return record
        return None

    def _final(self, record: dict, steps: int) -> float:
        # One definition of a run's "final value": the one LR selection minimises (NaN: pruned).
        if record.get("status") == PRUNED:
            return math.nan
        return self.evaluator(self.kind or "cpu")._final_value(record, steps)

    def program_curves(self, rec: ProgramRecord, suite: str = "search", cache: bool = True) -> dict[str, LRCurve]:
        """``{task: LRCurve}`` for ``rec``'s selection runs on ``suite`` (full evaluations only);
        ``cache=False`` reads only the archive (final training losses)."""
        rows = [e for e in self.store.evaluations(rec.id, suite) if e.role == "select" and e.lr is not None]
        by_task: dict[str, list] = defaultdict(list)
        for e in rows:
            by_task[e.task].append(e)
        try:
            phash = program_hash(rec.code)
        except CandidateError:
            phash = None
        out = {}
        label = rec.name if rec.proposer == "reference" and rec.name else f"#{rec.id}"
        for task, runs in by_task.items():
            entry = (rec.scores or {}).get(task) or {}
            steps = int(entry.get("steps") or self._steps(task))
            lrs = sorted({float(e.lr) for e in runs})
            cached = {(e.seed, float(e.lr)): self._cached(phash, task, e.task_version, e.seed, float(e.lr), steps)
                      for e in runs} if phash and cache else {}
            if cached and all(r is not None for r in cached.values()):
                finals = {key: self._final(r, steps) for key, r in cached.items()}
                measure = "validation"
            else:
                finals = {(e.seed, float(e.lr)): _archived_final(e.metrics) for e in runs}
                measure = "train"
            out[task] = _curve(label, lrs, finals, measure, _num(entry.get("best_lr")))
        return out

    def baseline_curve(self, name: str, task: str) -> LRCurve | None:
        """Tuned baseline ``name``'s selection runs on search task ``task``, from the run cache
        (they exist whenever any program was scored on the task); None when not cached."""
        if self.cache is None:
            return None
        try:
            spec = get_task(task)
        except Exception:  # noqa: BLE001  (a user's task module that is not importable here)
            return None
        phash = program_hash(reference_source(name))
        settings = self.evaluator(self.kind or "cpu").settings
        steps = settings.steps_for(spec)
        finals = {}
        for lr in settings.grid():
            for seed in settings.selection_seeds:
                record = self._cached(phash, spec.key, str(spec.version), seed, lr, steps)
                if record is None:
                    return None
                finals[(seed, lr)] = self._final(record, steps)
        curve = _curve(name, sorted(settings.grid()), finals, "validation", None)
        finite = [(v, lr) for lr, v in zip(curve.lrs, curve.values) if v is not None]
        curve.best_lr = min(finite)[1] if finite else None
        return curve

    def baseline_reference(self, name: str, task: str, seeds: tuple[int, ...]) -> BaselineReference | None:
        """A tuned baseline's measured curves on ``task`` at ``seeds`` (as the evaluator
        computed them for scoring), from the run cache alone; None when not cached."""
        if self.cache is None:
            return None
        try:
            spec = get_task(task)
        except Exception:  # noqa: BLE001
            return None
        for kind in self._kinds():
            try:
                found = self.evaluator(kind).baseline_reference(name, spec, seeds=tuple(seeds))
                self.hits += 1
                return found
            except LookupError:
                continue
        return None

    def _steps(self, task: str) -> int:
        try:
            return self.evaluator(self.kind or "cpu").settings.steps_for(get_task(task))
        except Exception:  # noqa: BLE001
            return 0


def _archived_final(metrics: dict) -> float:
    if (metrics or {}).get("status") == PRUNED:
        return math.nan  # halted at a halving rung: no final value, and no failure either
    if (metrics or {}).get("status", "ok") != "ok":
        return math.inf
    value = _num((metrics or {}).get("final_loss"))
    return math.inf if value is None else value


def _curve(label: str, lrs: list[float], finals: dict[tuple[int, float], float], measure: str,
           best_lr: float | None) -> LRCurve:
    values, diverged = [], []
    for lr in lrs:
        runs = [v for (_, at), v in finals.items() if at == lr]
        mean = _mean(runs)
        values.append(mean)
        if mean is None and not any(math.isnan(v) for v in runs):
            diverged.append(lr)
    return LRCurve(label, lrs, values, measure, best_lr, diverged)
