"""Successive halving wired in: the harness cuts LRs at a rung, the job carries the schedule, the
evaluator's selection halves (seed-ranked on screened tasks, rung elsewhere) and the run cache
never mistakes a pruned run for a full one."""

from __future__ import annotations

import pytest
import torch

from sandbox.evaluate import EvalSettings, Evaluator
from sandbox.executor import make_executor
from sandbox.halving import PRUNED, RECOMMENDED, Schedule, replay, seed_ranked, successive_halving
from sandbox.harness import RunConfig, run_candidate
from sandbox.jobs import run_job
from sandbox.references import load_reference, reference_source
from sandbox.runcache import RunCache
from sandbox.tasks import get_task
from sandbox.tasks.base import val_steps

torch.set_num_threads(1)

ADAMW = load_reference("adamw")
GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
CONFIGS = [RunConfig(lr, seed) for lr in GRID for seed in (0, 1)]
STEPS = 80


def _by_lr(results):
    runs = {}
    for r in results:
        runs.setdefault(r.lr, []).append({"val_steps": r.val_steps, "val_losses": r.val_losses,
                                          "stopped_at": r.stopped_at, "status": r.status})
    return runs


# noisy_quadratic: stochastic (decides at the rung's step); rosenbrock: full batch (decides one
# step later). Rows of both are independent of the batch's size, so survivors match bit for bit.
@pytest.mark.parametrize("name", ["noisy_quadratic", "rosenbrock"])
@pytest.mark.parametrize("batched", [True, False])
def test_survivors_are_the_full_runs_and_the_rest_are_pruned_prefixes(name, batched):
    task = get_task(name)
    full = run_candidate(ADAMW, task, CONFIGS, steps=STEPS, batched=batched)
    half = run_candidate(ADAMW, task, CONFIGS, steps=STEPS, batched=batched, halving=RECOMMENDED)
    rung = RECOMMENDED.rung_points(val_steps(STEPS), STEPS)[0]
    expected = successive_halving(_by_lr(full), STEPS, val_steps(STEPS), RECOMMENDED)
    assert sorted({r.lr for r in half if r.status != PRUNED}) == expected.alive[-1]
    assert len(expected.alive[-1]) == RECOMMENDED.keep_count(len(GRID)) == 3
    for h, f in zip(half, full):
        assert (h.lr, h.seed, h.batched) == (f.lr, f.seed, f.batched)
        if h.status != PRUNED:
            assert h == f  # continued, not restarted: the very same run
            continue
        assert h.stopped_at == rung and h.test_metric is None
        assert h.losses == f.losses[:rung] and len(h.losses) == rung
        k = len(h.val_steps)
        assert h.val_steps[-1] == rung and h.val_steps == f.val_steps[:k] and h.val_losses == f.val_losses[:k]
    # The evaluator's replay of the cut on the pruned records repeats the harness's decision.
    assert replay(_by_lr(half), STEPS, val_steps(STEPS), RECOMMENDED).alive == expected.alive


def test_a_program_vmap_cannot_trace_halves_on_the_sequential_path():
    from tests.test_harness import DATA_DEPENDENT_IF

    task = get_task("noisy_quadratic")
    full = run_candidate(DATA_DEPENDENT_IF, task, CONFIGS, steps=40, batched=False)
    half = run_candidate(DATA_DEPENDENT_IF, task, CONFIGS, steps=40, halving=RECOMMENDED)  # falls back
    assert not any(r.batched for r in half)
    assert [r.status for r in half].count(PRUNED) == 4
    assert all(h == f for h, f in zip(half, full) if h.status != PRUNED)


def test_a_single_lr_or_no_schedule_prunes_nothing():
    task = get_task("noisy_quadratic")
    one = run_candidate(ADAMW, task, [RunConfig(1e-2, 0), RunConfig(1e-2, 1)], steps=40, halving=RECOMMENDED)
    assert [r.status for r in one] == ["ok", "ok"]
    assert run_candidate(ADAMW, task, CONFIGS[:4], steps=40, halving=Schedule(())) == \
        run_candidate(ADAMW, task, CONFIGS[:4], steps=40)


@pytest.mark.parametrize("bad", [
    dict(fractions=(0.5, 0.25)), dict(fractions=(0.0,)), dict(fractions=(1.0,)), dict(fractions=(float("nan"),)),
    dict(fractions=[0.25]), dict(fractions=("0.25",)), dict(fractions=(0.25,), keep=0),
    dict(fractions=(0.25,), keep=1.5), dict(fractions=(0.25,), keep=float("nan")),
    dict(fractions=(0.25,), min_keep=0), dict(fractions=(0.25,), min_keep=1.5), dict(fractions=(0.25,), min_keep=True),
])
def test_bad_schedules_raise_value_error(bad):
    with pytest.raises(ValueError):
        Schedule(**bad)


