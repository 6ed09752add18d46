"""The training harness: semantics, batched == sequential, early stopping, fallback, errors."""

from __future__ import annotations

import math

import pytest
import torch

from sandbox.contract import CandidateError, load_program, run_init, run_update
from sandbox.harness import DIVERGENCE_FACTOR, RunConfig, resolve_device, run_candidate
from sandbox.references import load_reference
from sandbox.tasks import get_task

torch.set_num_threads(1)

ADAMW = load_reference("adamw")

SGD_MOMENTUM = load_program('''
HPARAMS = {"lr": 0.1, "momentum": 0.9}

def init(param):
    return {"b": zeros_like(param)}

def update(grad, param, state, step, hp):
    b = hp.momentum * state["b"] + grad
    return -hp.lr * b, {"b": b}
''')

GRADIENT_ASCENT = load_program('''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    return hp.lr * grad, {}
''')

MAKES_NAN = load_program('''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    return hp.lr * sqrt(-1 - abs(grad)), {}
''')

# Python `if` on a tensor's value: fine one config at a time, untraceable under vmap.
DATA_DEPENDENT_IF = load_program('''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    if mean(grad) > 0:
        return -hp.lr * grad, {}
    return -hp.lr * sign(grad), {}
''')

WRONG_SHAPE = load_program('''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    return -hp.lr * sum(grad), {}
''')

RAISES_IN_TORCH = load_program('''
HPARAMS = {"lr": 0.1}

def init(param):
    return {}

def update(grad, param, state, step, hp):
    return -hp.lr * matmul(grad, grad), {}
''')


def reference_run(program, task, config: RunConfig, steps: int) -> list[float]:
    """The harness's documented loop, written out plainly with autograd (no torch.func)."""
    params = task.init_params(config.seed)
    states = {name: run_init(program, p) for name, p in params.items()}
    losses = []
    for step in range(1, steps + 1):
        leaves = {name: p.clone().requires_grad_(True) for name, p in params.items()}
        loss = task.loss(leaves, task.batch(step, config.seed))
        grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
        lr = torch.tensor(config.lr * task.lr_factor(step, steps), dtype=torch.float32)
        hp = program.hp(lr=lr)
        with torch.no_grad():
            for name in params:
                delta, states[name] = run_update(program, grads[name], params[name], states[name], step, hp)
                params[name] = params[name] + delta
            losses.append(float(task.loss(params, task.eval_batch())))
    return losses


def assert_same_runs(a, b, rtol: float) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.lr, x.seed, x.status, x.stopped_at, len(x.losses)) == (y.lr, y.seed, y.status, y.stopped_at, len(y.losses))
        assert x.initial_loss == pytest.approx(y.initial_loss, rel=rtol)
        assert x.losses == pytest.approx(y.losses, rel=rtol, nan_ok=True)
        if x.test_metric is None:
            assert y.test_metric is None
        else:
            assert x.test_metric == pytest.approx(y.test_metric, rel=max(rtol, 1e-6), abs=1e-6)


# --- semantics -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp_digits", "deep_linear", "mlp_wine"])
def test_matches_the_documented_loop(name):
    """Stochastic (eval-batch loss) and full-batch (loss reused from the next gradient) tasks."""
    task, steps = get_task(name), 12
    config = RunConfig(3e-2, 1)
    expected = reference_run(ADAMW, task, config, steps)
    for batched in (False, True):
        got = run_candidate(ADAMW, task, [config, RunConfig(1e-2, 2)], steps=steps, batched=batched)[0]
        assert got.losses == pytest.approx(expected, rel=1e-5)
        assert got.initial_loss == pytest.approx(float(task.loss(task.init_params(1), task.eval_batch())), rel=1e-6)


def test_result_fields_and_order():
    task = get_task("teacher_student")
    configs = [RunConfig(1e-2, 0), RunConfig(1e-3, 5), RunConfig(3e-2, 0)]
    results = run_candidate(ADAMW, task, configs, steps=15)
    assert [(r.lr, r.seed) for r in results] == [(c.lr, c.seed) for c in configs]
    for r in results:
        assert r.status == "ok" and r.ok and r.stopped_at is None and r.batched
        assert len(r.losses) == 15 and r.final_loss == r.losses[-1]
        assert all(math.isfinite(v) for v in r.losses)
        assert r.test_metric is not None and math.isfinite(r.test_metric)
    assert results[0].losses != results[2].losses  # different learning rates, same seed


def test_runs_are_deterministic():
    task = get_task("cnn_digits")
    configs = [RunConfig(1e-2, 0), RunConfig(1e-2, 1)]
    a, b = (run_candidate(ADAMW, task, configs, steps=10) for _ in range(2))
    assert [r.losses for r in a] == [r.losses for r in b]
    assert a[0].losses != a[1].losses  # seeds differ


def test_hparam_overrides_reach_the_program():
    task = get_task("rosenbrock")
    config = [RunConfig(1e-2, 0)]
    plain = run_candidate(SGD_MOMENTUM, task, config, steps=10)[0]
    no_momentum = run_candidate(SGD_MOMENTUM, task, config, steps=10, hparam_overrides={"momentum": 0.0})[0]
    assert plain.losses != no_momentum.losses
    with pytest.raises(ValueError, match="RunConfig"):
        run_candidate(SGD_MOMENTUM, task, config, steps=10, hparam_overrides={"lr": 1.0})
    with pytest.raises(ValueError, match="momentum"):
        run_candidate(SGD_MOMENTUM, task, config, steps=10, hparam_overrides={"beta9": 1.0})


