"""Successive halving over the LR grid (sandbox.halving) on synthetic run records."""

import math
import random

import pytest

from sandbox import evaluate
from sandbox.evaluate import EvalSettings, Evaluator
from sandbox.halving import (
    END_POINTS,
    Schedule,
    config_values,
    partial_value,
    rung_survivors,
    successive_halving,
    survivors,
)
from sandbox.runcache import MemoryRunCache
from sandbox.tasks.base import val_steps

GRID = EvalSettings().grid()


def record(points, values, stopped_at=None):
    """A run record as the harness writes it: no validation point at or after a stop."""
    kept = [(p, v) for p, v in zip(points, values) if stopped_at is None or p < stopped_at]
    return {"val_steps": [p for p, _ in kept], "val_losses": [v for _, v in kept], "stopped_at": stopped_at,
            "status": "ok" if stopped_at is None else "diverged", "losses": []}


def curve(points, steps, start, end, rate):
    """A validation curve from ``start`` towards ``end``: fast when ``rate`` is large."""
    return [end + (start - end) * math.exp(-rate * p / steps) for p in points]


def test_end_points_match_the_evaluator():
    assert END_POINTS == evaluate.END_POINTS


def test_partial_value_is_the_mean_of_the_last_points_up_to_the_rung():
    points = [0, 10, 20, 30, 40]
    rec = record(points, [5.0, 4.0, 3.0, 2.0, 1.0])
    assert partial_value(rec, 20) == pytest.approx((5 + 4 + 3) / 3)
    assert partial_value(rec, 40) == pytest.approx((3 + 2 + 1) / 3)
    assert partial_value(rec, 10) == pytest.approx(4.5)  # fewer points than END_POINTS so far
    assert partial_value(rec, 25) == math.inf  # not a measurement point
    stopped = record(points, [5.0, 4.0, 3.0, 2.0, 1.0], stopped_at=31)
    assert partial_value(stopped, 30) == pytest.approx(3.0)  # it was still running at step 30
    assert partial_value(stopped, 40) == math.inf
    assert partial_value(record(points, [5.0, 4.0, math.nan, 2.0, 1.0]), 30) == math.inf


def test_partial_value_at_the_budget_is_the_evaluators_final_value():
    steps = 300
    points = val_steps(steps)
    evaluator = Evaluator(None, MemoryRunCache(), EvalSettings())
    rng = random.Random(0)
    for _ in range(20):
        stop = rng.choice([None, None, rng.randrange(1, steps + 1)])
        rec = record(points, [rng.uniform(0.1, 3.0) for _ in points], stopped_at=stop)
        assert partial_value(rec, steps) == evaluator._final_value(rec, steps)


def test_survivors_keep_the_lowest_with_ties_to_the_smaller_lr_and_stopped_runs_last():
    values = {0.1: 1.0, 0.01: 1.0, 1.0: math.inf, 0.001: 2.0, 3.0: math.nan}
    assert survivors(values, 1) == [0.01]
    assert survivors(values, 2) == [0.01, 0.1]
    assert survivors(values, 3) == [0.001, 0.01, 0.1]
    assert survivors(values, 4) == [0.001, 0.01, 0.1, 1.0]


def test_schedule_keep_counts_and_rung_points():
    halve = Schedule((0.125, 0.25, 0.5))
    assert [halve.keep_count(n) for n in (11, 6, 3, 2, 1)] == [6, 3, 2, 1, 1]
    assert Schedule((0.5,), min_keep=3).keep_count(6) == 3
    assert Schedule((0.5,), min_keep=3).keep_count(2) == 2
    assert Schedule((0.5,), keep=1 / 3).keep_count(11) == 4
    assert halve.rung_points(val_steps(400), 400) == [48, 96, 200]  # measured every 8 steps
    assert halve.rung_points(val_steps(1000), 1000) == [120, 240, 500]
    assert Schedule((0.01, 0.02)).rung_points([0, 50, 100], 100) == [50]  # before the first point: the first
    for bad in ((0.5, 0.25), (0.0,), (1.0,), (0.5, 0.5)):
        with pytest.raises(ValueError):
            Schedule(bad)
    with pytest.raises(ValueError):
        Schedule((0.5,), keep=0.0)


def _grid_runs(steps, rates, ends, seeds=2, noise=0.0, seed=0, stops=None):
    rng = random.Random(seed)
    points = val_steps(steps)
    runs = {}
    for lr in GRID:
        runs[lr] = [record(points, [v + rng.gauss(0, noise) for v in curve(points, steps, 3.0, ends[lr], rates[lr])],
                           stopped_at=(stops or {}).get(lr)) for _ in range(seeds)]
    return points, runs


