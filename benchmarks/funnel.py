"""The multi-fidelity funnel, measured on the reference library (issue 14 item 4).

Over the library of ``benchmarks/transfer.py`` (references, re-parameterised references, seeded
mutants, winners), scored through the evaluator (the run cache answers nearly every run), this
prints three things:

a. **The screen** (one seed, every other LR, the suite's first two tasks, threshold 0.3): screen
   fitness against full search fitness per program; the programs it drops whose full fitness
   would have reached the bar (``--bar``, default 0.8 = the bottom of the decision region where
   campaigns decide; beating 1.0 is printed beside it), the run-steps it saves, the chance a
   program exactly at the bar is dropped (read off the library's screen/full ratios), and its
   seed noise (the same screen on the other selection seed). The same for a screen on the whole
   LR grid (seed 0, same tasks; every run reused by the full stage).
b. **Successive halving over the LR grid**, simulated offline on the full-length selection runs
   (:mod:`sandbox.halving`; runs continued across rungs, so a rung sees the prefix of the full
   run): per schedule and tier (``--tiers``; pooled over them too), how often the LR the full
   grid picks is dropped, the measured task score at the LR halving picks instead (its
   measurement runs are run when not cached), the programs whose fitness crosses the bar
   because of it, and the run-steps saved; the last row is the rule the evaluator runs
   (``EvaluatorRule``: seed-ranked on the screened tasks, the default schedule elsewhere), with
   the share of the run-steps saved among those a program that passed the screen still runs.
   Collection itself runs with the evaluator's halving off (it needs every LR's full runs).
   Then the **task funnel**: after the first k search
   tasks, drop a program whose geometric mean so far is below c; its false drops and savings.
c. The recommendation the figures support, for the screen and the LR grid.

Run-steps are training steps summed over runs (a proxy for compute; per-step cost differs by
task). The figures are written to ``--out`` (resumable; a program whose code changed is scored
afresh) so ``--report`` reprints them without running.

    python benchmarks/funnel.py [--tiers search,validation,test] [--workers 2] [--out funnel.json] [--report]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # transfer.py, beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from sandbox import scoring
from sandbox.halving import RECOMMENDED, HalvingResult, Schedule, seed_ranked, successive_halving

SCHEDULES = (
    Schedule(()),  # the full grid: the reference every other schedule is compared with
    Schedule((0.5,)),
    Schedule((0.25,)),
    Schedule((0.125,)),
    Schedule((0.25, 0.5)),
    Schedule((0.125, 0.25, 0.5)),
    Schedule((0.0625, 0.125, 0.25, 0.5)),
    Schedule((0.125, 0.25, 0.5), min_keep=3),
    Schedule((0.25, 0.5), min_keep=3),
    Schedule((0.125,), keep=1 / 3),
)


@dataclass(frozen=True)
class EvaluatorRule:
    """What the evaluator does (``sandbox.evaluate.Evaluator._select``): the seed-ranked rule on
    the tasks its screen covers (``seeded``: their seed-0 runs rank the LRs, seed 1 runs the
    better half), ``schedule`` at a rung on every other task."""

    schedule: Schedule
    seeded: frozenset[str]

    @property
    def label(self) -> str:
        return f"evaluator: seed-ranked on {len(self.seeded)}, {self.schedule.label}"

    @property
    def fractions(self) -> tuple[float, ...]:
        return self.schedule.fractions

    def simulate(self, name: str, runs: Mapping, steps: int, points: Sequence[int]) -> HalvingResult:
        if name in self.seeded:
            return seed_ranked(runs, steps, self.schedule)
        return successive_halving(runs, steps, points, self.schedule)


def evaluator_rule() -> EvaluatorRule:
    """The evaluator's rule under the default settings (the recommended schedule if they halve nothing)."""
    from sandbox.evaluate import EvalSettings, Evaluator
    from sandbox.runcache import MemoryRunCache

    settings = EvalSettings()
    return EvaluatorRule(settings.halving or RECOMMENDED, Evaluator(None, MemoryRunCache(), settings).screened_tasks())


def simulate(rule: Schedule | EvaluatorRule, name: str, task: Mapping) -> HalvingResult:
    """One rule on one task row (``name``: the task's key)."""
    runs = {float(lr): recs for lr, recs in task["runs"].items()}
    if isinstance(rule, EvaluatorRule):
        return rule.simulate(name, runs, task["steps"], task["points"])
    return successive_halving(runs, task["steps"], task["points"], rule)


