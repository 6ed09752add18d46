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


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Schedule:
    """Rungs at ``fractions`` of the budget (increasing, each in (0, 1)); at each rung the best
    ``keep`` fraction of the alive configs survives, rounded up, and never fewer than ``min_keep``."""

    fractions: tuple[float, ...]
    keep: float = 0.5
    min_keep: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.fractions, tuple) or not all(_is_number(f) for f in self.fractions):
            raise ValueError(f"rung fractions must be a tuple of numbers, got {self.fractions!r}")
        if any(not 0 < f < 1 for f in self.fractions) or list(self.fractions) != sorted(set(self.fractions)):
            raise ValueError(f"rung fractions must be increasing and in (0, 1), got {self.fractions}")
        if not _is_number(self.keep) or isinstance(self.min_keep, bool) or not isinstance(self.min_keep, int):
            raise ValueError(f"keep must be a number and min_keep an integer, got {self.keep!r}, {self.min_keep!r}")
        if not 0 < self.keep <= 1 or self.min_keep < 1:
            raise ValueError(f"keep must be in (0, 1] and min_keep >= 1, got {self.keep}, {self.min_keep}")

    def to_json(self) -> dict:
        """The schedule as a job payload's ``halving`` entry (:meth:`from_json` reads it back)."""
        return {"fractions": list(self.fractions), "keep": self.keep, "min_keep": self.min_keep}

    @classmethod
    def from_json(cls, data: object) -> "Schedule":
        """A schedule from :meth:`to_json`'s form; ``ValueError`` on anything else."""
        if not isinstance(data, Mapping) or set(data) - {"fractions", "keep", "min_keep"} or "fractions" not in data:
            raise ValueError(f"a halving schedule is {{'fractions': [...], 'keep': k, 'min_keep': m}}, got {data!r}")
        fractions = data["fractions"]
        if not isinstance(fractions, (list, tuple)):
            raise ValueError(f"rung fractions must be a list of numbers, got {fractions!r}")
        return cls(tuple(fractions), data.get("keep", 0.5), data.get("min_keep", 1))

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


PRUNED = "pruned"
"""The status of a run the harness halted at a rung (its ``stopped_at``): its curves are the
prefix of the full run up to and including that step, and it is never a candidate LR."""


def covers(record: Mapping, at: int) -> bool:
    """Whether ``record`` says how the run stood after step ``at``: a failed run (diverged, NaN)
    not if it stopped at or before ``at``; a pruned one if it was halted at ``at`` or later."""
    stopped = record.get("stopped_at")
    if stopped is None:
        return True
    return stopped >= at if record.get("status") == PRUNED else stopped > at


def partial_value(record: Mapping, at: int, end_points: int = END_POINTS) -> float:
    """What a run shows at step ``at``: the mean of its last ``end_points`` validation values
    measured at or before ``at``; +inf when it stopped (diverged, NaN) at or before ``at`` or was
    pruned before ``at``, has
    no measurement at ``at``, or any of those values is not finite. At ``at`` = the budget this
    is the evaluator's final value."""
    points = list(record.get("val_steps") or [])
    values = list(record.get("val_losses") or [])
    if not covers(record, at) or at not in points:
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
    return _halve(runs, steps, points, schedule, strict=False)


def replay(runs: Mapping[Hashable, Sequence[Mapping]], steps: int, points: Sequence[int],
           schedule: Schedule) -> HalvingResult | None:
    """The decisions ``schedule`` makes on ``runs`` when they may include pruned records (a
    harness that halved, the run cache): each decision reads only records that cover its step
    (a pruned record must reach the decision's step, :func:`covers`), and the last survivors
    need records that were not pruned; None when a record needed does not reach far enough. On
    records a halving harness returned, this repeats its decisions (they read the same numbers);
    on full-length records it is the simulation."""
    return _halve(runs, steps, points, schedule, strict=True)


def _halve(runs, steps, points, schedule, strict):
    alive = sorted(runs)
    seeds = {key: len(recs) for key, recs in runs.items()}
    trained, done = 0, 0
    history, decided = [], []
    for at in schedule.rung_points(points, steps):
        # A failed run's record is final wherever it stopped; a pruned one must reach the rung.
        if strict and not all(runs[k] and all(r.get("status") != PRUNED or covers(r, at) for r in runs[k])
                              for k in alive):
            return None
        trained += sum(seeds[k] for k in alive) * (at - done)
        done = at
        history.append(list(alive))
        decided.append(at)
        alive = rung_survivors({k: runs[k] for k in alive}, at, schedule)
    if strict and not all(runs[k] and all(r.get("status") != PRUNED for r in runs[k]) for k in alive):
        return None
    trained += sum(seeds[k] for k in alive) * (steps - done)
    history.append(list(alive))
    decided.append(steps)
    final = config_values({k: runs[k] for k in alive}, steps)
    chosen = survivors(final, 1)[0]
    return HalvingResult(chosen, history, decided, trained, sum(seeds.values()) * steps)


def first_seed_survivors(first: Mapping[Hashable, Mapping], steps: int, schedule: Schedule) -> list[Hashable]:
    """The *seed-ranked* rule's cut, for a task whose first selection seed already ran the whole
    grid to the end (the screen's runs): the configs (keys of ``first``, each with that seed's
    full-length record) whose final values are the best ``schedule.keep_count`` (no rung: the
    ranking reads the whole budget); only they run the other selection seeds."""
    return survivors({key: partial_value(rec, steps) for key, rec in first.items()}, schedule.keep_count(len(first)))


def seed_ranked(runs: Mapping[Hashable, Sequence[Mapping]], steps: int, schedule: Schedule) -> HalvingResult:
    """Simulate the seed-ranked rule on full-length records (``runs``: config -> its seeds'
    records, the first seed first): every config's first seed runs the budget, the others only
    for :func:`first_seed_survivors`; the pick is the best mean over all seeds among those."""
    alive = sorted(runs)
    kept = first_seed_survivors({key: runs[key][0] for key in alive}, steps, schedule)
    chosen = survivors(config_values({k: runs[k] for k in kept}, steps), 1)[0]
    trained = steps * (len(alive) + sum(len(runs[k]) - 1 for k in kept))
    return HalvingResult(chosen, [alive, kept], [steps, steps], trained, steps * sum(len(r) for r in runs.values()))


def _fraction(f: float) -> str:
    inverse = 1 / f
    return f"1/{round(inverse)}" if abs(inverse - round(inverse)) < 1e-9 else f"{f:g}"
