import random
from collections import Counter

from discover.selection import dominates, pareto_front, select_parents, tasks_led

SCORES = {
    1: {"a": 1.0, "b": 1.0},   # balanced
    2: {"a": 3.0, "b": 0.2},   # leads a
    3: {"a": 0.2, "b": 3.0},   # leads b
    4: {"a": 0.9, "b": 0.9},   # dominated by 1
}


def test_front_keeps_specialists_and_drops_dominated():
    assert dominates(SCORES[1], SCORES[4]) and not dominates(SCORES[2], SCORES[3])
    assert pareto_front(SCORES) == [1, 2, 3]
    assert tasks_led(SCORES) == {1: 0, 2: 1, 3: 1, 4: 0}


def test_selection_is_deterministic_and_favours_leaders():
    a = [select_parents(SCORES, random.Random(7), 1)[0] for _ in range(1)]
    b = [select_parents(SCORES, random.Random(7), 1)[0] for _ in range(1)]
    assert a == b
    rng = random.Random(0)
    counts = Counter(select_parents(SCORES, rng, 1, explore=0.0)[0] for _ in range(3000))
    assert 4 not in counts  # dominated programs only come back through exploration
    assert counts[2] > counts[1] and counts[3] > counts[1]


def test_two_distinct_parents():
    rng = random.Random(1)
    for _ in range(50):
        pair = select_parents(SCORES, rng, 2)
        assert len(set(pair)) == 2
    assert select_parents({}, rng, 2) == []