@pytest.mark.parametrize("bad", [None, [0.25], {"fractions": 0.25}, {"keep": 0.5}, {"fractions": [0.25], "x": 1},
                                 {"fractions": [0.5, 0.25]}])
def test_bad_schedule_payloads_raise_value_error(bad):
    with pytest.raises(ValueError):
        Schedule.from_json(bad)


def test_schedules_travel_as_json():
    for schedule in (RECOMMENDED, Schedule((0.125, 0.5), keep=1 / 3, min_keep=2)):
        assert Schedule.from_json(schedule.to_json()) == schedule


def test_the_evaluate_job_halves_when_asked_and_rejects_a_bad_schedule():
    payload = {"source": reference_source("adamw"), "task": "noisy_quadratic", "steps": 40,
               "configs": [[lr, seed] for lr in GRID for seed in (0, 1)]}
    plain = run_job("evaluate", payload)
    halved = run_job("evaluate", {**payload, "halving": RECOMMENDED.to_json()})
    assert plain["ok"] and halved["ok"]
    statuses = [r["status"] for r in halved["value"]["runs"]]
    assert statuses.count(PRUNED) == 4 and PRUNED not in [r["status"] for r in plain["value"]["runs"]]
    for p, h in zip(plain["value"]["runs"], halved["value"]["runs"]):
        assert h == p or h["status"] == PRUNED
    bad = run_job("evaluate", {**payload, "halving": {"fractions": [0.5, 0.25]}})
    assert not bad["ok"] and "fractions" in bad["message"]


def test_pruned_records_replay_only_when_they_reach_the_rung():
    points = val_steps(STEPS)
    full = _by_lr(run_candidate(ADAMW, get_task("noisy_quadratic"), CONFIGS, steps=STEPS))
    early = {lr: [{**r, "status": PRUNED, "stopped_at": 4, "val_steps": r["val_steps"][:3],
                   "val_losses": r["val_losses"][:3]} for r in recs] for lr, recs in full.items()}
    assert replay(early, STEPS, points, RECOMMENDED) is None  # cut at step 4, the rung is at 20
    # Survivors must be full runs: a pruned record where a survivor's should be does not replay.
    result = successive_halving(full, STEPS, points, RECOMMENDED)
    at = result.decided_at[0]
    cut = {lr: [{**r, "status": PRUNED, "stopped_at": at} for r in recs] for lr, recs in full.items()}
    assert replay(cut, STEPS, points, RECOMMENDED) is None
    assert replay(full, STEPS, points, RECOMMENDED) == result


def test_seed_ranked_runs_the_other_seed_on_the_better_half_by_the_first_seeds_final_value():
    points = val_steps(100)

    def rec(end):
        return {"val_steps": points, "val_losses": [end] * len(points), "stopped_at": None, "status": "ok"}

    # Seed 0 ends 1.0, 1.1, 1.2, 0.5, 9.0: keep_count(5) = 3 keeps LRs 4, 1, 2. The full grid
    # would pick LR 3 (mean 0.7); among the kept, LR 1 (mean 0.95) wins.
    runs = {1: [rec(1.0), rec(0.9)], 2: [rec(1.1), rec(1.1)], 3: [rec(1.2), rec(0.2)], 4: [rec(0.5), rec(5.0)],
            5: [rec(9.0), rec(0.0)]}
    assert successive_halving(runs, 100, points, Schedule(())).chosen == 3
    result = seed_ranked(runs, 100, RECOMMENDED)
    assert result.alive == [[1, 2, 3, 4, 5], [1, 2, 4]]
    assert result.chosen == 1
    assert result.run_steps == 100 * (5 + 3) and result.full_run_steps == 100 * 10


SETTINGS = EvalSettings(tasks=("noisy_quadratic", "mlp_digits"), steps_scale=0.1, lr_grid=(1e-4, 1e-3, 1e-2, 0.1),
                        measure_seeds=(100,), screen=False)


@pytest.fixture(scope="module")
def executor():
    ex = make_executor("local", size=2)
    yield ex
    ex.close()


def _select_records(result, task):
    return [r for r in result.run_records if r["task"] == task and r["role"] == "select"]


