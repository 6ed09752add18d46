"""The offline symbolic-mutation proposer: valid, new, deterministic, diverse, runnable children."""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from discover import mutation
from discover.mutation import CROSSOVERS, EDITS, MutationError, crossover, mutate, perturb_value
from sandbox.contract import CandidateError, load_program, program_hash, run_init, run_update, validate
from sandbox.references import reference_names, reference_source

REPO = Path(__file__).resolve().parent.parent
PER_REFERENCE = 200  # 200 one-edit mutants per reference (3,000 in all) keep the file under ~20 s


def _hparams(source: str) -> dict[str, float]:
    tree = ast.parse(source)
    node = next(s.value for s in tree.body if isinstance(s, ast.Assign) and s.targets[0].id == "HPARAMS")
    return {k: float(v) for k, v in ast.literal_eval(node).items()}


def _init_keys(source: str) -> set[str]:
    program = load_program(source)
    return set(program.init(torch.zeros(4, 3))) | set(program.init(torch.zeros(5)))


def run_three_steps(source: str) -> None:
    """init + 3 updates on a matrix and on a vector parameter, with the contract checked."""
    program = load_program(source)
    for shape in ((4, 3), (5,)):
        gen = torch.Generator().manual_seed(0)
        param = torch.randn(*shape, generator=gen)
        state = run_init(program, param)
        for step in (1, 2, 3):
            grad = torch.randn(*shape, generator=gen)
            delta, state = run_update(program, grad, param, state, step, program.hp())
            param = param + delta


@pytest.fixture(scope="module")
def batch() -> dict[str, list[mutation.Mutation]]:
    """One-edit mutants of every reference, each reference with its own fixed seed."""
    return {name: [mutate(reference_source(name), rng) for rng in [random.Random(f"batch-{name}")]
                   for _ in range(PER_REFERENCE)]
            for name in reference_names()}


# --- the big sample ---------------------------------------------------------------------


@pytest.mark.slow
def test_mutants_of_every_reference_are_valid_new_and_mostly_first_try(batch):
    for name, mutants in batch.items():
        parent_hash = program_hash(reference_source(name))
        for source in {child.source for child in mutants}:
            validate(source)
        assert all(child.hash != parent_hash for child in mutants)
        for child in mutants[:20]:
            assert child.hash == program_hash(child.source)
        first_try = sum(child.attempts == 1 for child in mutants) / len(mutants)
        assert first_try >= 0.9, f"{name}: only {first_try:.0%} of mutants were valid on the first try"


@pytest.mark.slow
def test_mutants_are_diverse_and_use_every_edit_kind(batch):
    all_hashes = set()
    for name, mutants in batch.items():
        hashes = {child.hash for child in mutants}
        all_hashes |= hashes
        # The one-edit neighbourhood of a one-line update (signSGD) is small: some draws repeat.
        assert len(hashes) >= 0.2 * len(mutants), f"{name}: {len(hashes)} distinct of {len(mutants)}"
    total = sum(len(m) for m in batch.values())
    assert len(all_hashes) >= 0.5 * total
    used = {kind for mutants in batch.values() for child in mutants for kind in child.kinds}
    assert used == set(EDITS)


_CHECKS = [
    (r"HPARAMS: (?P<key>\w+) (?P<old>\S+) -> (?P<new>\S+)", "hparam"),
    (r"line (?P<line>\d+): constant (?P<old>\S+) -> (?P<new>\S+)", "constant"),
    (r"line (?P<line>\d+): (?:replaced|wrapped) `(?P<old>.+)` (?:with|as) `(?P<new>.+)`", "replace"),
    (r"update: inserted `(?P<new>.+)` before (?:line \d+|`.+`)", "insert"),
    (r"update: deleted line (?P<line>\d+) `(?P<old>.+?)`(?:; reads of `\w+` now read `.+`)?", "delete"),
    (r"state: added `(?P<key>\w+)` \(`(?P<new>.+)`\), read at line \d+: replaced `.+` with `.+`", "add_state"),
    (r"HPARAMS: added (?P<key>\w+) = (?P<new>\S+), read at line \d+ in place of `.+`", "add_hparam"),
    (r"state: dropped `(?P<key>\w+)` \(reads of state\[\"\w+\"\] now see zeros\)", "drop_state"),
]


def _statement_text(source: str) -> dict[int, str]:
    """Line -> unparsed text of the statement starting there, inside functions."""
    return {s.lineno: ast.unparse(s) for fn in ast.parse(source).body if isinstance(fn, ast.FunctionDef)
            for s in ast.walk(fn) if isinstance(s, ast.stmt) and s is not fn}


def _numbers(source: str) -> list[float]:
    return [n.value for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Constant) and isinstance(n.value, (int, float))]


