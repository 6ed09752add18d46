"""benchmarks/transfer.py's --test-seeds (parsing, the key a many-seed result is stored under)
and transfer_tasks.py's variance components and reliability on synthetic tables whose
components are known (no evaluator, no runs)."""

import json
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


def _task(scores):
    return {"score": float(np.exp(np.mean(np.log(scores)))), "seed_scores": [float(v) for v in scores]}


def _rows(programs=12, with_key=None, seed=0):
    """Synthetic transfer.py rows: every tier on 4 tasks; ``test@300-307`` (and its halves) tracks
    the search fitness exactly, the protocol's 2-seed ``test`` does not; ``with_key``: the labels
    that have the many-seed keys (default all). Plus ``twin``, a copy of ``p0``, and two dead
    programs (every task at the floor)."""
    rng = np.random.default_rng(seed)
    tasks = ["a", "b", "c", "d"]
    rows = {}
    for i in range(programs):
        level = 0.3 + 0.1 * i
        row = {}
        for tier, seeds, noise in (("search", 2, 0.0), ("legacy", 2, 0.3), ("validation", 2, 0.2), ("test", 2, 0.4),
                                   ("test@300-307", 8, 0.0), ("test@300-303", 4, 0.05), ("test@304-307", 4, 0.05)):
            row[tier + "_tasks"] = {t: _task(level * np.exp(rng.normal(0, noise, seeds))) for t in tasks}
            row[tier] = float(np.exp(np.mean([np.log(e["score"]) for e in row[tier + "_tasks"].values()])))
            row[tier + "_spread"] = 0.01
        rows[f"p{i}"] = row
    rows["twin"] = json.loads(json.dumps(rows["p0"]))
    for dead in ("dead0", "dead1"):
        rows[dead] = {}
        for tier, seeds in (("search", 2), ("legacy", 2), ("validation", 2), ("test", 2), ("test@300-307", 8),
                            ("test@300-303", 4), ("test@304-307", 4)):
            rows[dead][tier + "_tasks"] = {t: _task([0.05] * seeds) for t in tasks}
            rows[dead][tier] = 0.05
    keep = set(rows) if with_key is None else set(with_key)
    for label, row in rows.items():
        if label not in keep:
            for key in [k for k in row if k.startswith("test@")]:
                del row[key]
    return rows


def test_duplicates_are_programs_with_the_same_scores_not_dead_ties():
    rows = _rows()
    assert transfer_tasks.duplicates(rows, list(rows)) == {"twin": "p0"}
    rows["twin"]["test_tasks"]["a"]["seed_scores"][0] *= 1.001  # one seed apart: another program
    assert transfer_tasks.duplicates(rows, list(rows)) == {}


def test_spearman_brown_prophecy():
    assert transfer_tasks.spearman_brown(0.5, 2) == transfer_tasks.spearman_brown(0.5) == pytest.approx(2 * 0.5 / 1.5)
    # 4-seed halves at 0.6: a 2-seed score's reliability r/(2-r); stepping back up returns r.
    two = transfer_tasks.spearman_brown(0.6, 0.5)
    assert two == pytest.approx(0.6 / 1.4)
    assert transfer_tasks.spearman_brown(two, 2) == pytest.approx(0.6)


def test_the_region_and_all_programs_each_pick_their_key():
    region = [{"test@300-307": 1, "test@300-315": 1}] * 3
    rest = [{"test@300-307": 1}] * 5
    keys = ["test@300-307", "test@300-315"]
    assert transfer_tasks.pick_key(region, keys) == "test@300-315"  # all have both: the most seeds
    assert transfer_tasks.pick_key(region + rest, keys) == "test@300-307"  # the most programs


def test_bootstrap_over_every_program_and_the_region_default():
    s = list(np.linspace(0.1, 3.0, 30))
    t = [v + 0.3 * np.sin(7 * v) for v in s]
    seeds = [[v, v] for v in s]
    every = transfer.decision_noise(s, t, seeds, resamples=200, region=(-np.inf, np.inf))
    region = transfer.decision_noise(s, t, seeds, resamples=200)
    assert every["n"] == 30
    assert region["n"] == sum(0.8 <= v <= 1.5 for v in s)
    assert every["boot_lo"] <= every["boot_hi"] <= 1.0


