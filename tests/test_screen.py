"""The screen (the funnel's cheap first stage) runs the whole LR grid on one seed, and a program
that passes it pays nothing for it: its runs are the selection's seed-0 runs."""

from __future__ import annotations

from sandbox.evaluate import EvalSettings, Evaluator
from sandbox.executor import make_executor
from sandbox.references import reference_source
from sandbox.runcache import RunCache

GRID = (1e-3, 1e-2, 0.1, 1.0)


def test_the_screen_runs_every_lr_of_the_grid_and_the_full_stage_reuses_them(tmp_path):
    # On every other point of the grid, Adamax (best LRs 0.1 and 1.0 on the screen's tasks)
    # screened at 0.27 with a search fitness of 0.92: a good program dropped by the grid alone.
    settings = EvalSettings(tasks=("rosenbrock", "noisy_quadratic"), steps_scale=0.05, lr_grid=GRID,
                            measure_seeds=(100,))
    executor = make_executor("local", size=2)
    try:
        evaluator = Evaluator(executor, RunCache(tmp_path / "runs.sqlite"), settings)
        source = reference_source("adamax")
        screen = evaluator.evaluate(source, stage="screen")
        runs = [r for r in screen.run_records if r["role"] == "screen"]
        for task in settings.tasks:
            assert sorted(r["lr"] for r in runs if r["task"] == task) == sorted(GRID)
        assert {r["seed"] for r in runs} == {settings.selection_seeds[0]}
        full = evaluator.evaluate(source, stage="full")
        # What the full stage runs besides the screen: the other selection seed (on the LRs the
        # screen's runs rank in the better half: halving's seed-ranked rule), and the measurement.
        assert full.runs_cached == len(runs)
        kept = settings.halving.keep_count(len(GRID))
        assert full.runs_executed == len(settings.tasks) * (kept * (len(settings.selection_seeds) - 1) + 1)
    finally:
        executor.close()
