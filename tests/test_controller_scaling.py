"""The controller's per-proposal reads do not grow with the archive (issue 14 item 5), and give
exactly what the full recomputations gave: the Pareto front and parent draws (incremental memo)
and the archive's program summaries (cached, refreshed from what was written since)."""

from __future__ import annotations

import random
from pathlib import Path

import archive
from discover import selection
from sandbox.contract import program_hash
from sandbox.references import reference_source


def brute_front(scores) -> list[int]:
    ids = sorted(scores)
    return [i for i in ids if not any(selection.dominates(scores[j], scores[i]) for j in ids if j != i)]


def brute_select(scores, rng: random.Random, count: int, explore: float = 0.15) -> list[int]:
    """select_parents as it was before the memo: the front and tasks led recomputed every call."""
    if not scores:
        return []
    front, led, everyone, chosen = brute_front(scores), selection.tasks_led(scores), sorted(scores), []
    while len(chosen) < min(count, len(everyone)):
        if rng.random() < explore:
            pool = [i for i in everyone if i not in chosen]
            weights = [1.0] * len(pool)
        else:
            pool = [i for i in front if i not in chosen] or [i for i in everyone if i not in chosen]
            weights = [led[i] + 0.5 for i in pool]
        chosen.append(rng.choices(pool, weights=weights, k=1)[0])
    return chosen


def random_scores(rng: random.Random, tasks: list[str]) -> dict[str, float]:
    # Coarse values make ties and equal vectors common; a task is sometimes missing (counts as 0).
    return {t: rng.choice([0.05, 0.5, 1.0, 2.0, round(rng.random(), 1)]) for t in tasks if rng.random() > 0.1}


def test_pareto_front_equals_the_pairwise_definition() -> None:
    rng = random.Random(0)
    for _ in range(300):
        tasks = [f"t{k}" for k in range(rng.randint(1, 4))]
        scores = {rng.randint(0, 999): random_scores(rng, tasks) for _ in range(rng.randint(0, 50))}
        if scores and rng.random() < 0.2:
            scores[next(iter(scores))] = {tasks[0]: float("nan")}
        assert selection.pareto_front(scores) == brute_front(scores)


def test_parent_draws_equal_the_full_recomputation_as_the_pool_grows_and_changes() -> None:
    rng = random.Random(1)
    for _ in range(30):
        tasks = [f"t{k}" for k in range(rng.randint(1, 4))]
        scores: dict[int, dict[str, float]] = {}
        for _ in range(50):
            roll = rng.random()
            if roll < 0.05 and scores:
                scores.pop(rng.choice(sorted(scores)))  # a program leaves the pool: rebuild
            elif roll < 0.1 and scores:
                scores[rng.choice(sorted(scores))] = random_scores(rng, tasks)  # changed scores: rebuild
            elif roll < 0.12:
                scores[rng.randint(0, 10**6)] = {"another_task": 1.0}  # a new task: rebuild
            else:
                scores[rng.randint(0, 10**6)] = random_scores(rng, tasks)  # the usual: one more program
            for count in (1, 2, 3):
                seed = rng.random()
                assert selection.select_parents(scores, random.Random(seed), count) == \
                    brute_select(scores, random.Random(seed), count)


def _scores(value: float) -> dict:
    return {"a": {"score": value, "curve": [1.0, 0.5]}, "b": {"score": 2 * value}}


def test_summaries_follow_every_write_and_other_connections(tmp_path: Path) -> None:
    with archive.open(tmp_path, create=True) as store:
        source = reference_source("sgd")
        first = store.add_program(source, hash=program_hash(source), proposer="reference", name="sgd",
                                  meta={"proposal_index": 3})
        summary = store.summaries()[first]
        assert (summary.status, summary.task_scores, summary.proposal_index, summary.name) == ("pending", None, 3, "sgd")
        store.update_program(first, status="evaluated", stage="full", fitness=1.5, scores=_scores(0.7))
        assert store.summaries()[first].task_scores == {"a": 0.7, "b": 1.4}
        second = store.add_program("x = 1", parent_ids=[first], meta={"proposal_index": 4})
        store.update_program(second, status="evaluated", stage="confirmed", fitness=1.1, scores=_scores(0.2),
                             meta={"proposal_index": 4, "confirmed_fitness": 1.3})
        got = store.summaries()
        assert got[second].confirmed_fitness == 1.3 and got[second].stage == "confirmed"
        assert store.winner().id == second  # the confirmed one, as before
        # Another process writes: the cache notices (SQLite's data_version) and rebuilds.
        with archive.open(tmp_path) as other:
            other.update_program(first, meta={"confirmed_fitness": 2.0})
        assert store.summaries()[first].confirmed_fitness == 2.0
        assert store.winner().id == first
        records = {r.id: r for r in store.programs()}
        for pid, s in store.summaries().items():
            r = records[pid]
            assert (s.status, s.stage, s.fitness, s.confirmed_fitness, s.proposer, s.name) == \
                (r.status, r.stage, r.fitness, r.confirmed_fitness, r.proposer, r.name)
            assert s.task_scores == {t: e["score"] for t, e in r.scores.items()}