SCREEN_THRESHOLDS = (0.2, 0.3, 0.4, 0.5)
TASK_RULE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)
FALSE_DROP_GOAL = 0.02
MEASURE_RUNS = 2  # measurement seeds per task after selection (unchanged by any funnel)
HARM_RATIO = 0.95
"""A changed pick is harmful when its measured task score is below this fraction of the full
grid's pick's (a change to an LR that scores as well is no loss)."""
TIERS = ("search", "validation", "test")
FLOOR = 1.01 * scoring.SCORE_MIN
"""Fitness at or about the score floor (every task clipped at 0.05): no ratio is read off it."""


# --- collection (runs the evaluator; everything below it is pure) -------------------------------

def _slim(record: Mapping) -> dict:
    return {k: record.get(k) for k in ("lr", "seed", "val_steps", "val_losses", "stopped_at", "status")}


def collect(labels: Sequence[str], programs: Mapping[str, str], evaluator, tier: str, rows: dict,
            save=None, log=print) -> dict:
    """Full evaluation of every program on ``tier`` (and on the search tier its screen), skipping
    those already in ``rows``: fitness, per task the measured score, best LR and selection runs."""
    started = time.perf_counter()
    # The screen again on the other selection seed: its runs are the full stage's (cached), and
    # the two screens' disagreement is the screen's seed noise.
    seeds = evaluator.settings.selection_seeds
    replica = type(evaluator)(evaluator.executor, evaluator.cache,
                              replace(evaluator.settings, selection_seeds=(*seeds[1:], *seeds[:1])))
    # The screen on the whole grid (same seed and tasks): the screen takes every other point of
    # the settings' grid, so a grid with the geometric midpoints added screens on the real one.
    fine = type(evaluator)(evaluator.executor, evaluator.cache,
                           replace(evaluator.settings, lr_grid=with_midpoints(evaluator.settings.lr_grid)))

    def fine_screen(row: dict, source: str) -> None:
        result = fine.evaluate(source, suite=tier, stage="screen")
        row["screen_fine"] = result.fitness
        row["screen_fine_run_steps"] = sum(_steps_of(evaluator, rec["task"]) for rec in result.run_records)

    for i, label in enumerate(labels, 1):
        if label in rows and tier == "search" and "screen_replica" not in rows[label]:
            rows[label]["screen_replica"] = replica.evaluate(programs[label], suite=tier, stage="screen").fitness
        if label in rows and tier == "search" and "screen_fine" not in rows[label]:
            fine_screen(rows[label], programs[label])
        if label in rows:
            continue
        t0 = time.perf_counter()
        screen = evaluator.evaluate(programs[label], suite=tier, stage="screen") if tier == "search" else None
        full = evaluator.evaluate(programs[label], suite=tier, stage="full")
        row = {"hash": full.program_hash, "full": full.fitness, "spread": full.fitness_spread,
               "failed": full.failure is not None, "tasks": {}}
        if screen is not None:
            row["screen"] = screen.fitness
            row["screen_replica"] = replica.evaluate(programs[label], suite=tier, stage="screen").fitness
            fine_screen(row, programs[label])
            row["screen_run_steps"] = sum(_steps_of(evaluator, rec["task"]) for rec in screen.run_records)
        for name, result in full.tasks.items():
            by_lr: dict[str, list] = {}
            for rec in full.run_records:
                if rec["task"] == name and rec["role"] == "select":
                    by_lr.setdefault(repr(rec["lr"]), []).append(_slim(rec))
            row["tasks"][name] = {"score": result.score, "best_lr": result.best_lr,
                                  "steps": _steps_of(evaluator, name), "points": list(result.val_steps),
                                  "measure_runs": len(evaluator.settings.measure_seeds),
                                  "runs": by_lr, "alt_scores": {}}
        rows[label] = row
        if save is not None:
            save()
        executed = full.runs_executed + (screen.runs_executed if screen else 0)
        log(f"[{tier} {i}/{len(labels)} {time.perf_counter() - started:5.0f} s] {label:40} "
            + (f"screen {screen.fitness:.3f}  " if screen else "")
            + f"full {full.fitness:.3f}  ({executed} runs executed, {time.perf_counter() - t0:.1f} s)")
    return rows