def _check_description(edit: str, parent: str, child: str, lines: dict[int, str]) -> str:
    for pattern, what in _CHECKS:
        match = re.fullmatch(pattern, edit)
        if not match:
            continue
        got = match.groupdict()
        whole = lambda text: not text.endswith("...")  # noqa: E731 - snippets may be cut short
        if what == "hparam":
            assert _hparams(parent)[got["key"]] == float(got["old"])
            assert _hparams(child)[got["key"]] == float(got["new"])
        elif what == "constant":
            assert float(got["old"]) in _numbers(lines[int(got["line"])]) and float(got["new"]) in _numbers(child)
        elif what == "replace":
            assert not whole(got["old"]) or got["old"] in lines[int(got["line"])], (edit, lines[int(got["line"])])
            assert not whole(got["new"]) or got["new"] in child, (edit, child)
        elif what == "insert":
            assert not whole(got["new"]) or got["new"] in child
        elif what == "delete":
            assert not whole(got["old"]) or got["old"] == lines[int(got["line"])]
        elif what == "add_state":
            assert got["key"] in _init_keys(child) and got["key"] not in _init_keys(parent)
            assert not whole(got["new"]) or got["new"] in child
        elif what == "add_hparam":
            assert got["key"] not in _hparams(parent) and _hparams(child)[got["key"]] == float(got["new"])
            assert f"hp.{got['key']}" in child
        elif what == "drop_state":
            assert got["key"] in _init_keys(parent) and got["key"] not in _init_keys(child)
        return what
    raise AssertionError(f"an edit description in no known form: {edit!r}")


@pytest.mark.slow
def test_edit_descriptions_say_what_changed(batch):
    forms = set()
    for name, mutants in batch.items():
        parent = reference_source(name)
        lines = _statement_text(parent)
        for child in mutants[:100]:
            assert len(child.edits) == len(child.kinds) == 1
            forms.add(_check_description(child.edits[0], parent, child.source, lines))
            doc = ast.get_docstring(ast.parse(child.source))
            assert doc == f"Mutant: {child.edits[0]}." and "\n" not in doc
    assert forms == {what for _, what in _CHECKS}


@pytest.mark.slow
def test_mutants_run_with_consistent_state(batch):
    """A sample of 100 mutants runs init + 3 updates; NaN is fine, a contract error rarely is."""
    everyone = [child for name in sorted(batch) for child in batch[name]]
    sample = random.Random(0).sample(everyone, 100)
    failures = []
    for child in sample:
        try:
            run_three_steps(child.source)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none may be a state-key one
            failures.append((child.edits, exc))
    assert len(failures) < 10, failures
    for edits, exc in failures:
        assert not isinstance(exc, KeyError) and "state keys" not in str(exc), (edits, exc)


# --- each edit on its own ---------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EDITS))
def test_each_edit_kind_alone_gives_valid_runnable_children(kind):
    weights = {name: 1.0 if name == kind else 0.0 for name in EDITS}
    rng = random.Random(kind)
    for name in ("adam", "muon", "ademamix", "nadam"):
        parent = reference_source(name)
        for _ in range(10):
            try:
                child = mutate(parent, rng, weights=weights)
            except MutationError:
                assert kind in ("swap_arguments", "drop_state"), f"{kind} found no place in {name}"
                continue
            assert child.kinds == [kind]
            validate(child.source)
        run_three_steps(child.source)


def test_add_state_and_drop_state_keep_init_and_update_keys_in_step():
    parent = reference_source("adam")
    added = mutate(parent, random.Random(1), weights={n: float(n == "add_state") for n in EDITS})
    assert _init_keys(added.source) == {"m", "v", "ema1"}
    dropped = mutate(parent, random.Random(1), weights={n: float(n == "drop_state") for n in EDITS})
    assert len(_init_keys(dropped.source)) == 1
    for child in (added, dropped):
        run_three_steps(child.source)


def test_several_edits_at_once_stay_valid():
    rng = random.Random(3)
    for name in reference_names():
        for _ in range(8):
            child = mutate(reference_source(name), rng, n_edits=3)
            validate(child.source)
            assert len(child.edits) == 3
            assert ast.get_docstring(ast.parse(child.source)).count("; ") >= 2


def test_the_soundness_check_accepts_every_reference_and_catches_broken_programs():
    for name in reference_names():
        assert mutation._Work(reference_source(name)).errors() == [], name
    good = reference_source("lion")
    broken = {
        "a scalar update": good.replace("-hp.lr * (direction + hp.weight_decay * param)", "-hp.lr * rms(grad)"),
        "a read before assignment": good.replace("sign(interp(grad, ", "sign(interp(m, "),
        "state keys out of step": good.replace('{"m": m}', '{"m": m, "u": m}'),
        "a tensor op on a number": good.replace("sign(interp(grad,", "sign(interp(zeros_like(step) + grad,"),
        "no learning rate": good.replace("-hp.lr *", "-0.001 *"),
    }
    for what, source in broken.items():
        assert source != good, what
        validate(source)  # the contract cannot see these; the mutation's own check must
        assert mutation._Work(source).errors(), what


