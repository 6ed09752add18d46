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
