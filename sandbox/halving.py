"""Successive halving over a learning-rate grid: which configs survive a rung, from partial curves.

The evaluator's selection stage trains every LR of the grid on the selection seeds for the full
budget, then keeps the LR with the best mean final validation value. Successive halving trains
them all only to a first *rung* (a fraction of the budget), keeps the best ``keep`` fraction
(rounded up), trains the survivors to the next rung, and so on; at the end of the budget the
survivors are judged exactly as the full grid judges its LRs. Runs that are continued (not
restarted) make a rung's partial curve the prefix of the full run, so the only difference from
the full grid is which LRs are dropped early.

Everything here is a pure function of run records (``val_steps``, ``val_losses``, ``stopped_at``
as the harness writes them): the harness decides when to pause and resume; this module says
who survives. ``benchmarks/funnel.py`` measures how often the full grid's pick is dropped on the
reference library.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

END_POINTS = 3
"""Validation measurements averaged into a value (as the evaluator's final value: one noisy point
must not decide a rung). Equal to ``sandbox.evaluate.END_POINTS`` (tested)."""


@dataclass(frozen=True)
class Schedule:
    """Rungs at ``fractions`` of the budget (increasing, each in (0, 1)); at each rung the best
    ``keep`` fraction of the alive configs survives, rounded up, and never fewer than ``min_keep``."""

    fractions: tuple[float, ...]
    keep: float = 0.5
    min_keep: int = 1

    def __post_init__(self) -> None:
        if any(not 0 < f < 1 for f in self.fractions) or list(self.fractions) != sorted(set(self.fractions)):
            raise ValueError(f"rung fractions must be increasing and in (0, 1), got {self.fractions}")
        if not 0 < self.keep <= 1 or self.min_keep < 1:
            raise ValueError(f"keep must be in (0, 1] and min_keep >= 1, got {self.keep}, {self.min_keep}")

    @property
    def label(self) -> str:
        if not self.fractions:
            return "full grid (no rung)"
        rungs = ",".join(_fraction(f) for f in self.fractions) or "none"
        extra = f" min{self.min_keep}" if self.min_keep > 1 else ""
        return f"rungs {rungs} keep {self.keep:.2g}{extra}"

    def keep_count(self, alive: int) -> int:
        """How many of ``alive`` configs survive one rung."""
        return min(alive, max(self.min_keep, math.ceil(alive * self.keep)))

    def rung_points(self, points: Sequence[int], steps: int) -> list[int]:
        """The validation steps the rungs decide at: for each fraction, the last measurement point
        at or before ``fraction * steps`` (at least the first point after 0); duplicates merged."""
        usable = [p for p in points if 0 < p < steps]
        out: list[int] = []
        for fraction in self.fractions:
            limit = fraction * steps
            before = [p for p in usable if p <= limit]
            point = before[-1] if before else (usable[0] if usable else None)
            if point is not None and (not out or point > out[-1]):
                out.append(point)
        return out


RECOMMENDED = Schedule((0.25,))
"""One rung at a quarter of the budget keeping the better half (11 LRs -> 6): measured by
``benchmarks/funnel.py`` over 51 programs x 31 tasks of the search, validation and test tiers
(1,581 program-task pairs), it keeps the full grid's pick in 99.1% of the pairs (14 changed, 1
with a measured task score below 0.95x the full pick's: 0.94x), moves no program's fitness below
0.8, and saves 34.5% of the selection stage's run-steps (31% with the measurement runs).
Earlier or more rungs save more and change more picks: rungs at 1/4 and 1/2, 48% and 2.6% of
picks (worst score 0.20x); rungs at 1/8, 1/4, 1/2, 65% and 11% (two programs below 0.8)."""


def partial_value(record: Mapping, at: int, end_points: int = END_POINTS) -> float:
    """What a run shows at step ``at``: the mean of its last ``end_points`` validation values
    measured at or before ``at``; +inf when it stopped (diverged, NaN) at or before ``at``, has
    no measurement at ``at``, or any of those values is not finite. At ``at`` = the budget this
    is the evaluator's final value."""
    points = list(record.get("val_steps") or [])
    values = list(record.get("val_losses") or [])
    stopped = record.get("stopped_at")
    if (stopped is not None and stopped <= at) or at not in points:
        return math.inf
    k = points.index(at)
    tail = values[max(0, k + 1 - end_points): k + 1]
    if len(tail) < 1 or not all(math.isfinite(v) for v in tail):
        return math.inf
    return float(np.mean(tail))


def config_values(runs: Mapping[Hashable, Sequence[Mapping]], at: int) -> dict[Hashable, float]:
    """Per config (an LR), the mean over its seeds' runs of :func:`partial_value` at ``at``: one
    stopped seed makes the config's value +inf (as the full grid treats a diverged seed)."""
    return {key: float(np.mean([partial_value(r, at) for r in recs])) if recs else math.inf
            for key, recs in runs.items()}


def survivors(values: Mapping[Hashable, float], count: int) -> list[Hashable]:
    """The ``count`` configs with the lowest values, in the order of their keys; ties (and
    +inf/NaN: a stopped run is worst) go to the smaller key, as the evaluator's LR choice does."""
    def rank(key):
        value = values[key]
        return (math.inf if math.isnan(value) else value, key)
    return sorted(sorted(values, key=rank)[:count])


def rung_survivors(runs: Mapping[Hashable, Sequence[Mapping]], at: int, schedule: Schedule) -> list[Hashable]:
    """The one call a harness makes at a rung: the configs (keys of ``runs``, the alive ones,
    each with its seeds' records so far) that go on training past step ``at``."""
    return survivors(config_values(runs, at), schedule.keep_count(len(runs)))


@dataclass(frozen=True)
class HalvingResult:
    chosen: Hashable  # the config with the best final value among the last survivors
    alive: list[list[Hashable]]  # the configs trained up to each rung, then to the end
    decided_at: list[int]  # the rung steps, then the budget
    run_steps: int  # steps trained over all configs and seeds (runs continued across rungs)
    full_run_steps: int  # the same for the full grid


def successive_halving(runs: Mapping[Hashable, Sequence[Mapping]], steps: int, points: Sequence[int],
                       schedule: Schedule) -> HalvingResult:
    """Simulate ``schedule`` on full-length run records (``runs``: config -> its seeds' records,
    each measured at ``points``, the task's validation steps for a ``steps``-step budget)."""
    alive = sorted(runs)
    seeds = {key: len(recs) for key, recs in runs.items()}
    trained, done = 0, 0
    history, decided = [], []
    for at in schedule.rung_points(points, steps):
        trained += sum(seeds[k] for k in alive) * (at - done)
        done = at
        history.append(list(alive))
        decided.append(at)
        alive = rung_survivors({k: runs[k] for k in alive}, at, schedule)
    trained += sum(seeds[k] for k in alive) * (steps - done)
    history.append(list(alive))
    decided.append(steps)
    final = config_values({k: runs[k] for k in alive}, steps)
    chosen = survivors(final, 1)[0]
    return HalvingResult(chosen, history, decided, trained, sum(seeds.values()) * steps)


def _fraction(f: float) -> str:
    inverse = 1 / f
    return f"1/{round(inverse)}" if abs(inverse - round(inverse)) < 1e-9 else f"{f:g}"