def with_midpoints(grid: Sequence[float]) -> tuple[float, ...]:
    """``grid`` (sorted) with the geometric midpoint of each neighbouring pair inserted: its every
    other point, the screen's coarse grid, is ``grid`` itself."""
    points = sorted(grid)
    mids = [math.sqrt(a * b) for a, b in itertools.pairwise(points)]
    return tuple(sorted(points + mids))


def _steps_of(evaluator, task_name: str) -> int:
    from sandbox.tasks import get_task

    return evaluator.settings.steps_for(get_task(task_name))


def fill_alternatives(rows: dict, programs: Mapping[str, str], evaluator, tier: str,
                      schedules: Iterable[Schedule], save=None, log=print) -> int:
    """Measure (on the tier's measurement seeds, as the evaluator would) every LR some schedule
    picks instead of the full grid's; returns how many were scored."""
    scored = 0
    for label, row in rows.items():
        for name, task in row["tasks"].items():
            for lr in sorted({pick for pick in picks(task, schedules, name).values() if pick != task["best_lr"]}):
                if repr(lr) in task["alt_scores"]:
                    continue
                settings = replace(evaluator.settings, suite=tier, tasks=(name,), lr_grid=(lr,), screen=False)
                one = type(evaluator)(evaluator.executor, evaluator.cache, settings)
                result = one.evaluate(programs[label], suite=tier, stage="full")
                task["alt_scores"][repr(lr)] = result.tasks[name].score if not result.failure else scoring.FAILED_SCORE
                scored += 1
        if save is not None:
            save()
    log(f"[{tier}] scored {scored} learning rates halving picks instead of the full grid's")
    return scored


# --- pure analysis ------------------------------------------------------------------------------

def picks(task: Mapping, schedules: Iterable[Schedule | EvaluatorRule], name: str = "") -> dict[str, float]:
    """The LR each schedule picks on one task row (``name``: its task, for an EvaluatorRule)."""
    return {s.label: simulate(s, name, task).chosen for s in schedules}


def screen_figures(rows: Mapping[str, Mapping], threshold: float, bar: float, key: str = "screen") -> dict:
    """Programs the screen drops (screen fitness < threshold), those of them whose full fitness
    reaches ``bar`` (false drops), and the run-steps saved (a dropped program skips its full
    stage; a passing one pays nothing extra, since the screen's runs are a subset of the full
    stage's: same seed, LRs, steps). ``key``: which screen (``screen_fine``: the whole grid)."""
    labels = [k for k in rows if rows[k]["tasks"] and key in rows[k]]  # a program failing outright costs no full stage
    dropped = [k for k in labels if rows[k][key] < threshold]
    reach = [k for k in labels if rows[k]["full"] >= bar]
    false = [k for k in dropped if rows[k]["full"] >= bar]
    full_cost = {k: _full_run_steps(rows[k]) for k in labels}
    saved = sum(full_cost[k] - rows[k][key + "_run_steps"] for k in dropped)
    return {"programs": len(labels), "dropped": len(dropped), "reach_bar": len(reach), "false": false,
            "false_rate": len(false) / len(reach) if reach else math.nan,
            "saved": saved / max(1, sum(full_cost.values()))}


def screen_noise(rows: Mapping[str, Mapping], threshold: float, bar: float) -> dict:
    """The screen's seed noise and what it implies: sigma, the standard deviation of one screen's
    log fitness, from the two screens' (seed 0, seed 1) differences over programs neither clipped
    at the score floor; then for each program at the bar, the chance that one screen falls below
    ``threshold`` when its log fitness is normal around the two screens' mean (a model: stated
    as such, and it ignores that both screens share the first two tasks' bias)."""
    pairs = [(r["screen"], r["screen_replica"]) for r in rows.values()
             if r.get("screen_replica") is not None and min(r["screen"], r["screen_replica"]) > FLOOR]
    if len(pairs) < 3:
        return {"n": len(pairs), "sigma": math.nan, "p_drop": {}, "expected_false": math.nan}
    diffs = [math.log(a) - math.log(b) for a, b in pairs]
    sigma = float(np.std(diffs, ddof=1) / math.sqrt(2))
    p_drop = {}
    for label, r in rows.items():
        if r["full"] >= bar and r.get("screen_replica") is not None:
            centre = 0.5 * (math.log(max(r["screen"], scoring.SCORE_MIN)) + math.log(max(r["screen_replica"], scoring.SCORE_MIN)))
            z = (math.log(threshold) - centre) / sigma
            p_drop[label] = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return {"n": len(pairs), "sigma": sigma, "p_drop": p_drop,
            "expected_false": sum(p_drop.values()) / len(p_drop) if p_drop else math.nan}


