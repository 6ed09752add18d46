"""Scores: speed-up over tuned AdamW (shared/DESIGN.md section 3).

Two curves are scored. The *validation* score (the task score, AlgoPerf's time-to-target) is
:func:`validation_score` below; the *training-loss* speed-up (reported beside it) is
:func:`speedup_score`, described first.

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


def seed_fitnesses(per_seed: Sequence[Sequence[float]]) -> np.ndarray:
    """Each measurement seed's fitness from a tasks x seeds table of scores: the geometric mean
    over tasks of that seed's scores (clipped as above). Their spread is a fitness's seed noise."""
    return np.exp(np.log(np.clip(np.asarray(per_seed, dtype=np.float64), SCORE_MIN, None)).mean(axis=0))


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


# --- validation targets (the task score) -------------------------------------------------------


def best_so_far(values: Sequence[float]) -> np.ndarray:
    """Running minimum of a validation curve; nothing after a NaN/inf counts (it stays +inf)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return arr
    bad = np.nonzero(~np.isfinite(arr))[0]
    out = arr.copy()
    if bad.size:
        out[bad[0]:] = np.inf
    return np.minimum.accumulate(out)


def reach_time(steps: Sequence[int], best: np.ndarray, level: float) -> float | None:
    """The (linearly interpolated) step at which a best-so-far curve measured at ``steps`` first
    reaches ``level``; None if it never does. A curve that starts at the level reaches it at 1."""
    hits = np.nonzero(best <= level)[0]
    if not hits.size:
        return None
    k = int(hits[0])
    if k == 0:
        return 1.0
    v0, v1 = float(best[k - 1]), float(best[k])
    s0, s1 = float(steps[k - 1]), float(steps[k])
    frac = (v0 - level) / (v0 - v1) if v0 > v1 and math.isfinite(v0) else 1.0
    return max(1.0, s0 + frac * (s1 - s0))


def validation_score(cand_steps: Sequence[int], cand_values: Sequence[float], ref_steps: Sequence[int],
                     ref_values: Sequence[float], target: float, budget: int) -> float:
    """Speed-up to a validation target over a reference (tuned AdamW's measured curve).

    ``target`` is the value tuned AdamW reaches within its budget (its best-so-far at the end,
    mean over selection seeds). With T_ref the step at which the reference curve reaches the
    target (the budget if it never does):

    * the candidate reaches the target at step s:  score = T_ref / s
    * it never does, best value L:                 score = t_ref(L) / T, the step at which the
      reference reached L over the budget ("how far it got"; T_ref / T if the reference got no
      further than L itself).

    Steps are interpolated between measurement points; the score is clipped to [0.05, 20].
    """
    cand = best_so_far(cand_values)
    ref = best_so_far(ref_values)
    if cand.size == 0 or ref.size == 0 or not np.isfinite(cand[-1]):
        return FAILED_SCORE
    t_ref = reach_time(ref_steps, ref, target) or float(budget)
    s = reach_time(cand_steps, cand, target)
    if s is not None:
        return clip_score(t_ref / s)
    # Got at least as far as the reference's measured runs (which then missed the target, set on
    # other seeds): credited with the reference's own time, so a curve equal to it scores 1.0.
    t = t_ref if cand[-1] <= ref[-1] else reach_time(ref_steps, ref, float(cand[-1]))
    return clip_score((t if t is not None else t_ref) / budget)


def end_value_cap(cand_ends: Sequence[float], ref_ends: Sequence[float], ref_steps: Sequence[int],
                  ref_values: Sequence[float], budget: int) -> float | None:
    """The most a candidate may score when it *ends* worse than the reference beyond seed noise.

    A rule that reaches the target early and then degrades (overfits, or drifts off) must not
    beat AdamW on that task: when the candidate's mean final validation value exceeds the
    reference's by more than the larger per-seed standard deviation of the two, its score is
    capped at t_ref(final) / T (<= 1), "how far it got" judged by where it ended. None: no cap.
    """
    cand = np.asarray(cand_ends, dtype=np.float64)
    ref = np.asarray(ref_ends, dtype=np.float64)
    if cand.size == 0 or ref.size == 0 or not np.all(np.isfinite(ref)):
        return None
    if not np.all(np.isfinite(cand)):
        return FAILED_SCORE
    noise = max(float(np.std(cand)), float(np.std(ref)))
    end = float(np.mean(cand))
    if end <= float(np.mean(ref)) + noise:
        return None
    t = reach_time(ref_steps, best_so_far(ref_values), end)
    return clip_score((t if t is not None else budget) / budget)


def mean_val_curve(records: Sequence[dict], steps: Sequence[int]) -> list[float]:
    """Average several seeds' validation curves measured at ``steps``; a run that stopped early
    counts as +inf after its last measurement (a failure is not averaged away)."""
    padded = np.full((len(records), len(steps)), np.inf)
    for i, rec in enumerate(records):
        values = np.asarray(rec.get("val_losses") or [], dtype=np.float64)[: len(steps)]
        padded[i, : values.size] = np.where(np.isfinite(values), values, np.inf)
    with np.errstate(invalid="ignore"):
        return padded.mean(axis=0).tolist()
