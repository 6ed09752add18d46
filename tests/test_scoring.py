"""The scoring rule of shared/DESIGN.md section 3, checked on curves with known answers."""

import math

import numpy as np
import pytest

from sandbox import scoring


def hyperbolic(rate: float, steps: int = 200) -> list[float]:
    return [1.0 / (1.0 + rate * i) for i in range(steps)]


def test_adamw_against_itself_scores_one():
    curve = hyperbolic(0.05)
    assert scoring.speedup_score(curve, curve, 200) == pytest.approx(1.0)


def test_twice_as_fast_scores_about_two():
    # 1/(1+0.1 i) reaches AdamW's final loss at half the steps.
    score = scoring.speedup_score(hyperbolic(0.1), hyperbolic(0.05), 200)
    assert score == pytest.approx(2.0, rel=0.03)


def test_half_as_far_scores_about_half():
    score = scoring.speedup_score(hyperbolic(0.025), hyperbolic(0.05), 200)
    assert score == pytest.approx(0.5, rel=0.03)


def test_failures_and_worse_than_start_score_the_floor():
    base = hyperbolic(0.05)
    assert scoring.speedup_score([1.0, float("nan")], base, 200) == scoring.FAILED_SCORE
    assert scoring.speedup_score([5.0] * 200, base, 200) == scoring.FAILED_SCORE
    assert scoring.speedup_score([], base, 200) == scoring.FAILED_SCORE


def test_scores_are_clipped_to_twenty():
    fast = [1.0] + [1e-9] * 199
    assert scoring.speedup_score(fast, hyperbolic(0.05), 200) == scoring.SCORE_MAX


def test_a_run_stopped_early_cannot_reach_the_target_later():
    base = hyperbolic(0.05)
    stopped = hyperbolic(0.05)[:50]  # same speed, but it stopped at step 50
    assert scoring.speedup_score(stopped, base, 200) == pytest.approx(50 / 200, rel=0.05)


def test_smoothing_makes_noisy_curves_monotone_and_drops_everything_after_nan():
    rng = np.random.default_rng(0)
    noisy = np.array(hyperbolic(0.05)) * (1 + 0.3 * rng.standard_normal(200))
    smoothed = scoring.smooth(noisy, 200)
    assert np.all(np.diff(smoothed) <= 0)
    broken = scoring.smooth([3.0, 2.0, float("nan"), 0.1], 4)
    # The 0.1 after the NaN never counts: the best reached stays the pre-NaN 2.0.
    assert list(broken) == [3.0, 2.0, 2.0, 2.0]


def test_geometric_mean_and_mean_curve():
    assert scoring.geometric_mean([2.0, 0.5]) == pytest.approx(1.0)
    mean = scoring.mean_curve([[1.0, 0.5, 0.25], [1.0, 0.5]], 3)
    assert mean[:2] == [1.0, 0.5] and math.isinf(mean[2])


def test_downsample_keeps_ends():
    values = list(range(1000))
    out = scoring.downsample(values, 64)
    assert len(out) == 64 and out[0] == 0 and out[-1] == 999


# --- validation targets -------------------------------------------------------------------------

STEPS = list(range(0, 201, 4))  # validation measured every 4 steps of a 200-step budget


def val_curve(rate: float, floor: float = 0.0, rise: float = 0.0) -> list[float]:
    """1/(1 + rate t) + floor, plus a linear rise over the second half (overfitting)."""
    return [1.0 / (1.0 + rate * t) + floor + rise * max(0, t - 100) / 100 for t in STEPS]


def test_validation_score_of_the_reference_against_its_own_target_is_one():
    ref = val_curve(0.05)
    target = scoring.best_so_far(ref)[-1]
    assert scoring.validation_score(STEPS, ref, STEPS, ref, target, 200) == pytest.approx(1.0)


def test_validation_score_is_the_speed_up_to_the_target_interpolated_between_points():
    ref = val_curve(0.05)  # reaches 1/11 at step 200
    target = scoring.best_so_far(ref)[-1]
    # 1/(1+0.08 t) reaches 1/11 at t = 125, between the measurement points 124 and 128.
    assert scoring.validation_score(STEPS, val_curve(0.08), STEPS, ref, target, 200) == pytest.approx(200 / 125, rel=2e-3)