def screen_ratio_risk(rows: Mapping[str, Mapping], threshold: float, bar: float, key: str = "screen") -> dict:
    """The screen's false-drop rate for a program exactly at the bar, from the library's own
    screen/full fitness ratios (seed noise *and* the screen's bias: two tasks, a coarse grid): the
    fraction of programs, neither fitness at the score floor, whose ratio is below threshold/bar."""
    ratios = [r[key] / r["full"] for r in rows.values()
              if r["tasks"] and key in r and min(r[key], r["full"]) > FLOOR]
    below = [x for x in ratios if x < threshold / bar]
    return {"n": len(ratios), "below": len(below), "rate": len(below) / len(ratios) if ratios else math.nan}


def _measure_runs(task: Mapping) -> int:
    return task.get("measure_runs", MEASURE_RUNS)


def _full_run_steps(row: Mapping) -> int:
    return sum(t["steps"] * (sum(len(v) for v in t["runs"].values()) + _measure_runs(t)) for t in row["tasks"].values())


def halving_figures(rows: Mapping[str, Mapping], schedule: Schedule | EvaluatorRule, bar: float) -> dict:
    """One schedule against the full grid over every (program, task) pair with selection runs: the
    picks it changes, the measured score at its pick over the full grid's (a change is *harmful*
    when that ratio is below ``HARM_RATIO``), the programs whose fitness it moves below ``bar``,
    and the run-steps it saves."""
    pairs = changed = harmful = contender_pairs = contender_changed = 0
    trained = full = measured = screened = 0
    ratios: list[float] = []
    fitness = {}
    for label, row in rows.items():
        if not row["tasks"]:
            continue
        scores = []
        for name, task in row["tasks"].items():
            result = simulate(schedule, name, task)
            if isinstance(schedule, EvaluatorRule) and name in schedule.seeded:
                screened += task["steps"] * len(task["runs"])  # seed 0 on the whole grid: the screen's runs
            pairs += 1
            trained += result.run_steps
            full += result.full_run_steps
            measured += _measure_runs(task) * task["steps"]
            score = task["score"]
            if result.chosen != task["best_lr"]:
                changed += 1
                alt = task["alt_scores"].get(repr(result.chosen))
                if alt is not None:
                    ratios.append(alt / task["score"])
                    harmful += ratios[-1] < HARM_RATIO
                    score = alt
                else:
                    score = math.nan
            if row["full"] >= bar:
                contender_pairs += 1
                contender_changed += result.chosen != task["best_lr"]
            scores.append(score)
        fitness[label] = scoring.geometric_mean(scores) if all(math.isfinite(s) for s in scores) else math.nan
    # An unscored pick leaves the fitness unknown: counted under "missing", not as a drop.
    crossed = [k for k, f in fitness.items() if rows[k]["full"] >= bar and f < bar]
    crossed_one = [k for k, f in fitness.items() if rows[k]["full"] > 1.0 and f <= 1.0]
    reach = sum(rows[k]["full"] >= bar for k in fitness)
    factors = [f / rows[k]["full"] for k, f in fitness.items() if math.isfinite(f)]
    return {"label": schedule.label, "pairs": pairs, "changed": changed, "changed_rate": changed / max(1, pairs),
            "harmful": harmful, "harmful_rate": harmful / max(1, pairs),
            "contender_pairs": contender_pairs, "contender_changed": contender_changed,
            "contender_rate": contender_changed / max(1, contender_pairs),
            "ratio_median": float(np.median(ratios)) if ratios else math.nan,
            "ratio_min": float(min(ratios)) if ratios else math.nan,
            "missing": sum(1 for f in fitness.values() if not math.isfinite(f)),
            "crossed": crossed, "crossed_one": crossed_one, "reach_bar": reach,
            "false_rate": len(crossed) / reach if reach else math.nan,
            "worst_factor": min(factors) if factors else math.nan, "best_factor": max(factors) if factors else math.nan,
            "saved_select": 1 - trained / max(1, full),
            "saved_after_screen": 1 - (trained - screened) / max(1, full - screened), "saved": 1 - (trained + measured) / max(1, full + measured)}


