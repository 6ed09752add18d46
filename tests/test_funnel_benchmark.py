"""The pure parts of benchmarks/funnel.py on synthetic rows (no evaluator, no runs)."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.evaluate import EvalSettings
from sandbox.halving import Schedule
from sandbox.tasks.base import val_steps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import funnel

GRID = EvalSettings().grid()
STEPS = 400
POINTS = val_steps(STEPS)


def _runs(ends, rates):
    """Two identical seeds per LR of smooth curves from 3.0 towards ``ends[lr]``."""
    def rec(lr):
        values = [ends[lr] + (3.0 - ends[lr]) * math.exp(-rates[lr] * p / STEPS) for p in POINTS]
        return {"val_steps": POINTS, "val_losses": values, "stopped_at": None, "status": "ok"}
    return {repr(lr): [rec(lr), rec(lr)] for lr in GRID}


def _task(score, late_bloomer=False, alt=None):
    ends = {lr: 1.0 for lr in GRID}
    rates = {lr: 6.0 for lr in GRID}
    ends[1e-2] = 0.5  # the full grid's pick
    if late_bloomer:
        ends[1e-2], rates[1e-2] = 0.05, 2.0  # behind at 1/8 of the budget, best at the end
    return {"score": score, "best_lr": 1e-2, "steps": STEPS, "points": POINTS, "runs": _runs(ends, rates),
            "alt_scores": {} if alt is None else {repr(lr): alt for lr in GRID if lr != 1e-2}}


def _row(screen, full, scores, late=(), alt=None):
    tasks = {f"t{i}": _task(s, late_bloomer=i in late, alt=alt) for i, s in enumerate(scores)}
    return {"screen": screen, "screen_failed": False, "full": full, "spread": 0.0, "failed": False,
            "screen_run_steps": 12 * STEPS, "tasks": tasks}


def test_screen_figures_count_false_drops_and_the_full_stage_a_drop_skips():
    rows = {"a": _row(0.2, 0.9, [0.9, 0.9]), "b": _row(0.1, 0.1, [0.1, 0.1]), "c": _row(0.5, 1.2, [1.2, 1.2])}
    f = funnel.screen_figures(rows, 0.3, 0.8)
    assert (f["programs"], f["dropped"], f["reach_bar"], f["false"]) == (3, 2, 2, ["a"])
    assert f["false_rate"] == 0.5
    full = 2 * STEPS * (22 + 2)  # two tasks, 22 selection runs and 2 measurement runs each
    assert f["saved"] == pytest.approx(2 * (full - 12 * STEPS) / (3 * full))
    assert funnel.screen_figures(rows, 0.05, 0.8)["saved"] == 0.0


def test_halving_figures_score_the_changed_picks_and_count_programs_pushed_below_the_bar():
    rows = {"steady": _row(0.9, 0.9, [0.9, 0.9]),
            "late": _row(0.9, 0.9, [0.9, 0.9], late={0}, alt=0.5)}
    full_grid = funnel.halving_figures(rows, Schedule(()), 0.8)
    assert (full_grid["changed"], full_grid["saved"], full_grid["crossed"]) == (0, 0.0, [])
    early = funnel.halving_figures(rows, Schedule((0.125,)), 0.8)
    assert (early["pairs"], early["changed"], early["contender_changed"]) == (4, 1, 1)
    assert early["ratio_median"] == pytest.approx(0.5 / 0.9)
    assert (early["harmful"], early["harmful_rate"]) == (1, 0.25)  # 0.56x < HARM_RATIO
    assert early["crossed"] == ["late"]  # sqrt(0.5 * 0.9) = 0.67 < 0.8
    assert early["worst_factor"] == pytest.approx(math.sqrt(0.5 * 0.9) / 0.9)
    assert early["best_factor"] == pytest.approx(1.0)
    select = 2 * (11 * 48 + 6 * (STEPS - 48))  # per pair: 11 LRs to the rung, 6 to the end, 2 seeds
    assert early["saved_select"] == pytest.approx(1 - select / (22 * STEPS))
    assert early["saved"] == pytest.approx(1 - (select + 2 * STEPS) / (24 * STEPS))
    both = [full_grid, early]
    assert funnel.recommend(both, both) is None  # the only saving schedule moves a program below the bar
    safe = funnel.halving_figures(rows, Schedule((0.75,)), 0.8)  # the late bloomer leads by then
    three = [full_grid, early, safe]
    assert safe["changed"] == 0 and funnel.recommend(three, three)["label"] == safe["label"]


def test_a_change_to_an_lr_that_scores_as_well_is_not_harmful_and_tiers_pool():
    search = {"late": _row(0.9, 0.9, [0.9, 0.9], late={0}, alt=0.9)}
    other = {"late": _row(0.9, 0.9, [0.9, 0.9], late={0}, alt=0.3)}
    early = Schedule((0.125,))
    alone = funnel.halving_figures(search, early, 0.8)
    assert (alone["changed"], alone["harmful"], alone["crossed"]) == (1, 0, [])
    pooled = funnel.pooled({"search": search, "test": other})
    assert sorted(pooled) == ["search:late", "test:late"]
    everywhere = funnel.halving_figures(pooled, early, 0.8)
    assert (everywhere["pairs"], everywhere["changed"], everywhere["harmful"]) == (4, 2, 1)
    assert everywhere["crossed"] == ["test:late"]
    # harmless on the search tier alone, but it pushes a program below the bar on another tier
    assert funnel.recommend([alone], [alone]) is None  # it drops the full grid's pick in 1 of 2 pairs
    assert funnel.recommend([alone], [alone], key="harmful_rate")["label"] == alone["label"]  # at no cost
    assert funnel.recommend([alone], [everywhere], key="harmful_rate") is None


def test_an_unscored_alternative_is_reported_not_guessed():
    rows = {"late": _row(0.9, 0.9, [0.9, 0.9], late={0})}
    early = funnel.halving_figures(rows, Schedule((0.125,)), 0.8)
    assert early["missing"] == 1 and math.isnan(early["ratio_median"])
    assert funnel.recommend([early], [early]) is None


def test_task_funnel_drops_on_the_partial_geomean_and_saves_the_remaining_tasks():
    rows = {"weak_start": _row(0.9, 1.47, [0.2, 4.0, 4.0]), "weak": _row(0.2, 0.2, [0.2, 0.2, 0.2]),
            "good": _row(0.9, 1.1, [1.1, 1.1, 1.1])}
    order = ["t0", "t1", "t2"]
    f = funnel.task_funnel_figures(rows, order, 1, 0.5, 0.8)
    assert (f["dropped"], f["false"], f["false_one"], f["reach_bar"]) == (2, ["weak_start"], ["weak_start"], 2)
    assert f["saved"] == pytest.approx(2 * 2 / 9)  # two programs skip two of three equal tasks
    f2 = funnel.task_funnel_figures(rows, order, 2, 0.5, 0.8)
    assert (f2["dropped"], f2["false"]) == (1, [])
    assert funnel.task_funnel_figures(rows, order, 2, 0.5, 0.8, after_screen=0.3)["programs"] == 2


def test_report_without_collected_figures_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "funnel.py"), "--report",
                           "--out", str(tmp_path / "none.json")], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_screen_noise_from_the_two_seeds_screens():
    rows = {}
    for i, d in enumerate([0.2, -0.2, 0.2, -0.2]):  # log differences between the two screens
        rows[f"p{i}"] = {**_row(0.5 * math.exp(d / 2), 0.5, [0.5]), "screen_replica": 0.5 * math.exp(-d / 2)}
    rows["clipped"] = {**_row(0.05, 0.1, [0.1]), "screen_replica": 0.4}  # at the score floor: not counted
    # Two programs at the bar whose screens agree (differences 0): six differences, mean 0.
    sigma = math.sqrt(4 * 0.04 / 5) / math.sqrt(2)
    rows["at_threshold"] = {**_row(0.3, 0.9, [0.9]), "screen_replica": 0.3}
    rows["one_sigma_above"] = {**_row(0.3 * math.exp(sigma), 0.9, [0.9]), "screen_replica": 0.3 * math.exp(sigma)}
    noise = funnel.screen_noise(rows, 0.3, 0.8)
    assert noise["n"] == 6 and noise["sigma"] == pytest.approx(sigma)
    assert set(noise["p_drop"]) == {"at_threshold", "one_sigma_above"}
    assert noise["p_drop"]["at_threshold"] == pytest.approx(0.5)
    assert noise["p_drop"]["one_sigma_above"] == pytest.approx(0.5 * (1 + math.erf(-1 / math.sqrt(2))))
    assert noise["expected_false"] == pytest.approx((0.5 + noise["p_drop"]["one_sigma_above"]) / 2)


def test_screen_ratio_risk_reads_the_librarys_screen_to_full_ratios():
    rows = {"a": _row(0.2, 0.8, [0.8]), "b": _row(0.5, 0.5, [0.5]), "c": _row(0.3, 0.9, [0.9]),
            "floor": _row(0.05, 0.6, [0.6])}  # at the score floor: no ratio
    risk = funnel.screen_ratio_risk(rows, 0.3, 0.8)  # ratios 0.25, 1.0, 0.33 against 0.375
    assert (risk["n"], risk["below"]) == (3, 2) and risk["rate"] == pytest.approx(2 / 3)
    assert funnel.screen_ratio_risk(rows, 0.2, 0.8)["below"] == 0  # 0.25 is not below 0.25


def test_with_midpoints_makes_the_screens_coarse_grid_the_whole_grid():
    grid = EvalSettings().lr_grid
    fine = funnel.with_midpoints(grid)
    assert len(fine) == 2 * len(grid) - 1
    assert EvalSettings(lr_grid=fine).grid(coarse=True) == sorted(grid)  # the very floats: the same cache keys
    assert fine[1] == pytest.approx(math.sqrt(grid[0] * grid[1]))


def test_screen_figures_for_the_whole_grid_screen():
    rows = {"a": {**_row(0.2, 0.9, [0.9]), "screen_fine": 0.5, "screen_fine_run_steps": 22 * STEPS},
            "b": {**_row(0.1, 0.1, [0.1]), "screen_fine": 0.1, "screen_fine_run_steps": 22 * STEPS}}
    coarse = funnel.screen_figures(rows, 0.3, 0.8)
    whole = funnel.screen_figures(rows, 0.3, 0.8, key="screen_fine")
    assert coarse["false"] == ["a"] and whole["false"] == [] and whole["dropped"] == 1
    full = STEPS * (22 + 2)  # one task each
    assert whole["saved"] == pytest.approx((full - 22 * STEPS) / (2 * full))


def test_bar_margin_is_the_weakest_start_of_a_program_at_the_bar():
    rows = {"weak_start": _row(0.9, 1.47, [0.2, 4.0, 4.0]), "weak": _row(0.2, 0.2, [0.2, 0.2, 0.2]),
            "good": _row(0.9, 1.1, [1.1, 1.1, 1.1])}
    assert funnel.bar_margin(rows, ["t0", "t1", "t2"], 1, 0.8) == (pytest.approx(0.2), "weak_start")
    assert funnel.bar_margin(rows, ["t0", "t1", "t2"], 2, 0.8) == (pytest.approx(math.sqrt(0.8)), "weak_start")
    assert funnel.bar_margin(rows, ["t0", "t1", "t2"], 2, 2.0)[1] == "-"
