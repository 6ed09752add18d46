"""Scores: speed-up over tuned AdamW on a smoothed loss curve (shared/DESIGN.md section 3).

Let T be the step budget and L* tuned AdamW's final (smoothed) loss.

* If the candidate reaches L* at step s:       score = T_AdamW(L*) / s
* If it never does, with final loss L:         score = t_AdamW(L) / T

where t_AdamW(L) is the first step at which AdamW's smoothed curve reached L. So 1.0 means "as
good as tuned AdamW", 2.0 "twice as fast", 0.5 "got half as far". Scores are clipped to
[0.05, 20]; a failed run scores 0.05. Fitness is the geometric mean over tasks.

Curves are smoothed with a trailing moving average and then made monotone with a running
minimum, so "first step that reached L" is well defined on noisy minibatch losses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCORE_MIN = 0.05
SCORE_MAX = 20.0
FAILED_SCORE = SCORE_MIN
SMOOTHING_FRACTION = 0.02  # moving-average window as a fraction of the budget


def smooth(curve: Sequence[float], budget: int | None = None) -> np.ndarray:
    """Trailing moving average (window = 2% of the budget, at least 1) then a running minimum.

    NaN/inf entries become +inf so they never count as progress.
    """
    values = np.asarray(curve, dtype=np.float64)
    if values.size == 0:
        return values
    bad = np.nonzero(~np.isfinite(values))[0]
    finite = values[: bad[0]] if bad.size else values  # nothing after a NaN/inf counts
    window = max(1, int(round(SMOOTHING_FRACTION * (budget or values.size))))
    out = np.full(values.size, np.inf)
    if finite.size:
        cumsum = np.concatenate([[0.0], np.cumsum(finite)])
        idx = np.arange(finite.size)
        lo = np.maximum(0, idx + 1 - window)
        out[: finite.size] = (cumsum[idx + 1] - cumsum[lo]) / (idx + 1 - lo)
    values = out
    return np.minimum.accumulate(values)


def first_step_reaching(smoothed: np.ndarray, level: float) -> int | None:
    """1-based first step whose smoothed loss is <= level, or None."""
    hits = np.nonzero(smoothed <= level)[0]
    return int(hits[0]) + 1 if hits.size else None


def clip_score(score: float) -> float:
    if not math.isfinite(score):
        return FAILED_SCORE
    return float(min(max(score, SCORE_MIN), SCORE_MAX))


def speedup_score(candidate: Sequence[float], adamw: Sequence[float], budget: int) -> float:
    """Speed-up of a candidate's loss curve over tuned AdamW's, both over ``budget`` steps.

    A candidate curve shorter than the budget (stopped early on divergence) is scored on what it
    reached before stopping; it cannot reach L* after it stopped.
    """
    base = smooth(adamw, budget)
    cand = smooth(candidate, budget)
    if base.size == 0 or cand.size == 0 or not np.isfinite(cand[-1]):
        return FAILED_SCORE
    target = base[-1]
    s = first_step_reaching(cand, target)
    if s is not None:
        t_base = first_step_reaching(base, target) or budget
        return clip_score(t_base / s)
    t = first_step_reaching(base, cand[-1])
    if t is None:  # worse than anything AdamW ever recorded, including its first step
        return FAILED_SCORE
    return clip_score(t / budget)


def geometric_mean(values: Sequence[float]) -> float:
    """Geometric mean of positive values (scores are clipped, so never zero)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return float("nan")
    return float(np.exp(np.mean(np.log(np.clip(arr, SCORE_MIN, None)))))


def mean_curve(curves: Sequence[Sequence[float]], budget: int) -> list[float]:
    """Average several seeds' curves step by step; a curve that stopped early counts as inf
    beyond its end, so the mean of a diverged seed is inf there (a failure is not averaged away)."""
    padded = np.full((len(curves), budget), np.inf)
    for i, curve in enumerate(curves):
        values = np.asarray(curve[:budget], dtype=np.float64)
        padded[i, : values.size] = np.where(np.isfinite(values), values, np.inf)
    with np.errstate(invalid="ignore"):
        return padded.mean(axis=0).tolist()


def downsample(curve: Sequence[float], points: int = 64) -> list[float]:
    """At most ``points`` values spread evenly over the curve, always keeping the last one."""
    values = list(curve)
    if len(values) <= points:
        return [float(v) for v in values]
    idx = np.linspace(0, len(values) - 1, points).round().astype(int)
    return [float(values[i]) for i in idx]