def pooled(tiers: Mapping[str, Mapping[str, Mapping]]) -> dict[str, Mapping]:
    """Every tier's rows as one library (``tier:label``), for figures over all their pairs."""
    return {f"{tier}:{label}": row for tier, rows in tiers.items() for label, row in rows.items()}


def task_funnel_figures(rows: Mapping[str, Mapping], order: Sequence[str], k: int, threshold: float, bar: float,
                        after_screen: float | None = None) -> dict:
    """Drop a program after the first ``k`` tasks of ``order`` when their geometric mean is below
    ``threshold``; ``after_screen``: only programs whose screen fitness passed it are counted."""
    labels = [lbl for lbl, r in rows.items() if r["tasks"] and (after_screen is None or r["screen"] >= after_screen)]
    dropped, saved, total = [], 0, 0
    for label in labels:
        tasks = rows[label]["tasks"]
        cost = {name: tasks[name]["steps"] * (sum(len(v) for v in tasks[name]["runs"].values())
                                              + _measure_runs(tasks[name])) for name in order}
        total += sum(cost.values())
        if scoring.geometric_mean([tasks[name]["score"] for name in order[:k]]) < threshold:
            dropped.append(label)
            saved += sum(cost[name] for name in order[k:])
    reach = [lbl for lbl in labels if rows[lbl]["full"] >= bar]
    false = [lbl for lbl in dropped if rows[lbl]["full"] >= bar]
    false_one = [lbl for lbl in dropped if rows[lbl]["full"] > 1.0]
    return {"k": k, "threshold": threshold, "programs": len(labels), "dropped": len(dropped), "false": false,
            "false_one": false_one, "reach_bar": len(reach), "false_rate": len(false) / len(reach) if reach else math.nan,
            "saved": saved / max(1, total)}


def bar_margin(rows: Mapping[str, Mapping], order: Sequence[str], k: int, bar: float) -> tuple[float, str]:
    """The lowest geometric mean over the first ``k`` tasks of ``order`` among programs whose full
    fitness reaches ``bar``, and whose it is: a task-funnel threshold above it drops that program."""
    at_bar = {label: scoring.geometric_mean([r["tasks"][name]["score"] for name in order[:k]])
              for label, r in rows.items() if r["tasks"] and r["full"] >= bar}
    if not at_bar:
        return math.nan, "-"
    label = min(at_bar, key=at_bar.get)
    return at_bar[label], label


def recommend(search: Sequence[dict], everywhere: Sequence[dict], goal: float = FALSE_DROP_GOAL,
              key: str = "changed_rate") -> dict | None:
    """The schedule saving the most search-tier run-steps among those that, over every tier's
    pairs (``everywhere``, the same schedules in the same order), drop the full grid's pick at
    most ``goal`` of the time (``key="harmful_rate"``: count only drops that cost score), leave no
    pair unscored, and push no program below the bar on any tier."""
    ok = [s for s, e in zip(search, everywhere)
          if e[key] <= goal and not e["crossed"] and not e["missing"] and s["saved"] > 0]
    return max(ok, key=lambda h: h["saved"]) if ok else None


# --- printing -----------------------------------------------------------------------------------