def test_validation_score_of_a_slower_rule_is_how_far_it_got():
    ref = val_curve(0.05)
    target = scoring.best_so_far(ref)[-1]
    slow = val_curve(0.025)  # ends at 1/6, which the reference reached at step 100
    assert scoring.validation_score(STEPS, slow, STEPS, ref, target, 200) == pytest.approx(0.5, rel=1e-3)


def test_target_from_selection_seeds_that_the_measured_reference_misses():
    ref = val_curve(0.05)
    target = 0.5 * scoring.best_so_far(ref)[-1]  # lower than anything the measured curve reached
    # Neither curve reaches it: the reference's own time is the budget; the candidate, better than
    # the reference's best, is credited with the reference's full budget (1.0), never more.
    assert scoring.validation_score(STEPS, val_curve(0.06), STEPS, ref, target, 200) == pytest.approx(1.0)
    assert scoring.validation_score(STEPS, ref, STEPS, ref, target, 200) == pytest.approx(1.0)


def test_a_run_that_failed_is_judged_by_what_it_reached_and_capped_to_the_floor_by_its_end():
    ref = val_curve(0.05)
    broken = val_curve(0.1)[:10] + [math.nan] * (len(STEPS) - 10)  # best 1/4.6 at step 36, then NaN
    reached = scoring.validation_score(STEPS, broken, STEPS, ref, scoring.best_so_far(ref)[-1], 200)
    assert reached == pytest.approx((1 / (1 / 4.6) - 1) / 0.05 / 200, rel=0.02)  # where the reference got as far
    assert scoring.end_value_cap([math.inf, 0.1], [ref[-1]] * 2, STEPS, ref, 200) == scoring.FAILED_SCORE
    assert scoring.validation_score(STEPS, [], STEPS, ref, 0.1, 200) == scoring.FAILED_SCORE
    assert scoring.validation_score(STEPS, [math.nan] * len(STEPS), STEPS, ref, 0.1, 200) == scoring.FAILED_SCORE


def test_a_rule_that_is_fast_but_ends_worse_than_adamw_beyond_noise_is_capped_below_one():
    ref = val_curve(0.05)
    target = scoring.best_so_far(ref)[-1]
    overfit = val_curve(0.2, rise=0.3)  # reaches the target at step ~50, then rises to ~0.32
    fast = scoring.validation_score(STEPS, overfit, STEPS, ref, target, 200)
    assert fast > 3.0  # what time-to-target alone would say
    cand_ends, ref_ends = [overfit[-1] - 0.01, overfit[-1] + 0.01], [ref[-1] - 0.005, ref[-1] + 0.005]
    cap = scoring.end_value_cap(cand_ends, ref_ends, STEPS, ref, 200)
    assert cap is not None and cap < 1.0
    # It is "how far it got", judged by where it ended: the reference reached ~0.32 at step ~42.
    assert cap == pytest.approx(scoring.reach_time(STEPS, scoring.best_so_far(ref), overfit[-1]) / 200)


def test_an_end_within_seed_noise_of_adamw_is_not_capped():
    ref = val_curve(0.05)
    cand = val_curve(0.05, floor=0.004)  # the reference's curve, ending 0.004 higher
    spread = [cand[-1] - 0.01, cand[-1] + 0.01]  # per-seed std 0.01 > the 0.004 gap
    assert scoring.end_value_cap(spread, [ref[-1], ref[-1]], STEPS, ref, 200) is None
    assert scoring.end_value_cap([cand[-1]] * 2, [ref[-1]] * 2, STEPS, ref, 200) is not None


def test_mean_val_curve_counts_a_stopped_seed_as_infinite_after_it_stopped():
    records = [{"val_losses": [1.0, 0.5, 0.25]}, {"val_losses": [1.0, 0.7]}]
    assert scoring.mean_val_curve(records, [0, 10, 20]) == [1.0, 0.6, math.inf]


def test_reach_time_interpolates_and_starts_at_one():
    best = np.array([1.0, 0.5, 0.25])
    assert scoring.reach_time([0, 10, 20], best, 0.75) == pytest.approx(5.0)
    assert scoring.reach_time([0, 10, 20], best, 1.0) == 1.0
    assert scoring.reach_time([0, 10, 20], best, 0.1) is None