def test_bad_arguments_are_rejected():
    task = get_task("rosenbrock")
    with pytest.raises(ValueError, match="at least one"):
        run_candidate(ADAMW, task, [])
    with pytest.raises(ValueError, match="positive"):
        run_candidate(ADAMW, task, [RunConfig(-1.0, 0)])
    with pytest.raises(ValueError, match="steps"):
        run_candidate(ADAMW, task, [RunConfig(1e-3, 0)], steps=0)


# --- batched == sequential -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["noisy_quadratic", "mlp_digits", "transformer_modadd", "cnn_digits", "logreg_separable"])
def test_batched_equals_sequential(name):
    task = get_task(name)
    configs = [RunConfig(lr, seed) for lr in (1e-3, 3e-2, 1e3) for seed in (0, 1)]
    batched = run_candidate(ADAMW, task, configs, steps=20)
    sequential = run_candidate(ADAMW, task, configs, steps=20, batched=False)
    assert all(r.batched for r in batched) and not any(r.batched for r in sequential)
    # Matmuls run as batched kernels under vmap, so bits may differ; everything else is identical.
    assert_same_runs(batched, sequential, rtol=1e-5)


@pytest.mark.parametrize("name", ["rosenbrock", "quadratic_diagonal", "noisy_quadratic"])
def test_batched_is_bit_exact_on_elementwise_tasks(name):
    task = get_task(name)
    configs = [RunConfig(lr, seed) for lr in (1e-2, 1e-1) for seed in (0, 1)]
    for program in (ADAMW, SGD_MOMENTUM):
        batched = run_candidate(program, task, configs, steps=30)
        sequential = run_candidate(program, task, configs, steps=30, batched=False)
        assert [r.losses for r in batched] == [r.losses for r in sequential]


# --- early stopping --------------------------------------------------------------------------


def test_divergence_stops_a_run_early_and_leaves_the_others_alone():
    task = get_task("mlp_digits")
    good = [RunConfig(1e-2, 0), RunConfig(3e-2, 1)]
    mixed = run_candidate(SGD_MOMENTUM, task, [good[0], RunConfig(1e3, 0), good[1]], steps=40)
    bad = mixed[1]
    assert bad.status in ("diverged", "nan") and not bad.ok
    assert bad.stopped_at is not None and bad.stopped_at <= 3
    assert len(bad.losses) == bad.stopped_at and bad.test_metric is None
    alone = run_candidate(SGD_MOMENTUM, task, good, steps=40)
    assert_same_runs([mixed[0], mixed[2]], alone, rtol=1e-5)


def test_divergence_threshold_is_a_factor_over_the_starting_loss():
    task = get_task("quadratic_diagonal")
    for batched in (True, False):
        result = run_candidate(GRADIENT_ASCENT, task, [RunConfig(0.5, 0), RunConfig(0.4, 1)], steps=200,
                               batched=batched)[0]
        assert result.status == "diverged"
        assert result.losses[-1] > DIVERGENCE_FACTOR * result.initial_loss
        assert max(result.losses[:-1]) <= DIVERGENCE_FACTOR * result.initial_loss
        assert result.stopped_at == len(result.losses) < 50


@pytest.mark.parametrize("name", ["rosenbrock", "mlp_digits"])  # full-batch and stochastic bookkeeping
def test_nan_is_caught_at_the_first_step(name):
    results = run_candidate(MAKES_NAN, get_task(name), [RunConfig(1e-2, 0), RunConfig(1e-1, 1)], steps=50)
    for r in results:
        assert r.status == "nan" and r.stopped_at == 1 and len(r.losses) == 1 and math.isnan(r.final_loss)
        assert math.isfinite(r.initial_loss)


# --- fallback and candidate errors -----------------------------------------------------------


def test_untraceable_program_falls_back_to_sequential():
    task = get_task("teacher_student")
    configs = [RunConfig(1e-2, 0), RunConfig(3e-2, 1)]
    results = run_candidate(DATA_DEPENDENT_IF, task, configs, steps=10)
    assert not any(r.batched for r in results)
    assert_same_runs(results, run_candidate(DATA_DEPENDENT_IF, task, configs, steps=10, batched=False), rtol=0)
    assert all(r.ok for r in results)


@pytest.mark.parametrize("batched", [True, False])
def test_contract_violations_raise_candidate_errors(batched):
    task = get_task("mlp_wine")
    configs = [RunConfig(1e-2, 0), RunConfig(1e-2, 1)]
    with pytest.raises(CandidateError) as wrong_shape:
        run_candidate(WRONG_SHAPE, task, configs, steps=5, batched=batched)
    assert wrong_shape.value.reason == "shape_error" and "shape" in str(wrong_shape.value)
    with pytest.raises(CandidateError) as crashed:
        run_candidate(RAISES_IN_TORCH, task, configs, steps=5, batched=batched)
    assert crashed.value.reason == "shape_error" and "update" in str(crashed.value)


# --- devices ---------------------------------------------------------------------------------


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="cpu"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("gpu please")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        run_candidate(ADAMW, get_task("rosenbrock"), [RunConfig(1e-2, 0)], device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["mlp_digits", "noisy_quadratic", "deep_linear"])
def test_cuda_matches_cpu(name):
    task = get_task(name)
    configs = [RunConfig(lr, seed) for lr in (1e-2, 1e3) for seed in (0, 1)]
    on_gpu = run_candidate(ADAMW, task, configs, steps=20, device="cuda")
    assert all(r.batched for r in on_gpu)
    assert_same_runs(on_gpu, run_candidate(ADAMW, task, configs, steps=20), rtol=1e-3)