def report(tiers: Mapping[str, Mapping[str, Mapping]], order: Sequence[str], bar: float, threshold: float,
           rules: Sequence[Schedule | EvaluatorRule] = SCHEDULES) -> None:
    rows = tiers["search"]
    print(f"\nLibrary: {len(rows)} programs; bar = full fitness >= {bar:g} (also > 1.0: beats tuned AdamW); "
          f"tiers: {', '.join(f'{t} ({len(r)})' for t, r in tiers.items())}")
    print("\na. The screen (seed 0, every other LR, the first two tasks) against full search fitness")
    print(f"   {'program':40} {'screen':>7} {'seed 1':>7} {'grid':>7} {'full':>7}   (seed 1: the screen on the other"
          " selection seed; grid: on seed 0 with the whole LR grid)")
    for label in sorted(rows, key=lambda k: rows[k]["full"], reverse=True):
        r = rows[label]
        flag = "  dropped" if r["screen"] < threshold else ""
        print(f"   {label:40} {r['screen']:7.3f} {r.get('screen_replica', math.nan):7.3f} "
              f"{r.get('screen_fine', math.nan):7.3f} {r['full']:7.3f}{flag}")
    at_bar = [r["screen"] for r in rows.values() if r["full"] >= bar]
    if at_bar:
        print(f"   lowest screen fitness of a program at the bar: {min(at_bar):.3f}")
    print(f"   {'threshold':>10} {'dropped':>8} {'false drops (>= bar)':>22} {'false > 1.0':>12} {'run-steps saved':>16}"
          f" {'at the bar':>11} {'seed-noise model (worst program)':>34}")
    for t in sorted(set(SCREEN_THRESHOLDS) | {threshold}):
        f = screen_figures(rows, t, bar)
        one = screen_figures(rows, t, 1.0 + 1e-12)
        noise = screen_noise(rows, t, bar)
        worst = max(noise["p_drop"].items(), key=lambda kv: kv[1], default=("-", math.nan))
        print(f"   {t:10.2f} {f['dropped']:8d} {len(f['false']):>10d}/{f['reach_bar']:<3d} ({f['false_rate']:5.1%})"
              f" {len(one['false']):>8d}/{one['reach_bar']:<3d} {f['saved']:15.1%}"
              f" {screen_ratio_risk(rows, t, bar)['rate']:10.1%} {noise['expected_false']:>10.2%} ({worst[0]} {worst[1]:.1%})"
              + (f"  {', '.join(f['false'])}" if f["false"] else ""))
    if all("screen_fine" in r for r in rows.values() if r["tasks"]):
        print("   the same screen on the whole LR grid (seed 0, the first two tasks; 22 runs instead of 12, all reused by"
              " the full stage):")
        for t in sorted(set(SCREEN_THRESHOLDS) | {threshold}):
            f = screen_figures(rows, t, bar, key="screen_fine")
            print(f"   {t:10.2f} {f['dropped']:8d} {len(f['false']):>10d}/{f['reach_bar']:<3d} ({f['false_rate']:5.1%})"
                  f" {'':12} {f['saved']:15.1%} {screen_ratio_risk(rows, t, bar, key='screen_fine')['rate']:10.1%}"
                  + (f"  {', '.join(f['false'])}" if f["false"] else ""))
    noise = screen_noise(rows, threshold, bar)
    if noise["n"] >= 3:
        risk = screen_ratio_risk(rows, threshold, bar)
        print(f"   at the bar: the chance a program whose full fitness is exactly {bar:g} screens below the threshold,"
              f" read off the library's screen/full ratios\n   ({risk['n']} programs off the score floor); seed-noise"
              f" model: one screen's log fitness has sigma {noise['sigma']:.3f} (seed 0 vs seed 1), and each program"
              f"\n   at the bar is dropped by seed noise alone with the modelled chance (mean, worst). The screen's error is"
              " bias (two tasks, a coarse grid) more than seed noise")

    print("\nb. Successive halving over the 11-point LR grid (selection seeds; runs continued across rungs)")
    results = {}
    for name, tier_rows in list(tiers.items()) + ([("all tiers", pooled(tiers))] if len(tiers) > 1 else []):
        results[name] = [halving_figures(tier_rows, s, bar) for s in rules]
        print(f"   {name}:")
        print(f"   {'schedule':34} {'picks changed':>14} {'harmful':>13} {'of contenders':>14} {'alt/full score':>15}"
              f" {'fitness < bar':>13} {'fitness x':>12} {'saved: select':>13} {'all':>6}")
        for h in results[name]:
            ratio = f"{h['ratio_median']:.2f} ({h['ratio_min']:.2f})" if not math.isnan(h["ratio_median"]) else "-"
            print(f"   {h['label']:34} {h['changed']:5d}/{h['pairs']:<5d}{h['changed_rate']:5.1%}"
                  f" {h['harmful']:4d} ({h['harmful_rate']:5.1%})"
                  f" {h['contender_changed']:4d}/{h['contender_pairs']:<4d}{h['contender_rate']:5.1%} {ratio:>15}"
                  f" {len(h['crossed']):>6d}/{h['reach_bar']:<3d}   {h['worst_factor']:5.2f}-{h['best_factor']:<5.2f}"
                  f" {h['saved_select']:12.1%} {h['saved']:6.1%}"
                  + (f"  below bar: {', '.join(h['crossed'])}" if h["crossed"] else "")
                  + (f"  ({h['missing']} unscored)" if h["missing"] else ""))
    print("   picks changed: (program, task) pairs where halving keeps another LR than the full grid; harmful: its")
    print(f"   measured task score is below {HARM_RATIO:g}x the full grid's pick's; of contenders: pairs of programs at the")
    print("   bar; alt/full score: measured task score at halving's pick over the full grid's (median, worst);")
    print("   fitness x: the smallest and largest factor by which a program's fitness moves; saved: run-steps of")
    print("   the selection stage, and of selection + the measurement runs (which no funnel changes)")

    print(f"\n   Task funnel (search tier): after the first k tasks ({', '.join(order)}), drop when their geomean < c")
    print(f"   {'k':>3} {'c':>5} {'dropped':>8} {'false (>= bar)':>16} {'false > 1.0':>12} {'saved':>7}   "
          f"{'after the screen: dropped, false, saved'}")
    margins = [(k, *bar_margin(rows, order, k, bar)) for k in range(1, len(order))]
    print("   lowest geomean after k tasks of a program at the bar: "
          + ", ".join(f"k={k} {m:.2f} ({label})" for k, m, label in margins))
    funnel = []
    for k in range(1, len(order)):
        for c in TASK_RULE_THRESHOLDS:
            f = task_funnel_figures(rows, order, k, c, bar)
            s = task_funnel_figures(rows, order, k, c, bar, after_screen=threshold)
            funnel.append((f, s))
            print(f"   {k:3d} {c:5.2f} {f['dropped']:8d} {len(f['false']):>7d}/{f['reach_bar']:<3d}({f['false_rate']:4.0%})"
                  f" {len(f['false_one']):>8d}    {f['saved']:6.1%}   {s['dropped']:3d} {len(s['false']):3d} {s['saved']:6.1%}"
                  + (f"  {', '.join(f['false'])}" if f["false"] else ""))

    print("\nc. Recommendation")
    for key, name in (("screen", "the screen as it is (coarse grid)"), ("screen_fine", "the screen on the whole grid")):
        if not all(key in r for r in rows.values() if r["tasks"]):
            continue
        fits = [(t, screen_figures(rows, t, bar, key), screen_ratio_risk(rows, t, bar, key)) for t in
                sorted(set(SCREEN_THRESHOLDS) | {threshold})]
        ok = [(t, f, r) for t, f, r in fits if not f["false"] and r["rate"] <= FALSE_DROP_GOAL]
        if ok:
            t, f, r = max(ok, key=lambda x: x[1]["saved"])
            print(f"   {name}: threshold {t:g} saves {f['saved']:.0%} of the run-steps, drops no program at the bar here "
                  f"and would drop one exactly at it {r['rate']:.1%} of the time (screen/full ratios)")
        else:
            t, f, r = next(x for x in fits if x[0] == threshold)
            print(f"   {name}: no threshold drops no program at the bar with <= {FALSE_DROP_GOAL:.0%} risk; at {t:g} it "
                  f"drops {len(f['false'])} of {f['reach_bar']} ({', '.join(f['false']) or '-'}), {r['rate']:.1%} at the bar")
    everywhere = results.get("all tiers", results["search"])
    labels = [h["label"] for h in results["search"]]
    for key, what in (("changed_rate", "drops the full grid's pick"), ("harmful_rate", "drops it at a cost of score")):
        best = recommend(results["search"], everywhere, key=key)
        if best is None:
            print(f"   no halving schedule {what} in <= {FALSE_DROP_GOAL:.0%} of the pairs without moving a program "
                  "below the bar: keep the full grid")
            continue
        e = everywhere[labels.index(best["label"])]
        print(f"   LR grid, if it {what} in <= {FALSE_DROP_GOAL:.0%} of the pairs: {best['label']}: saves "
              f"{best['saved_select']:.0%} of the search tier's selection run-steps ({best['saved']:.0%} with "
              f"measurement); over {e['pairs']} (program, task) pairs it changes {e['changed_rate']:.1%} of the picks, "
              f"{e['harmful_rate']:.1%} harmfully (measured score ratio median {e['ratio_median']:.2f}, worst "
              f"{e['ratio_min']:.2f}); no program below {bar:g}; fitness moves by {e['worst_factor']:.2f}-"
              f"{e['best_factor']:.2f}x")
    for tier, figures in results.items():
        for h in figures:
            if h["label"].startswith("evaluator:"):
                print(f"   the evaluator's rule ({h['label']}) on {tier}: {h['changed']}/{h['pairs']} picks changed "
                      f"({h['changed_rate']:.1%}), {h['harmful']} harmfully, score ratio worst {h['ratio_min']:.2f}, "
                      f"{len(h['crossed'])} programs below {bar:g}, {h['missing']} unscored; saves {h['saved_select']:.1%}"
                      f" of selection run-steps ({h['saved']:.1%} with measurement; {h['saved_after_screen']:.1%} of those"
                      " a program that passed the screen still runs)")
    safe = [(f, s) for f, s in funnel if not s["false"] and s["saved"] > 0]
    if safe:
        f, s = max(safe, key=lambda fs: fs[1]["saved"])
        print(f"   task funnel after the screen: k={f['k']} c={f['threshold']:g} saves {s['saved']:.0%} of the full stage's "
              f"run-steps with no false drop here ({s['dropped']} of {s['programs']} dropped; the weakest program at the "
              f"bar has {bar_margin(rows, order, f['k'], bar)[0]:.2f} there); with "
              f"{s['reach_bar']} programs at the bar a false-drop rate under ~{1 / max(1, s['reach_bar']):.0%} is not "
              "resolvable on this library")
    else:
        print("   task funnel after the screen: every rule that saves anything drops a program at the bar here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="sandbox worker processes (default: 2)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N programs of the library")
    parser.add_argument("--tiers", default="search", help="comma-separated tiers whose (program, task) pairs the "
                        "halving figures pool (default: search; the screen and task funnel use the search tier)")
    parser.add_argument("--out", default="funnel.json", help="collected figures, JSON (default: funnel.json)")
    parser.add_argument("--report", action="store_true", help="only print the figures from --out (nothing runs)")
    parser.add_argument("--bar", type=float, default=0.8, help="full fitness a program must keep (default: 0.8)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = [t for t in tiers if t not in TIERS]
    if unknown or "search" not in tiers:
        print(f"error: --tiers must include search and name only {', '.join(TIERS)}, got {args.tiers!r}", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out)
    if args.report and not out.exists():
        print(f"error: {out} does not exist (run without --report first)", file=sys.stderr)
        sys.exit(2)
    from sandbox.evaluate import EvalSettings
    from sandbox.tasks import suite as suite_tasks

    # Collection needs every LR's full-length selection runs: the evaluator's halving is off here.
    settings = EvalSettings(device=args.device, halving=None)
    rules = (*SCHEDULES, evaluator_rule())
    order = [t.key for t in suite_tasks(settings.suite)]
    saved = json.loads(out.read_text()) if out.exists() else {}
    data = {tier: saved.get(tier, {}) for tier in tiers}
    if not args.report:
        from transfer import library

        from sandbox.contract import program_hash
        from sandbox.evaluate import Evaluator
        from sandbox.executor import make_executor
        from sandbox.runcache import RunCache

        programs = library()
        labels = list(programs)[: args.limit] if args.limit else list(programs)
        for tier in tiers:  # a program that left the library or changed its code is scored afresh
            data[tier] = {k: row for k, row in data[tier].items()
                          if k in programs and row.get("hash") == program_hash(programs[k])}
        # The seeds transfer.py measures each tier on, so its cached runs answer.
        seeds = {"search": settings.measure_seeds, "validation": settings.confirm_seeds, "test": settings.test_seeds}
        executor = make_executor("local", device=args.device, size=args.workers)
        cache = RunCache()

        def save() -> None:
            out.write_text(json.dumps({**saved, **data}))

        try:
            for tier in tiers:
                evaluator = Evaluator(executor, cache, replace(settings, measure_seeds=seeds[tier]))
                collect(labels, programs, evaluator, tier, data[tier], save)
                # Off the search tier the 1/16 rung (already far beyond the goal there) is not
                # scored: its many changed picks would cost more CPU than the rest together.
                scored = rules if tier == "search" else [s for s in rules if min(s.fractions, default=1) >= 0.125]
                fill_alternatives(data[tier], programs, evaluator, tier, scored, save)
        finally:
            executor.close()
    if not data["search"]:
        print(f"error: {out} holds no search-tier figures", file=sys.stderr)
        sys.exit(2)
    report({t: r for t, r in data.items() if r}, order, args.bar, settings.screen_threshold, rules)


if __name__ == "__main__":
    main()
