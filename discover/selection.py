"""Parent selection: the Pareto front over per-task scores, weighted by tasks led (GEPA).

A program that leads on one task survives even if its mean is lower, so the search keeps
several distinct ideas alive instead of collapsing onto the best average. With probability
``explore`` a parent is drawn uniformly from every evaluated program instead, which keeps
rarely-chosen lineages reachable.

All functions are deterministic given the ``random.Random`` they are handed; ties are broken
by program id, never by dict or set order.
"""

from __future__ import annotations

import bisect
import random
import threading
from collections.abc import Mapping

import numpy as np

Scores = Mapping[int, Mapping[str, float]]


def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """a is at least as good as b on every task and better on one (tasks missing count as 0)."""
    tasks = sorted(set(a) | set(b))
    at_least = all(a.get(t, 0.0) >= b.get(t, 0.0) for t in tasks)
    better = any(a.get(t, 0.0) > b.get(t, 0.0) for t in tasks)
    return at_least and better


def pareto_front(scores: Scores) -> list[int]:
    """Ids of programs no other program dominates, sorted.

    The same set as checking every pair, in O(N x front) instead of O(N^2): in descending
    lexicographic order of the score vectors a dominator always comes before what it dominates,
    and domination is transitive, so a program is dominated iff a front member found before it
    dominates it (a campaign's archive holds thousands of programs; this runs every proposal)."""
    ids = sorted(scores)
    if len(ids) < 2:
        return ids
    tasks = sorted({t for s in scores.values() for t in s})
    matrix = np.array([[scores[i].get(t, 0.0) for t in tasks] for i in ids], dtype=float).reshape(len(ids), len(tasks))
    # NaN never dominates nor is dominated (its comparisons are False); for the order only it is -inf.
    order_key = np.where(np.isnan(matrix), -np.inf, matrix)
    order = np.lexsort(order_key.T[::-1])[::-1]
    front_rows: list[int] = []
    front = np.empty((0, len(tasks)))
    for row in order:
        values = matrix[row]
        if front_rows and bool(((front >= values).all(axis=1) & (front > values).any(axis=1)).any()):
            continue
        front_rows.append(int(row))
        front = matrix[front_rows]
    return sorted(ids[r] for r in front_rows)


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
    front, led = _MEMO.front_and_led(scores)
    everyone = sorted(scores)
    chosen: list[int] = []
    while len(chosen) < min(count, len(everyone)):
        if rng.random() < explore:
            pool = [i for i in everyone if i not in chosen]
            weights = [1.0] * len(pool)
        else:
            pool = [i for i in front if i not in chosen]
            if not pool:
                pool = [i for i in everyone if i not in chosen]
                led = tasks_led(scores)  # rare: every front member is chosen already
            # +0.5 keeps front members that lead no task (but are not dominated) in play.
            weights = [led[i] + 0.5 for i in pool]
        chosen.append(rng.choices(pool, weights=weights, k=1)[0])
    return chosen


class _FrontMemo:
    """The Pareto front and its members' tasks led, kept up to date as programs are added.

    A campaign selects parents from an archive that only grows between proposals: recomputing
    the front each time costs O(N x front) and the tasks led O(N x tasks), which at thousands
    of programs is most of the controller's time per candidate. The memo keeps the programs it
    has seen (copies of their score dicts); when a call's scores hold the same programs with the
    same scores plus new ones, only the new ones are inserted (a new program joins the front iff
    no front member dominates it, and evicts the members it dominates). Anything else (a program
    gone or changed, a new task) rebuilds from scratch. The answer is always exactly
    ``pareto_front(scores)`` and ``tasks_led(scores)`` on the front's members."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[int, dict[str, float]] = {}
        self._tasks: list[str] = []
        self._front_ids: list[int] = []  # the front, sorted by id ...
        self._front = np.empty((0, 0))  # ... and its score rows (missing tasks count as 0)
        self._best = np.empty(0)

    def _row(self, values: Mapping[str, float]) -> np.ndarray:
        return np.array([values.get(t, 0.0) for t in self._tasks], dtype=float)

    def _rebuild(self, scores: Scores) -> None:
        self._seen = {i: dict(v) for i, v in scores.items()}
        self._tasks = sorted({t for v in scores.values() for t in v})
        self._front_ids = pareto_front(scores)
        self._front = np.array([self._row(scores[i]) for i in self._front_ids], dtype=float).reshape(
            len(self._front_ids), len(self._tasks))
        # Python's max, as tasks_led takes it (the same for the finite scores a campaign stores).
        self._best = np.array([max(v.get(t, 0.0) for v in scores.values()) for t in self._tasks], dtype=float)

    def _insert(self, pid: int, values: Mapping[str, float]) -> None:
        row = self._row(values)
        self._seen[pid] = dict(values)
        self._best = np.array([max(b, x) for b, x in zip(self._best.tolist(), row.tolist())], dtype=float)
        front = self._front
        if ((front >= row).all(axis=1) & (front > row).any(axis=1)).any():
            return
        keep = ~((row >= front).all(axis=1) & (row > front).any(axis=1))
        ids = [i for i, k in zip(self._front_ids, keep.tolist()) if k]
        at = bisect.bisect(ids, pid)
        self._front_ids = ids[:at] + [pid] + ids[at:]
        self._front = np.insert(front[keep], at, row, axis=0)

    def front_and_led(self, scores: Scores) -> tuple[list[int], dict[int, int]]:
        with self._lock:
            same = len(self._seen) <= len(scores) and all(scores.get(i) == v for i, v in self._seen.items())
            new = [i for i in scores if i not in self._seen] if same else []
            known = set(self._tasks)
            if not same or not self._seen or any(t not in known for i in new for t in scores[i]):
                self._rebuild(scores)
            else:
                for i in sorted(new):
                    self._insert(i, scores[i])
            led = (self._front >= self._best).sum(axis=1).tolist()
            return list(self._front_ids), dict(zip(self._front_ids, led))


_MEMO = _FrontMemo()
