"""Parent selection: the Pareto front over per-task scores, weighted by tasks led (GEPA).

A program that leads on one task survives even if its mean is lower, so the search keeps
several distinct ideas alive instead of collapsing onto the best average. With probability
``explore`` a parent is drawn uniformly from every evaluated program instead, which keeps
rarely-chosen lineages reachable.

All functions are deterministic given the ``random.Random`` they are handed; ties are broken
by program id, never by dict or set order.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

Scores = Mapping[int, Mapping[str, float]]


def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """a is at least as good as b on every task and better on one (tasks missing count as 0)."""
    tasks = sorted(set(a) | set(b))
    at_least = all(a.get(t, 0.0) >= b.get(t, 0.0) for t in tasks)
    better = any(a.get(t, 0.0) > b.get(t, 0.0) for t in tasks)
    return at_least and better


def pareto_front(scores: Scores) -> list[int]:
    """Ids of programs no other program dominates, sorted."""
    ids = sorted(scores)
    return [i for i in ids if not any(dominates(scores[j], scores[i]) for j in ids if j != i)]


def tasks_led(scores: Scores) -> dict[int, int]:
    """For each program, on how many tasks it has the best score (ties count for all leaders)."""
    led = {i: 0 for i in scores}
    tasks = sorted({t for s in scores.values() for t in s})
    for task in tasks:
        best = max(s.get(task, 0.0) for s in scores.values())
        for i in sorted(scores):
            if scores[i].get(task, 0.0) >= best:
                led[i] += 1
    return led


def select_parents(scores: Scores, rng: random.Random, count: int = 1, explore: float = 0.15) -> list[int]:
    """Draw ``count`` distinct parents (fewer if fewer programs exist)."""
    if not scores:
        return []
    front = pareto_front(scores)
    led = tasks_led(scores)
    everyone = sorted(scores)
    chosen: list[int] = []
    while len(chosen) < min(count, len(everyone)):
        if rng.random() < explore:
            pool = [i for i in everyone if i not in chosen]
            weights = [1.0] * len(pool)
        else:
            pool = [i for i in front if i not in chosen] or [i for i in everyone if i not in chosen]
            # +0.5 keeps front members that lead no task (but are not dominated) in play.
            weights = [led[i] + 0.5 for i in pool]
        chosen.append(rng.choices(pool, weights=weights, k=1)[0])
    return chosen