def test_full_grid_schedule_picks_what_the_evaluator_picks():
    steps = 200
    evaluator = Evaluator(None, MemoryRunCache(), EvalSettings())
    for seed in range(10):
        rng = random.Random(seed)
        rates = {lr: rng.uniform(0.5, 8) for lr in GRID}
        ends = {lr: rng.uniform(0.1, 1.0) for lr in GRID}
        stops = {lr: rng.randrange(1, steps + 1) for lr in GRID if rng.random() < 0.2}
        points, runs = _grid_runs(steps, rates, ends, noise=0.05, seed=seed, stops=stops)
        configs = [(lr, s) for lr in GRID for s in range(2)]
        records = [runs[lr][s] for lr, s in configs]
        best, _, _ = evaluator._best_lr(GRID, configs, records, steps)
        assert successive_halving(runs, steps, points, Schedule(())).chosen == best


def test_halving_keeps_the_pick_when_the_leader_leads_early():
    steps = 400
    rates = {lr: 4.0 for lr in GRID}
    ends = {lr: 0.1 + abs(math.log10(lr) + 2) for lr in GRID}  # best at lr = 1e-2, at every step
    points, runs = _grid_runs(steps, rates, ends)
    result = successive_halving(runs, steps, points, Schedule((0.125, 0.25, 0.5)))
    assert result.chosen == 1e-2
    assert [len(a) for a in result.alive] == [11, 6, 3, 2]
    assert result.decided_at == [48, 96, 200, 400]
    # 2 seeds: 11 configs to step 48, 6 to 96, 3 to 200, 2 to 400
    assert result.run_steps == 2 * (11 * 48 + 6 * 48 + 3 * 104 + 2 * 200)
    assert result.full_run_steps == 2 * 11 * 400


def test_halving_drops_a_late_bloomer_the_full_grid_would_pick():
    steps = 400
    rates = {lr: 6.0 for lr in GRID}
    ends = {lr: 1.0 for lr in GRID}
    rates[1e-3], ends[1e-3] = 2.0, 0.05  # slow start, best end: behind at 1/8 of the budget
    points, runs = _grid_runs(steps, rates, ends)
    assert successive_halving(runs, steps, points, Schedule(())).chosen == 1e-3
    early = successive_halving(runs, steps, points, Schedule((0.125,)))
    assert 1e-3 not in early.alive[1] and early.chosen != 1e-3
    assert successive_halving(runs, steps, points, Schedule((0.125,), keep=1.0)).chosen == 1e-3


def test_a_run_that_diverged_before_a_rung_is_dropped_there():
    steps = 400
    rates = {lr: 4.0 for lr in GRID}
    ends = {lr: 0.5 for lr in GRID}
    ends[1.0] = 0.01  # the best curve, but one seed diverges at step 150
    points, runs = _grid_runs(steps, rates, ends)
    runs[1.0][1] = record(points, curve(points, steps, 3.0, 0.01, 4.0), stopped_at=150)
    assert config_values(runs, 96)[1.0] < config_values(runs, 96)[0.1]  # still the leader at 96
    result = successive_halving(runs, steps, points, Schedule((0.125, 0.25, 0.5)))
    assert 1.0 in result.alive[2] and 1.0 not in result.alive[3]  # survives 48 and 96, dropped at 200
    assert result.chosen != 1.0


def test_rung_survivors_is_the_harness_call_at_one_rung():
    steps = 400
    rates = {lr: 4.0 for lr in GRID}
    ends = {lr: 0.1 + abs(math.log10(lr) + 2) for lr in GRID}  # best at 1e-2, then 3e-2 and 3e-3 ...
    _, runs = _grid_runs(steps, rates, ends)
    kept = rung_survivors(runs, 48, Schedule((0.125,)))
    assert len(kept) == 6 and 1e-2 in kept and kept == sorted(kept)
    assert rung_survivors({lr: runs[lr] for lr in kept}, 96, Schedule((0.125,), min_keep=3)) == [3e-3, 1e-2, 3e-2]


def test_the_recommended_schedule_is_one_rung_at_a_quarter_keeping_half():
    from sandbox.halving import RECOMMENDED

    assert RECOMMENDED.fractions == (0.25,) and RECOMMENDED.keep == 0.5
    assert RECOMMENDED.keep_count(len(GRID)) == 6
    # 2 seeds x (11 LRs to step 96 of 400, then 6 to the end): 34.5% of the full grid's run-steps saved
    steps = 400
    _, runs = _grid_runs(steps, {lr: 4.0 for lr in GRID}, {lr: 0.5 for lr in GRID})
    result = successive_halving(runs, steps, val_steps(steps), RECOMMENDED)
    assert result.run_steps == 2 * (11 * 96 + 6 * (400 - 96))  # the rung decides at the measurement at step 96
    assert 1 - result.run_steps / result.full_run_steps == pytest.approx(1 - 2880 / 4400)