# --- determinism -------------------------------------------------------------------------


def _sequence(seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    out = []
    for i, name in enumerate(reference_names() * 2):
        child = mutate(reference_source(name), rng, n_edits=1 + i % 3)
        out.append((child.source, child.edits))
    return out


def test_same_seed_same_children_other_seed_other_children():
    assert _sequence(7) == _sequence(7)
    assert _sequence(7) != _sequence(8)


def test_no_use_of_the_global_random_generator(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the global random generator was used")

    for fn in ("random", "choice", "choices", "uniform", "randint", "sample", "shuffle", "randrange"):
        monkeypatch.setattr(random, fn, forbidden)
    rng = random.Random(0)
    for name in reference_names():
        mutate(reference_source(name), rng, n_edits=2)
    crossover(reference_source("adam"), reference_source("lion"), rng)


_SCRIPT = """
import hashlib, random
from discover.mutation import mutate, crossover
from sandbox.references import reference_names, reference_source
rng = random.Random(11)
names = reference_names()
digest = hashlib.sha256()
for i, name in enumerate(names * 2):
    digest.update(mutate(reference_source(name), rng, n_edits=1 + i % 3).source.encode())
for a, b in zip(names, names[1:]):
    digest.update(crossover(reference_source(a), reference_source(b), rng).source.encode())
print(digest.hexdigest())
"""


def test_children_do_not_depend_on_the_string_hash_seed():
    """Set iteration order changes with PYTHONHASHSEED (random in this process); children must not."""
    printed: list[str] = []
    exec(compile(_SCRIPT.replace("print(", "printed.append("), "<script>", "exec"), {"printed": printed})
    other_seed = "54321" if os.environ.get("PYTHONHASHSEED") == "12345" else "12345"
    env = {**os.environ, "PYTHONHASHSEED": other_seed}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == printed[0] and len(printed[0]) == 64


# --- numbers -----------------------------------------------------------------------------


def test_perturbed_values_keep_their_nature():
    rng = random.Random(0)
    for value in (0.9, 0.999, 0.5, 0.01, 0.3):
        for _ in range(200):
            new = perturb_value(value, rng)
            assert 0 < new < 1 and new != value
    for value in (1e-3, 3.0, 1e-8, 2.0):
        moved = [perturb_value(value, rng) for _ in range(200)]
        assert all(v > 0 and v != value for v in moved)
        assert min(moved) < value < max(moved)
    assert all(perturb_value(-0.5, rng) < 0 for _ in range(50))
    assert all(perturb_value(0.0, rng) > 0 for _ in range(50))


def test_learning_rate_stays_positive_and_is_always_read():
    rng = random.Random(5)
    for _ in range(150):
        child = mutate(reference_source("sgd"), rng, n_edits=2)
        assert _hparams(child.source)["lr"] > 0
        assert "hp.lr" in child.source


# --- errors ------------------------------------------------------------------------------


def test_invalid_parent_and_impossible_edits_raise_mutation_error():
    with pytest.raises(MutationError, match="not a valid program"):
        mutate("def init(:", random.Random(0))
    with pytest.raises(MutationError, match="no edit applies"):
        mutate(reference_source("sgd"), random.Random(0), weights={n: float(n == "drop_state") for n in EDITS})
    with pytest.raises(ValueError):
        mutate(reference_source("sgd"), random.Random(0), n_edits=0)


# --- crossover ---------------------------------------------------------------------------


def test_crossover_of_every_pair_is_valid_new_and_runs():
    names = reference_names()
    rng = random.Random(0)
    kinds = set()
    runtime_failures = 0
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            child = crossover(reference_source(a), reference_source(b), rng)
            validate(child.source)
            assert child.hash not in (program_hash(reference_source(a)), program_hash(reference_source(b)))
            assert len(child.edits) == 1 and child.edits[0].startswith("crossover: ")
            kinds.update(child.kinds)
            if (i + len(kinds)) % 4 == 0:
                try:
                    run_three_steps(child.source)
                except (CandidateError, RuntimeError):
                    runtime_failures += 1
    assert kinds == {f"crossover_{name}" for name in CROSSOVERS}
    assert runtime_failures <= 2


def test_crossover_average_keeps_both_states():
    rng = random.Random(0)
    for _ in range(20):
        child = crossover(reference_source("adamw"), reference_source("lion"), rng)
        if child.kinds == ["crossover_average"]:
            break
    assert child.kinds == ["crossover_average"]
    assert _init_keys(child.source) == {"m", "v", "m_b"}
    run_three_steps(child.source)


def test_crossover_is_deterministic_and_refuses_identical_parents():
    a, b = reference_source("adam"), reference_source("ademamix")
    first = [crossover(a, b, random.Random(s)).source for s in range(5)]
    assert first == [crossover(a, b, random.Random(s)).source for s in range(5)]
    with pytest.raises(MutationError, match="same program"):
        crossover(a, a, random.Random(0))
