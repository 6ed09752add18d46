"""benchmarks/transfer.py's program library: the labels other benchmarks and the results file
rely on, the near-AdamW set's seed stream, and its descent check (no evaluator, no runs)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import transfer  # noqa: E402
from sandbox.references import reference_source  # noqa: E402


def test_the_default_library_is_the_51_programs_the_results_were_scored_on():
    programs = transfer.library()
    assert len(programs) == 51
    labels = list(programs)
    assert labels[:3] == ["adabelief", "adadelta", "adagrad"]
    assert labels[-1] == "mutant11(sgd)"
    assert not any(label.startswith("near") for label in labels)


def test_the_near_set_follows_the_51_and_leaves_them_unchanged():
    plain = transfer.library()
    near = transfer.library(near_set=True, near_mutants=2, near_screened=1)
    assert list(near)[:51] == list(plain) and all(near[k] == plain[k] for k in plain)
    added = list(near)[51:]
    assert added[:4] == ["adamw(weight_decay=0)", "adamw(beta2=0.99)", "adamw(eps=1e-06)", "adam(eps=1e-06)"]
    # The seed stream: the first children are fixed (the results file holds their rows).
    assert added[-3:] == ["near0(adamax)", "near1(adamw)", "near2(nadamw)"]
    assert near["near1(adamw)"].startswith('"""Mutant: line 20: replaced `sqrt(bias2)` with `rsqrt(bias2)`')
    assert transfer.screened("near2(nadamw)", near_mutants=2) and not transfer.screened("near1(adamw)", near_mutants=2)
    assert not transfer.screened("adam") and not transfer.screened("mutant3(adamw)")


def test_descent_passes_the_references_and_fails_dead_mutants():
    for name in ("adam", "adamw", "sgd", "lion"):
        assert transfer.descent(reference_source(name))[0], name
    plain = transfer.library()
    # Gradient ascent (rmsprop with the step's sign flipped) and sqrt of a negative (adamw's
    # second moment from grad + grad) score 0.05 on every task.
    assert not transfer.descent(plain["mutant10(rmsprop)"])[0]
    assert not transfer.descent(plain["mutant3(adamw)"])[0]


def test_descent_tells_a_no_op_edit_from_a_real_one():
    adam = reference_source("adam")
    same = transfer.descent(transfer.with_hparams(adam, {"weight_decay": 0.0}))[1]
    assert same == transfer.descent(adam)[1]  # weight_decay is 0 already: steps alike
    assert transfer.descent(transfer.with_hparams(adam, {"beta1": 0.5}))[1] != transfer.descent(adam)[1]


def test_in_region_is_the_decision_region():
    low, high = transfer.DECISION_REGION
    assert transfer.in_region(low) and transfer.in_region(high) and transfer.in_region(1.0)
    assert not transfer.in_region(low - 1e-9) and not transfer.in_region(None)