def test_halving_picks_what_the_full_grid_picks_and_pruned_runs_are_never_reused_in_full(tmp_path, executor):
    source = reference_source("adamw")
    off = Evaluator(executor, RunCache(tmp_path / "off.sqlite"), EvalSettings(**{**SETTINGS.__dict__, "halving": None}))
    cache = RunCache(tmp_path / "on.sqlite")
    on = Evaluator(executor, cache, SETTINGS)
    whole, halved = off.evaluate(source, stage="full"), on.evaluate(source, stage="full")
    assert whole.failure is None and halved.failure is None
    kept = RECOMMENDED.keep_count(4)
    pruned = len(SETTINGS.tasks) * (4 - kept) * 2
    for task in SETTINGS.tasks:
        assert halved.tasks[task].best_lr == whole.tasks[task].best_lr
        statuses = [r["status"] for r in _select_records(halved, task)]
        assert statuses.count(PRUNED) == (4 - kept) * 2 and len(statuses) == 8
    # The survivors are the full grid's runs and the measurement runs the same: the same scores,
    # and tuned AdamW's validation targets (from its best LR's selection runs) are the same too.
    assert halved.fitness == whole.fitness
    for task in SETTINGS.tasks:
        spec = on.tasks_for("search")[SETTINGS.tasks.index(task)]
        assert on.baseline_reference("adamw", spec).target == off.baseline_reference("adamw", spec).target
    assert halved.runs_executed == whole.runs_executed  # every config ran (pruned ones part of the way)
    # A request without halving treats the cached pruned records as missing and runs them in full ...
    off_same_cache = Evaluator(executor, cache, EvalSettings(**{**SETTINGS.__dict__, "halving": None}))
    again = off_same_cache.evaluate(source, stage="full")
    assert again.runs_executed == pruned and again.fitness == whole.fitness
    assert all(r["status"] != PRUNED for r in again.run_records)
    # ... and halving then replays its cut from those full records: nothing runs, same picks.
    replayed = Evaluator(executor, cache, SETTINGS).evaluate(source, stage="full")
    assert replayed.runs_executed == 0 and replayed.fitness == whole.fitness


def test_screened_tasks_rank_lrs_by_the_first_seed_whatever_the_stage(tmp_path, executor):
    settings = EvalSettings(**{**SETTINGS.__dict__, "screen": True})
    cache = RunCache(tmp_path / "runs.sqlite")
    full = Evaluator(executor, cache, settings).evaluate(reference_source("adamw"), stage="full")
    kept = RECOMMENDED.keep_count(4)
    # Both tasks are the screen's: seed 0 on the whole grid, seed 1 on the better half, measurement.
    assert full.runs_executed == len(settings.tasks) * (4 + kept + 1)
    for task in settings.tasks:
        recs = _select_records(full, task)
        assert PRUNED not in {r["status"] for r in recs}
        assert sorted(r["lr"] for r in recs if r["seed"] == 0) == sorted(settings.lr_grid)
        assert len([r for r in recs if r["seed"] == 1]) == kept
    auto = Evaluator(executor, cache, settings).evaluate(reference_source("adamw"))
    assert auto.runs_executed == 0 and auto.fitness == full.fitness


def test_the_funnel_benchmark_simulates_the_evaluators_rule():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import funnel

    rule = funnel.evaluator_rule()
    assert rule.schedule == EvalSettings().halving == RECOMMENDED
    assert rule.seeded == {t.key for t in Evaluator(None, None, EvalSettings()).tasks_for("search")[:2]}
    points = val_steps(100)

    def rec(end):
        return {"val_steps": points, "val_losses": [end] * len(points), "stopped_at": None, "status": "ok"}

    row = {"steps": 100, "points": points,
           "runs": {repr(lr): [rec(e0), rec(e1)] for lr, (e0, e1) in
                    {1e-3: (1.0, 0.9), 1e-2: (1.1, 1.1), 0.1: (1.2, 0.2), 1.0: (0.5, 5.0)}.items()}}
    seeded, other = sorted(rule.seeded)[0], "mlp_digits"
    assert funnel.simulate(rule, seeded, row).run_steps == 100 * (4 + 2)  # seed 1 on the better half by seed 0
    assert funnel.simulate(rule, other, row).run_steps == funnel.simulate(RECOMMENDED, other, row).run_steps
    assert funnel.picks(row, [rule, Schedule(())], seeded) == {rule.label: 1e-3, "full grid (no rung)": 0.1}