def test_all_programs_section_against_the_many_seed_truth(capsys):
    rows = _rows()
    transfer_tasks.many_seed_all(rows, "test@300-307", ("test@300-303", "test@304-307"))
    out = capsys.readouterr().out
    assert "15 of the 15 programs with a test tier have it" in out
    assert "twin = p0" in out and "dead1 = " not in out
    lines = {tuple(line.split()[:6]): line for line in out.splitlines()}
    # The many-seed truth tracks the search fitness: rho 1 over all 15 and over the 14 without the twin.
    assert lines[("search", "fitness", "test@300-307", "15", "all", "+1.000")]
    assert lines[("search", "fitness", "test@300-307", "14", "w/o", "dup")].split()[7] == "+1.000"
    two = [line for line in out.splitlines() if line.split()[:6] == ["search", "fitness", "test", "(2", "seeds)", "15"]]
    assert len(two) == 1 and float(two[0].split()[7]) < 0.99  # the noisy 2-seed truth ranks less alike


def test_all_programs_section_stays_out_while_most_programs_lack_the_key(capsys):
    rows = _rows(with_key=["p0", "p1", "p2", "p3", "p4", "p5", "p6"])  # 7 of 15
    transfer_tasks.many_seed_all(rows, "test@300-307", ("test@300-303", "test@304-307"))
    assert capsys.readouterr().out == ""
    rows = _rows(with_key=["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7"])  # 8 of 15
    transfer_tasks.many_seed_all(rows, "test@300-307", ("test@300-303", "test@304-307"))
    assert "8 of the 15 programs with a test tier have it" in capsys.readouterr().out


def test_paired_gain_is_zero_for_the_same_score_and_positive_for_a_better_one():
    rng = np.random.default_rng(1)
    truth = np.linspace(0.2, 2.0, 40)
    noisy = truth * np.exp(rng.normal(0, 0.4, truth.size))
    gain, lo, hi = transfer_tasks.paired_gain(noisy, noisy, truth, resamples=300)
    assert gain == lo == hi == 0.0  # resampled together: nothing to gain from the same score
    gain, lo, hi = transfer_tasks.paired_gain(truth, noisy, truth, resamples=300)
    assert gain == pytest.approx(1.0 - transfer_tasks.rho(noisy, truth)) and 0.0 < lo <= gain <= hi


def test_an_earlier_tier_is_compared_with_the_tier_now_on_the_same_programs(capsys):
    rows = _rows()
    for row in rows.values():  # the tier before a task left it: the 2-seed test's noise
        for suffix in ("", "_tasks"):
            row["search+old" + suffix] = row["legacy" + suffix]
    transfer_tasks.many_seed_all(rows, "test@300-307", ("test@300-303", "test@304-307"))
    out = capsys.readouterr().out
    gains = [line for line in out.splitlines() if line.strip().startswith("search now vs search+old")
             and "against test@300-307" in line and " all " in line]
    assert len(gains) == 1
    before, after = (float(x) for x in gains[0].split("rho ")[1].split(" (")[0].split(" -> "))
    assert after == 1.0 and before < 1.0  # the search fitness is the truth here; the earlier tier is noisy
    assert "search+old" in out.split("search now vs")[0]  # and it has its own row in the table above


def test_a_candidate_task_is_judged_against_the_many_seed_truth_without_its_own_variant():
    rows = _rows()
    labels = list(rows)
    for row in rows.values():  # the candidate is the test tier's task "a" itself
        row["candidates:a_tasks"] = {"a": dict(row["test@300-307_tasks"]["a"])}
    _, _, search = transfer_tasks.task_scores(rows, "search")
    column = transfer_tasks.candidate_scores(rows)["a"]
    truths = transfer_tasks.many_seed_truths(rows, labels, ["test@300-307"])
    (line,) = transfer_tasks.candidate_against_many(rows, "a", column, search, truths)
    assert line.startswith(f"vs test@300-307 ({len(labels)} programs): search tier with it +1.000 (without +1.000)")
    assert "against it without a:" in line  # the test tier holds task "a": judged without it too
    (line,) = transfer_tasks.candidate_against_many(rows, "z", column, search, truths)
    assert "against it without" not in line  # a task the test tier does not hold
