"""The batched harness's shortcuts past vmap give the vmapped step's bits (sandbox.harness).

Two shortcuts, each taken only where it is exact: the gradient by autograd through the vmapped
loss (tasks that declare ``exact_stacked_grad``) and the update on the stacked rows (rules that
``position_independent`` accepts with ``hp.lr`` a tensor). Every task that declares the first
is checked here on its default workload and its tier variants, at two batch sizes; whole runs
with the shortcuts on are compared with the same runs under vmap alone.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad_and_value, vmap

from sandbox.contract import executable_module, load_program
from sandbox.halving import RECOMMENDED
from sandbox.harness import RunConfig, _Run, resolve_device, run_candidate
from sandbox.references import load_reference, reference_source
from sandbox.rule_analysis import position_independent
from sandbox.stacked import stacked_grads
from sandbox.tasks import get_task, task_names

EXACT = [name for name in task_names() if get_task(name).exact_stacked_grad]


def _specs(name: str) -> list[str]:
    return [name] + ([f"{name}@1", f"{name}@2"] if get_task(name).variant_space else [])


def test_most_tasks_take_the_stacked_gradient() -> None:
    assert len(EXACT) >= 25, EXACT
    assert "logreg_breast_cancer" not in EXACT and "mingru_sentiment" not in EXACT


@pytest.mark.parametrize("name", EXACT)
def test_stacked_gradient_equals_vmap_grad_bit_for_bit(name: str) -> None:
    program = load_reference("adamw")
    for spec in _specs(name):
        task = get_task(spec)
        for rows in (2, 5):
            configs = [RunConfig(1e-3, i % 2) for i in range(rows)]
            run = _Run(program, task, configs, 4, resolve_device("cpu"), None)
            # distinct rows, as a grid's runs are after their first step
            params = {k: torch.stack([run._init_params(c.seed)[k] * (1 + 0.003 * i) for i, c in enumerate(configs)])
                      for k in run._init_params(0)}
            if task.stochastic:
                batch, dims = run._stacked_batch(1, [0, 1], torch.tensor([c.seed for c in configs]))
            else:
                batch, dims = run.eval_batch, None
            with torch.no_grad():
                want, want_loss = vmap(grad_and_value(task.loss), in_dims=(0, dims))(params, batch)
                got, got_loss = stacked_grads(task, params, batch, dims)
            assert torch.equal(got_loss, want_loss), (spec, rows)
            for key in want:
                assert torch.equal(got[key], want[key]), (spec, rows, key)


def _records(results) -> str:
    # repr: exact for floats and equal for two NaNs (a stopped run's last loss may be one)
    return repr([(r.status, r.losses, r.initial_loss, r.val_steps, r.val_losses, r.test_metric, r.stopped_at, r.batched)
                 for r in results])


def _vmapped_only(program, task, configs, steps, halving=None):
    run = _Run(program, task, configs, steps, resolve_device("cpu"), None, halving)
    run.stack_grads = run.stack_update = False
    return run.batched()


@pytest.mark.parametrize("task_name,program_name", [
    ("noisy_quadratic", "adamw"),   # stochastic; both shortcuts
    ("rosenbrock", "lion"),         # full batch; both shortcuts
    ("mlp_digits", "muon"),         # stacked gradient, vmapped update (matrix ops)
    ("logreg_breast_cancer", "adam"),  # vmapped gradient, stacked update
    ("cnn_digits", "signum"),
])
def test_runs_with_the_shortcuts_equal_vmapped_runs(task_name: str, program_name: str) -> None:
    task, program = get_task(task_name), load_reference(program_name)
    configs = [RunConfig(lr, seed) for lr in (1e-3, 3e-2, 3.0) for seed in (0, 1)]  # 3.0 diverges on most
    for halving in (None, RECOMMENDED):
        shortcut = run_candidate(program, task, configs, steps=40, halving=halving)
        assert all(r.batched for r in shortcut)
        assert _records(shortcut) == _records(_vmapped_only(program, task, configs, 40, halving))


def test_the_shortcuts_are_taken_where_they_apply() -> None:
    cpu = resolve_device("cpu")
    configs = [RunConfig(1e-3, 0), RunConfig(1e-2, 0)]
    adamw, muon = load_reference("adamw"), load_reference("muon")
    run = _Run(adamw, get_task("mlp_digits"), configs, 4, cpu, None)
    assert run.stack_grads and run.stack_update
    run = _Run(muon, get_task("logreg_breast_cancer"), configs, 4, cpu, None)
    assert not run.stack_grads and not run.stack_update


UPDATE = 'HPARAMS = {"lr": 0.1, "beta": 0.9}\n\ndef init(param):\n    return {"m": zeros_like(param)}\n\n' \
         'def helper(h, x):\n    return HELPER\n\ndef update(grad, param, state, step, hp):\n    m = interp(grad, state["m"], hp.beta)\n' \
         '    BODY\n    return delta, {"m": m}\n'


@pytest.mark.parametrize("body,helper,as_numbers,as_tensor", [
    ("delta = -hp.lr * m / (sqrt(m * m) + 1e-8)", "x", True, True),
    ("delta = -hp.lr * m if hp.lr > 0.01 else -m", "x", True, False),   # a Python branch on the rate
    ("delta = -exp(hp.lr) * m", "x", True, False),                      # exp may round differently
    ("delta = -helper(hp, m)", "h.lr * x", True, True),
    ("delta = -helper(hp, m)", "x if h.lr > 0.5 else -x", True, False),  # the rate read in a helper
    ("delta = -hp.lr * m if step > 10 else -hp.lr * grad", "x", True, True),  # a branch on step is fine
    ("delta = -hp.lr * m * (hp.beta ** step)", "x", True, True),         # numbers may do anything
])
def test_position_independence_with_a_tensor_learning_rate(body: str, helper: str, as_numbers: bool,
                                                            as_tensor: bool) -> None:
    tree = executable_module(UPDATE.replace("BODY", body).replace("HELPER", helper))
    assert position_independent(tree) is as_numbers
    assert position_independent(tree, frozenset({"lr"})) is as_tensor


def test_a_rule_branching_on_the_rate_still_trains_batched() -> None:
    # Not stackable: the update runs under vmap, which cannot trace the branch, so the whole
    # run falls back to the sequential path, as before the shortcuts.
    source = UPDATE.replace("BODY", "delta = -hp.lr * m if hp.lr > 0.01 else -m").replace("HELPER", "x")
    results = run_candidate(load_program(source), get_task("noisy_quadratic"),
                            [RunConfig(1e-3, 0), RunConfig(1e-1, 0)], steps=20)
    assert [r.batched for r in results] == [False, False]
    assert all(r.ok for r in results)


def test_reference_rules_that_take_the_stacked_update() -> None:
    # The Adam family, Lion, SGD and friends are elementwise; the matrix and norm rules are not.
    stackable = {name for name in ("adamw", "adam", "lion", "sgd_momentum", "muon", "lamb", "nadamw")
                 if position_independent(executable_module(reference_source(name)), frozenset({"lr"}))}
    assert stackable == {"adamw", "adam", "lion", "sgd_momentum"}


def test_seeded_mutants_train_alike_with_and_without_the_shortcuts() -> None:
    # The candidates a campaign actually makes: random edits of every reference (where, clamp,
    # maximum, comparisons, helper functions, broken ones too). The shortcuts change no bit of
    # any record, and a program they cannot take runs as before.
    import random

    from discover.mutation import MutationError, mutate
    from sandbox.references import reference_names

    rng = random.Random(7)
    configs = [RunConfig(lr, seed) for lr in (1e-3, 3e-2, 1.0) for seed in (0, 1)]
    checked = stacked = 0
    for _ in range(24):
        try:
            source = mutate(reference_source(rng.choice(reference_names())), rng, n_edits=rng.choice([1, 2])).source
        except MutationError:
            continue
        program, task = load_program(source), get_task(rng.choice(["noisy_quadratic", "mlp_digits"]))
        try:
            vmapped = _records(_vmapped_only(program, task, configs, 20))
        except Exception:
            continue  # vmap cannot take it either: both go to the sequential path
        assert _records(run_candidate(program, task, configs, steps=20)) == vmapped, source
        checked += 1
        stacked += position_independent(executable_module(source), frozenset({"lr"}))
    assert checked >= 15 and stacked >= 8, (checked, stacked)
