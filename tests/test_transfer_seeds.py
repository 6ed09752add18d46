"""benchmarks/transfer.py's --test-seeds (parsing, the key a many-seed result is stored under)
and transfer_tasks.py's variance components and reliability on synthetic tables whose
components are known (no evaluator, no runs)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import transfer  # noqa: E402
import transfer_tasks  # noqa: E402


def test_seeds_parse_as_lists_and_ranges_sorted():
    assert transfer.parse_seeds("300-307") == tuple(range(300, 308))
    assert transfer.parse_seeds("305, 300,301") == (300, 301, 305)
    assert transfer.parse_seeds("300-302,310") == (300, 301, 302, 310)
    assert transfer.parse_seeds("7") == (7,)


@pytest.mark.parametrize("bad", ["", "300,x", "3.5", "307-300", "300,300", "300-302,301", "-3", "300-"])
def test_bad_seeds_are_refused(bad):
    with pytest.raises(ValueError):
        transfer.parse_seeds(bad)


def test_the_key_never_is_the_protocols_test_for_other_seeds():
    assert transfer.test_key((300, 301)) == "test"
    assert transfer.test_key((301, 300)) == "test"
    assert transfer.test_key(tuple(range(300, 308))) == "test@300-307"
    assert transfer.test_key((300, 302, 305)) == "test@300,302,305"
    assert transfer.test_key((300,)) == "test@300"
    row = {"test": 1.0, "test_tasks": {}, "test@300-307": 0.9, "test@300-307_tasks": {"a": {}},
           "test@300-307_spread": 0.1, "test@300-307_seconds": 3.0, "test@300,302_tasks": {"a": {}},
           "test@300,302": 1.0, "test@400": 1.0}  # no _tasks: not a result
    assert transfer.many_seed_keys(row) == ["test@300,302", "test@300-307"]


def test_a_bad_seed_value_is_one_line_and_exit_2(tmp_path):
    out = tmp_path / "t.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "transfer.py"), "--test-seeds", "300,abc",
                           "--out", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["--test-seeds: not an integer seed or range: 'abc'"]
    assert not out.exists()


def _synthetic(p, t, s, program, interaction, noise, seed=0):
    """log-scores with exactly known effect variances, plus task effects and effects every program
    shares on a task-seed (large: an estimate that failed to remove them would show it)."""
    rng = np.random.default_rng(seed)
    cube = (rng.normal(0, program ** 0.5, (p, 1, 1)) + rng.normal(0, interaction ** 0.5, (p, t, 1))
            + rng.normal(0, noise ** 0.5, (p, t, s)) + rng.normal(0, 1.0, (1, t, 1)) + rng.normal(0, 1.0, (1, t, s)))
    return cube


def test_variance_components_recover_known_components():
    cube = _synthetic(400, 19, 8, program=0.01, interaction=0.02, noise=0.3)
    comp = transfer_tasks.variance_components(cube)
    assert comp["noise"] == pytest.approx(0.3, rel=0.03)
    assert comp["interaction"] == pytest.approx(0.02, rel=0.15)
    assert comp["program"] == pytest.approx(0.01, rel=0.2)
    assert (comp["programs"], comp["tasks"], comp["seeds"]) == (400, 19, 8)


def test_variance_components_refuse_an_incomplete_table():
    cube = _synthetic(5, 3, 2, 0.1, 0.1, 0.1)
    cube[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        transfer_tasks.variance_components(cube)


def test_reliability_and_the_cells_it_needs():
    comp = {"program": 0.01, "interaction": 0.02, "noise": 0.3}
    # 0.01 / (0.01 + 0.02/19 + 0.3/38)
    assert transfer_tasks.reliability(comp, 19, 2) == pytest.approx(0.01 / (0.01 + 0.02 / 19 + 0.3 / 38))
    seeds = transfer_tasks.seeds_needed(comp, 19)
    assert transfer_tasks.reliability(comp, 19, seeds) == pytest.approx(0.8)
    cells = transfer_tasks.cells_needed(comp)
    assert transfer_tasks.reliability(comp, cells, 1) == pytest.approx(0.8)
    # An interaction too large for 5 tasks: no number of seeds reaches 0.8 there.
    assert transfer_tasks.seeds_needed({"program": 0.01, "interaction": 0.05, "noise": 0.3}, 5) == float("inf")


def test_seed_split_half_matches_the_reliability_the_components_predict():
    # Halves of the seeds share every task, so the interaction is signal to them: the
    # Spearman-Brown of the seed split-half estimates (p + pt/t) / (p + pt/t + e/(t s)).
    p, pt, e, t, s = 0.01, 0.02, 0.3, 19, 8
    cube = _synthetic(300, t, s, p, pt, e, seed=1)
    r = transfer_tasks.seed_split_half(cube, splits=40)
    expected = (p + pt / t) / (p + pt / t + e / (t * s))
    assert 2 * r / (1 + r) == pytest.approx(expected, abs=0.05)


def test_fixed_tasks_count_the_interaction_as_signal():
    comp = {"program": 0.001, "interaction": 0.07, "noise": 0.3}
    # Over workloads the interaction is error: no number of seeds at 19 tasks reaches 0.8.
    assert transfer_tasks.seeds_needed(comp, 19) == float("inf")
    signal = 0.001 + 0.07 / 19
    assert transfer_tasks.reliability(comp, 19, 8, fixed_tasks=True) == pytest.approx(signal / (signal + 0.3 / 152))
    seeds = transfer_tasks.seeds_needed(comp, 19, fixed_tasks=True)
    assert seeds == pytest.approx(0.3 * 4 / (19 * signal))
    assert transfer_tasks.reliability(comp, 19, seeds, fixed_tasks=True) == pytest.approx(0.8)


def test_seed_halves_find_two_keys_that_split_the_seeds():
    keys = ["test@300-307", "test@300-303", "test@304-307", "test@300-305", "test@300-315", "test@308-315"]
    assert transfer_tasks.seed_halves(keys, "test@300-307") == ("test@300-303", "test@304-307")
    assert transfer_tasks.seed_halves(keys, "test@300-315") == ("test@300-307", "test@308-315")
    assert transfer_tasks.seed_halves(["test@300-307", "test@300-305"], "test@300-307") is None
