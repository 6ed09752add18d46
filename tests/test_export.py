"""Exported optimizers: standalone modules that reproduce the sandbox bit for bit and behave
like torch.optim optimizers (groups, closures, state_dict, schedulers, deepcopy)."""

from __future__ import annotations

import ast
import copy
import re
import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from archive.export import (
    POSITION_INDEPENDENT_OPS,
    ExportError,
    _position_independent,
    class_name_for,
    descriptive_name,
    export_source,
    load_optimizer,
    register_source_resolver,
    resolve_source,
)
from sandbox import vocabulary
from sandbox.contract import CandidateError, executable_module, load_program, run_init, run_update
from sandbox.references import reference_names, reference_source

SHAPES = [(6,), (5, 3), (3, 7), (2, 3, 2)]


def exported_class(source: str, class_name: str = "Exported") -> type[torch.optim.Optimizer]:
    namespace: dict = {}
    exec(compile(export_source(source, class_name), "<exported>", "exec"), namespace)
    return namespace[class_name]


def make_params(dtype=torch.float32, shapes=SHAPES, seed=0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=torch.float64).to(dtype) for s in shapes]


def grad_of(i: int, p: torch.Tensor) -> torch.Tensor:
    # gradient of a fixed quadratic + sine loss, so each step depends on the trajectory
    return (1.0 + 0.1 * i) * p + torch.cos(3 * p) - 0.2


def sandbox_run(source: str, params0, steps: int, hp_for_step=None, groups=None):
    """The harness's loop: run_update, then param = param + delta. ``groups`` maps a param
    index to its hyperparameter overrides; ``hp_for_step(step)`` gives overrides per step."""
    program = load_program(source)
    params = [p.clone() for p in params0]
    states = [run_init(program, p) for p in params]
    for step in range(1, steps + 1):
        for i, p in enumerate(params):
            overrides = dict((groups or {}).get(i, {}))
            if hp_for_step is not None:
                overrides.update(hp_for_step(step, i))
            delta, states[i] = run_update(program, grad_of(i, p), p, states[i], step, program.hp(**overrides))
            params[i] = p + delta
    return params, states


def exported_run(cls, params0, steps: int, param_groups=None, flat: bool | None = None, **kw):
    """Step an exported optimizer as the harness would. ``flat=True`` takes the fast path with a
    chunk of 8 entries, so larger tensors are stepped in slices (one ends short) and smaller ones
    packed together (the float64 (4,) and (2, 2) of the flat-path test); ``False`` keeps the per-parameter loop (foreach=False); None leaves the
    optimizer's own choice."""
    params = [p.clone().requires_grad_(True) for p in params0]
    if flat is False:
        kw["foreach"] = False
    if param_groups is None:
        opt = cls(params, **kw)
    else:
        opt = cls([{"params": [params[i] for i in idx], **g} for idx, g in param_groups], **kw)
    if flat:
        opt.cpu_chunk_numel = 8
    for _ in range(steps):
        for i, p in enumerate(params):
            p.grad = grad_of(i, p.detach())
        opt.step()
    return params, opt


def assert_same_bits(params, states, exported_params, opt) -> None:
    for p, state, q in zip(params, states, exported_params):
        assert torch.equal(p, q.detach()), (p - q).abs().max()
        opt_state = opt.state[q]
        assert set(opt_state) == set(state) | {"step"}
        for key, value in state.items():
            assert torch.equal(value, opt_state[key]), key


# --- bit-exactness with the sandbox -------------------------------------------------------------


@pytest.mark.parametrize("name", reference_names())
def test_exported_reference_reproduces_the_sandbox_bit_for_bit(name: str) -> None:
    source = reference_source(name)
    params0 = make_params()
    params, states = sandbox_run(source, params0, steps=6)
    exported_params, opt = exported_run(exported_class(source), params0, steps=6, flat=False)
    assert_same_bits(params, states, exported_params, opt)
    assert all(opt.state[q]["step"] == 6 for q in exported_params)


FLAT_REFERENCES = [name for name in reference_names()
                   if _position_independent(executable_module(reference_source(name)))]


def test_which_references_take_the_flat_path() -> None:
    # shape-dependent ops (muon) or a reduction over the whole tensor (mean, norm)
    assert set(reference_names()) - set(FLAT_REFERENCES) == {"muon", "nadam", "nadamw", "lamb", "cautious_adamw"}


@pytest.mark.parametrize("name", FLAT_REFERENCES)
def test_flat_path_reproduces_the_sandbox_bit_for_bit(name: str) -> None:
    source = reference_source(name)
    params0 = make_params() + make_params(torch.float64, shapes=[(4,), (2, 2)], seed=1)
    params, states = sandbox_run(source, params0, steps=5)
    exported_params, opt = exported_run(exported_class(source), params0, steps=5, flat=True)
    assert_same_bits(params, states, exported_params, opt)
    # the fast path writes into each parameter's own state tensors: no views of shared buffers
    assert all(opt.state[p][key]._base is None for p in exported_params for key in states[0])


def test_fast_path_packs_small_tensors_and_slices_large_ones() -> None:
    cls = load_optimizer("adamw")
    seen = []
    rule = cls._step_fast.__globals__["update"]

    def spy(grad, param, state, step, hp):
        seen.append(grad.numel())
        return rule(grad, param, state, step, hp)

    params = [torch.nn.Parameter(torch.randn(n)) for n in (30, 50, 40, 10, 200, 80)]
    opt = cls(params)
    opt.cpu_chunk_numel = 90  # on CPU: the largest call of the rule
    for p in params:
        p.grad = torch.ones_like(p)
    cls._step_fast.__globals__["update"] = spy
    try:
        opt.step()
    finally:
        cls._step_fast.__globals__["update"] = rule
    assert seen == [80, 90, 90, 20, 50, 80]  # 30+50 packed; 200 in slices; 40+10 packed; 80 alone


def test_flat_path_handles_missing_grads_and_odd_layouts() -> None:
    source = reference_source("adamw")
    params0 = make_params()
    program = load_program(source)
    expected = [p.clone() for p in params0]
    states = [run_init(program, p) for p in expected]
    steps = [0] * len(expected)
    cls = exported_class(source)
    exported = [p.clone().requires_grad_(True) for p in params0[:3]]
    # a non-contiguous leaf parameter must go through the per-parameter loop
    exported.append(params0[3].transpose(0, 2).contiguous().transpose(0, 2).requires_grad_(True))
    assert not exported[3].is_contiguous()
    opt = cls(exported)
    opt.cpu_chunk_numel = 7
    for t in range(6):
        for i, p in enumerate(exported):
            p.grad = None if (t + i) % 3 == 0 else grad_of(i, p.detach())
            if p.grad is not None:
                steps[i] += 1
                delta, states[i] = run_update(program, p.grad.clone(), expected[i], states[i], steps[i], program.hp())
                expected[i] = expected[i] + delta
        opt.step()
    for i, p in enumerate(exported):
        assert torch.equal(p.detach(), expected[i])
        assert opt.state[p]["step"] == steps[i]


@pytest.mark.parametrize("name", ["muon", "winner"])
def test_matrix_rules_step_same_shaped_parameters_in_one_batched_call(name: str) -> None:
    # foreach=True on the CPU (by default only off it): one vmapped call of the rule per group of
    # same-shaped parameters; batched matrix products may round differently from single ones
    cls = load_optimizer(name if name != "winner" else str(WINNER))
    rule = cls._step_fast.__globals__["update"] if hasattr(cls, "_step_fast") else cls._step_param.__globals__["update"]
    calls = []

    def spy(grad, param, state, step, hp):
        calls.append(tuple(grad.shape))
        return rule(grad, param, state, step, hp)

    shapes = [(6, 4)] * 3 + [(4,)] * 2 + [(4, 6), (5,)]
    params0 = make_params(shapes=shapes, seed=2)
    looped, _ = exported_run(cls, params0, steps=4, flat=False)
    cls._step_param.__globals__["update"] = spy
    try:
        batched, opt = exported_run(cls, params0, steps=4, foreach=True)
    finally:
        cls._step_param.__globals__["update"] = rule
    assert getattr(opt, "_vmap_works", True)
    assert calls.count((6, 4)) == 4 and calls.count((4,)) == 4 and len(calls) == 4 * 4  # 3 groups + 2 alone
    for p, q in zip(looped, batched):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # measured identical on this CPU


@pytest.mark.parametrize("body, flat", [
    ("    return -hp.lr * interp(grad, state['m'], 0.9) / (sqrt(abs(grad)) + 1), state", True),
    ("    return -exp(hp.lr) * sign(grad) * where(grad > 0, grad, -grad), state", True),
    ("    return -hp.lr * sigmoid(grad), state", False),
    ("    return -hp.lr * grad ** 2, state", False),
    ("    return -hp.lr * grad / rms(grad), state", False),
    ("    return -hp.lr * grad / mean(x=grad), state", False),
    ("    g = grad if mean(grad) > 0 else -grad\n    return -hp.lr * g, state", False),
    ("    return -hp.lr * grad * ndim(param), state", False),
    ("    return -hp.lr * helper(grad), state", True),
    ("    return -hp.lr * other(grad), state", False),
    ("    return -hp.lr * other(hp.lr) * grad, state", True),
])
def test_position_independence_analysis(body: str, flat: bool) -> None:
    source = ('HPARAMS = {"lr": 0.1}\n\ndef helper(x):\n    return sqrt(abs(x)) * 2\n\n'
              'def other(x):\n    return tanh(x)\n\n'
              'def init(param):\n    return {"m": zeros_like(param)}\n\n'
              'def update(grad, param, state, step, hp):\n' + body + "\n")
    assert _position_independent(executable_module(source)) is flat
    assert ("_has_fast_path = True" in export_source(source)) is flat


def test_position_independent_ops_are_exact_on_concatenations() -> None:
    # What the flat path relies on, checked on this machine's kernels (odd sizes hit the tails
    # of vectorised loops).
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(n, generator=gen) for n in (1, 7, 33, 130, 1029)]
    others = [torch.rand(n, generator=gen) + 0.1 for n in (1, 7, 33, 130, 1029)]
    whole, other = torch.cat(parts), torch.cat(others)
    for name in sorted(POSITION_INDEPENDENT_OPS):
        op = vocabulary.OPS[name]
        args = {"clamp": lambda x, y: (x, -0.5, 0.5), "where": lambda x, y: (x > 0, x, y),
                "interp": lambda x, y: (x, y, 0.9), "full_like": lambda x, y: (x, 0.5),
                "maximum": lambda x, y: (x, y), "minimum": lambda x, y: (x, y),
                "sqrt": lambda x, y: (y,)}.get(name, lambda x, y: (x,))
        separate = torch.cat([op(*args(x, y)) for x, y in zip(parts, others)])
        assert torch.equal(op(*args(whole, other)), separate), name


EVERY_OP = '''"""Calls every vocabulary op once, to prove each survives export unchanged."""
HPARAMS = {"lr": 0.01}


def init(param):
    return {"m": zeros_like(param), "k": ones_like(param), "f": full_like(param, 0.5)}


def update(grad, param, state, step, hp):
    g = grad
    a = abs(g) + sign(g) + sqrt(abs(g)) + rsqrt(abs(g) + 1) + exp(-square(g))
    b = log(abs(g) + 1) + tanh(g) + sigmoid(g) + relu(g) + power(abs(g), 1.5)
    c = clamp(g, -1, 1) + maximum(g, 0.1) + minimum(g, state["k"]) + where(g > 0, g, state["f"])
    m = interp(g, state["m"], 0.9)
    s = mean(g) + sum(g) / numel(g) + rms(g) + norm(g) / (1 + dot(g, g)) + amax(g)
    o = newton_schulz(m, 3) + matmul(g, matmul(transpose(g), g)) / (1 + norm(g) ** 3)
    scale = ndim(param) * size(param, 0) + sqrt(2) + exp(0.5) + log(3.0) + tanh(1.0)
    return -hp.lr * (a + b + c + s + o) / scale, {"m": m, "k": state["k"], "f": state["f"]}
'''


def test_every_vocabulary_op_survives_export() -> None:
    assert load_program(EVERY_OP).ops_used == frozenset(vocabulary.OPS), "add new ops to EVERY_OP"
    params0 = make_params(shapes=[(4, 3), (3, 5)])
    params, states = sandbox_run(EVERY_OP, params0, steps=3)
    exported_params, opt = exported_run(exported_class(EVERY_OP), params0, steps=3)
    assert_same_bits(params, states, exported_params, opt)


def test_exported_module_imports_only_torch() -> None:
    tree = ast.parse(export_source(EVERY_OP, "EveryOp"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"torch"}


def test_exported_module_runs_in_a_fresh_interpreter(tmp_path: Path) -> None:
    (tmp_path / "my_opt.py").write_text(export_source(reference_source("lion"), "Lion"))
    script = ("import sys; sys.modules['sandbox'] = None; sys.modules['archive'] = None\n"
              "import torch; from my_opt import Lion\n"
              "w = torch.nn.Parameter(torch.ones(3)); opt = Lion([w], lr=0.1)\n"
              "w.grad = torch.tensor([1.0, -1.0, 0.0]); opt.step(); print(w.tolist())")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0.8999999761581421, 1.100000023841858, 1.0]"


AUGMENTED = '''"""Momentum written with augmented assignments."""
HPARAMS = {"lr": 0.1, "beta": 0.9}


def init(param):
    return {"m": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = state["m"]
    m *= hp.beta  # decay the old average
    m += grad
    grad -= 0.5 * param  # a grad that is also mutated
    return -hp.lr * (m + grad), {"m": m}
'''


def test_augmented_assignment_is_spelled_out_and_comments_survive() -> None:
    text = export_source(AUGMENTED, "Momentum")
    assert "m = m * hp.beta  # decay the old average" in text
    assert "grad = grad - 0.5 * param  # a grad that is also mutated" in text
    rule = [node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef) and node.name == "update"]
    assert len(rule) == 1 and not any(isinstance(node, ast.AugAssign) for node in ast.walk(rule[0]))
    params0 = make_params()
    params, states = sandbox_run(AUGMENTED, params0, steps=4)
    exported_params, opt = exported_run(exported_class(AUGMENTED), params0, steps=4)
    assert_same_bits(params, states, exported_params, opt)


COLLIDING = '''HPARAMS = {"lr": 0.05}
torch = 2.0
float = 3.0


def max(a, b):
    return maximum(a, b)


def init(param):
    return {"m": zeros_like(param)}


def update(grad, param, state, step, hp):
    m = max(interp(grad, state["m"], 0.9), -torch)
    return -hp.lr * clamp(m, -float, float), {"m": m}
'''


def test_top_level_names_that_collide_with_the_module_are_renamed() -> None:
    text = export_source(COLLIDING, "Colliding")
    assert "torch_rule = 2.0" in text and "def max_rule(a, b):" in text
    params0 = make_params()
    params, states = sandbox_run(COLLIDING, params0, steps=4)
    exported_params, opt = exported_run(exported_class(COLLIDING), params0, steps=4)
    assert_same_bits(params, states, exported_params, opt)


ALIASING = '''HPARAMS = {"lr": 0.1}


def init(param):
    return {"first": param, "prev": zeros_like(param)}


def update(grad, param, state, step, hp):
    delta = -hp.lr * (grad + state["prev"]) + 0.01 * (state["first"] - param)
    return delta, {"first": state["first"], "prev": grad}
'''


def test_state_that_remembers_param_or_grad_is_not_mutated_later() -> None:
    params0 = make_params()
    params, states = sandbox_run(ALIASING, params0, steps=5)
    cls = exported_class(ALIASING)
    exported = [p.clone().requires_grad_(True) for p in params0]
    opt = cls(exported)
    for p in exported:
        p.grad = torch.zeros_like(p)
    for _ in range(5):
        for i, p in enumerate(exported):
            p.grad.copy_(grad_of(i, p.detach()))  # backward accumulates into the same tensor
        opt.step()
    assert_same_bits(params, states, exported, opt)


# --- torch.optim behaviour ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)], ids=["f32", "f64"])
def test_exported_adamw_matches_torch_adamw_on_an_mlp(dtype: torch.dtype, tol: float) -> None:
    exported_adamw = load_optimizer("adamw")
    torch.manual_seed(0)
    x, y = torch.randn(128, 16, dtype=dtype), torch.randint(0, 4, (128,))
    models = [torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).to(dtype)
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    initial = [p.detach().clone() for p in models[0].parameters()]
    ours = exported_adamw(models[0].parameters(), lr=3e-3, weight_decay=0.1)
    theirs = torch.optim.AdamW(models[1].parameters(), lr=3e-3, weight_decay=0.1)
    for _ in range(100):
        for model, opt in ((models[0], ours), (models[1], theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    assert min((a - b).abs().max() for a, b in zip(models[0].parameters(), initial)) > 0.05
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        # float32: the two round in different places (decay, then a fused addcdiv), ~1 ulp a step
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "per-param"])
def test_state_dict_round_trip_resumes_with_the_identical_next_step(flat: bool) -> None:
    cls = load_optimizer("ademamix")
    params0 = make_params()
    params, opt = exported_run(cls, params0, steps=5, flat=flat, lr=0.01, weight_decay=0.1)
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    assert opt.state_dict()["state"][0]["step"] == 5

    resumed_params = [p.detach().clone().requires_grad_(True) for p in params]
    resumed = cls(resumed_params, lr=0.01, weight_decay=0.1)
    resumed.cpu_chunk_numel = opt.cpu_chunk_numel
    resumed.param_groups[0]["foreach"] = opt.param_groups[0]["foreach"]
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer))
    for optimizer, ps in ((opt, params), (resumed, resumed_params)):
        for i, p in enumerate(ps):
            p.grad = grad_of(i, p.detach())
        optimizer.step()
    for p, q in zip(params, resumed_params):
        assert torch.equal(p, q)
        assert opt.state[p]["step"] == resumed.state[q]["step"] == 6
        for key in ("m1", "m2", "v"):
            assert torch.equal(opt.state[p][key], resumed.state[q][key])


def test_lr_scheduler_drives_hp_lr() -> None:
    source = reference_source("sgd_momentum")
    params0 = make_params()
    params, states = sandbox_run(source, params0, steps=6, hp_for_step=lambda step, i: {"lr": 0.1 * 0.5 ** (step - 1)})

    cls = exported_class(source)
    exported = [p.clone().requires_grad_(True) for p in params0]
    opt = cls(exported, lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5 ** epoch)
    for _ in range(6):
        for i, p in enumerate(exported):
            p.grad = grad_of(i, p.detach())
        opt.step()
        scheduler.step()
    assert_same_bits(params, states, exported, opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 6)


def test_param_groups_have_their_own_hyperparameters() -> None:
    source = reference_source("adamw")
    params0 = make_params()
    groups = {0: {"lr": 0.05, "weight_decay": 0.5}, 1: {"lr": 0.05, "weight_decay": 0.5}, 2: {"beta1": 0.5}, 3: {"beta1": 0.5}}
    params, states = sandbox_run(source, params0, steps=4, groups=groups)
    exported_params, opt = exported_run(exported_class(source), params0, steps=4, param_groups=[
        ([0, 1], {"lr": 0.05, "weight_decay": 0.5}), ([2, 3], {"beta1": 0.5})])
    assert_same_bits(params, states, exported_params, opt)
    assert opt.param_groups[1]["lr"] == 1e-3 and opt.param_groups[0]["beta1"] == 0.9


def test_closure_is_evaluated_with_grad_enabled_and_its_loss_returned() -> None:
    cls = load_optimizer("sgd")
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = cls([w], lr=0.1)

    def closure():
        assert torch.is_grad_enabled()
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 5.0
    assert torch.equal(w.detach(), torch.tensor([1.0, -2.0]) - 0.1 * torch.tensor([2.0, -4.0]))


def test_params_without_grad_are_skipped() -> None:
    cls = load_optimizer("adam")
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = cls([a, b], lr=0.1)
    a.grad = torch.ones(3)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(3)) and len(opt.state[b]) == 0
    assert not torch.equal(a.detach(), torch.ones(3)) and opt.state[a]["step"] == 1


def test_sparse_gradients_and_complex_parameters_of_shape_dependent_rules_are_refused() -> None:
    cls = load_optimizer("adam")
    embedding = torch.nn.Embedding(10, 3, sparse=True)
    opt = cls(embedding.parameters())
    embedding(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="does not support sparse gradients"):
        opt.step()
    with pytest.raises(ValueError, match="Invalid learning rate"):
        cls([torch.nn.Parameter(torch.randn(3))], lr=-1.0)
    with pytest.raises(ValueError, match="optimizes floating-point parameters"):
        cls([torch.zeros(3, dtype=torch.int64)])
    # an elementwise rule takes complex parameters as torch.view_as_real pairs (as torch.optim
    # does); Muon's reads shapes (ndim, newton_schulz), which view_as_real would change
    w = torch.randn(3, 2, dtype=torch.complex64, requires_grad=True)
    w.grad = torch.ones_like(w)
    muon = load_optimizer("muon")([w])
    with pytest.raises(RuntimeError, match=r"Muon does not support complex parameters: its rule uses .*newton_schulz"):
        muon.step()


def test_deepcopy_gives_an_independent_optimizer() -> None:
    cls = load_optimizer("lion")
    params, opt = exported_run(cls, make_params(), steps=2)
    twin = copy.deepcopy(opt)
    twin_params = twin.param_groups[0]["params"]
    for optimizer, ps in ((opt, params), (twin, twin_params)):
        for i, p in enumerate(ps):
            p.grad = grad_of(i, p.detach())
        optimizer.step()
    for p, q in zip(params, twin_params):
        assert p is not q and torch.equal(p, q)
        assert opt.state[p]["m"] is not twin.state[q]["m"]
        assert torch.equal(opt.state[p]["m"], twin.state[q]["m"])


def test_constructor_and_repr_show_every_hyperparameter() -> None:
    cls = load_optimizer("adamw")
    assert cls.__name__ == "AdamW"
    opt = cls([torch.nn.Parameter(torch.ones(2))], beta2=0.95)
    text = repr(opt)
    for line in ("beta1: 0.9", "beta2: 0.95", "eps: 1e-08", "lr: 0.001", "weight_decay: 0.01"):
        assert line in text
    paired = cls([torch.nn.Parameter(torch.ones(2))], betas=(0.8, 0.99))
    assert (paired.defaults["beta1"], paired.defaults["beta2"]) == (0.8, 0.99)
    grouped = cls([{"params": [torch.nn.Parameter(torch.ones(2))], "betas": (0.5, 0.6)}])
    assert (grouped.param_groups[0]["beta1"], grouped.param_groups[0]["beta2"]) == (0.5, 0.6)


def test_a_state_key_named_step_is_refused_clearly() -> None:
    source = 'HPARAMS = {"lr": 0.1}\n\ndef init(param):\n    return {"step": zeros_like(param)}\n\n' \
             'def update(grad, param, state, step, hp):\n    return -hp.lr * grad, state\n'
    cls = exported_class(source)
    w = torch.nn.Parameter(torch.ones(2))
    w.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match="state has a key 'step'"):
        cls([w]).step()


# --- export errors and sources ---------------------------------------------------------------


def test_export_rejects_what_it_cannot_write() -> None:
    with pytest.raises(CandidateError) as info:
        export_source("import os\n" + reference_source("sgd"))
    assert info.value.reason == "forbidden_construct"
    with pytest.raises(ExportError, match="not a valid Python class name"):
        export_source(reference_source("sgd"), "my optimizer")
    with pytest.raises(ExportError, match="params"):
        export_source(reference_source("sgd").replace('"weight_decay"', '"params"').replace("hp.weight_decay", "hp.params"))


def test_resolve_source_by_file_reference_and_registered_resolver(tmp_path: Path) -> None:
    path = tmp_path / "my_rule.py"
    path.write_text(reference_source("signum"))
    assert resolve_source(str(path)).source == reference_source("signum")
    assert load_optimizer(str(path)).__name__ == "MyRule"
    assert resolve_source("nadam").name == "nadam"
    with pytest.raises(ExportError, match="no such file"):
        resolve_source(str(tmp_path / "missing.py"))
    with pytest.raises(ExportError, match="no such candidate file, reference optimizer"):
        resolve_source("not_an_optimizer")

    from archive.export import _RESOLVERS
    saved = dict(_RESOLVERS)
    try:
        register_source_resolver("test", lambda ref: None)
        assert list(_RESOLVERS)[-1] == "test"
    finally:
        _RESOLVERS.clear()
        _RESOLVERS.update(saved)


def test_load_optimizer_from_an_archived_program(tmp_path: Path) -> None:
    from archive.store import open_archive

    with open_archive(tmp_path / "run", create=True) as archive:
        program_id = archive.add_program(reference_source("adamw"))
        broken = archive.add_program("import os\n" + reference_source("sgd"))
    cls = load_optimizer(f"{tmp_path / 'run'}:{program_id}")
    assert cls.__name__ == "AdamW"  # named from its docstring ("AdamW: ..."), not by its id
    # a program that breaks the contract resolves (by its id) and fails where the contract is checked
    assert resolve_source(f"{tmp_path / 'run'}:{broken}").name == f"program_{broken}"
    with pytest.raises(CandidateError, match="import is not allowed"):
        load_optimizer(f"{tmp_path / 'run'}:{broken}")
    with pytest.raises(ExportError):
        load_optimizer(f"{tmp_path / 'run'}:{broken + 1}")


def test_an_archived_winner_exports_with_what_its_campaign_measured(tmp_path: Path) -> None:
    # The docstring carries the evidence and where to start lr: the tuned learning rate per
    # task beside tuned AdamW's, and their median ratio.
    from archive.store import open_archive

    with open_archive(tmp_path / "run", create=True) as store:
        def scores(lrs: list[float]) -> dict:
            return {task: {"score": 1.5, "best_lr": lr} for task, lr in zip(("a_task", "b_task", "c_task"), lrs)}
        store.add_program(reference_source("adamw"), proposer="reference", name="adamw", status="evaluated",
                          fitness=1.0, stage="full", scores=scores([0.1, 0.3, 1.0]),
                          meta={"heldout_scores": {"h_task": {"score": 1.0, "best_lr": 0.03}}})
        winner = store.add_program(reference_source("lion"), proposer="mutation", status="evaluated", fitness=1.4,
                                   fitness_spread=0.05, stage="confirmed", scores=scores([0.01, 0.03, 0.3]),
                                   heldout_fitness=1.2, meta={"confirmed_fitness": 1.3, "confirmed_spread": 0.02,
                                                              "heldout_scores": {"h_task": {"score": 1.2, "best_lr": 0.003}}})
        unscored = store.add_program(reference_source("sgd"))
    found = resolve_source(f"{tmp_path / 'run'}:best")
    doc = export_source(found.source, "Winner", found.evidence)
    assert f"Measured in campaign run, program #{winner}" in doc
    # all three tiers, in the tiers' words, and the campaign's verdict (not announced: no flag)
    assert "search tier      1.400 ± 0.050" in doc
    assert "validation tier  1.300 ± 0.020" in doc
    assert "test tier        1.200" in doc
    assert "verdict          not beyond noise" in doc
    assert "search    a_task                  1.50x   lr 0.01     AdamW 0.1" in doc
    assert "test      h_task                  1.20x   lr 0.003    AdamW 0.03" in doc
    assert "Median learning-rate ratio to AdamW: 0.1. Start from about 0.1x" in doc  # ratios 0.1, 0.1, 0.3, 0.1
    # a campaign's program also discloses its measured step cost next to torch's AdamW
    cost = re.search(r"Step cost: one step\(\) took ([0-9.]+)x as long as torch.optim.AdamW's", doc)
    assert cost and 0.05 < float(cost.group(1)) < 50
    assert found.name == "Lion"  # named from its docstring, not "program_2"
    namespace: dict = {}
    exec(compile(doc, "<exported>", "exec"), namespace)  # still a valid module
    assert namespace["Winner"].__name__ == "Winner"
    assert resolve_source(f"{tmp_path / 'run'}:{unscored}").evidence == ""  # nothing measured, nothing claimed
    assert resolve_source("lion").evidence == ""


def test_an_exported_module_loads_and_is_not_mistaken_for_a_candidate(tmp_path: Path, monkeypatch, capsys) -> None:
    path = tmp_path / "my_lion.py"
    path.write_text(export_source(reference_source("lion"), "MyLion"))
    cls = load_optimizer(str(path))  # imported as the module it is
    assert cls.__name__ == "MyLion" and issubclass(cls, torch.optim.Optimizer)
    rebuilt = load_optimizer("lion")
    w1, w2 = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    for w, opt in ((w1, cls([w1], lr=0.1)), (w2, rebuilt([w2], lr=0.1))):
        w.grad = torch.tensor([1.0, -2.0, 0.5])
        opt.step()
    assert torch.equal(w1, w2)
    with pytest.raises(ExportError, match="module `discover export` wrote, not a candidate program"):
        resolve_source(str(path))
    code, out, err = run_cli(monkeypatch, capsys, "export", str(path), "-o", str(tmp_path / "again.py"))
    assert code == 2 and "not a candidate program" in err and not (tmp_path / "again.py").exists()
    # a file that merely defines a class is not an exported module: it is checked as a candidate
    plain = tmp_path / "plain.py"
    plain.write_text('"""My optimizer."""\nclass Foo:\n    pass\n')
    with pytest.raises(CandidateError):
        load_optimizer(str(plain))


WINNER = Path(__file__).resolve().parents[1] / "results" / "winner_program.py"
SEED0_WINNER = Path(__file__).resolve().parents[1] / "results" / "seed0_winner_program.py"


def test_a_discovered_rule_is_named_and_described_from_its_code() -> None:
    # the winners' docstrings are edit logs ("Mutant: ..."): the name and the plain description
    # come from what the rule computes
    winner, seed0 = WINNER.read_text(), SEED0_WINNER.read_text()
    assert descriptive_name(winner, load_program(winner).doc) == "NewtonSchulzAdam"
    assert descriptive_name(seed0, load_program(seed0).doc) == "ClippedNormalizedAdam"
    assert descriptive_name(reference_source("lion"), load_program(reference_source("lion")).doc) == "Lion"
    doc = " ".join(ast.get_docstring(ast.parse(export_source(winner, "NewtonSchulzAdam"))).split())
    assert "orthogonalises 2-D gradients (or momenta) with Newton-Schulz iterations" in doc
    assert "L2-style decay" in doc  # its weight_decay feeds the running averages
    assert "g = newton_schulz(grad, 5) + hp.weight_decay * param" in doc  # the maths, as it runs
    assert "no complex parameters (its rule uses newton_schulz" in doc and "Step cost" not in doc
    assert "No campaign measured this program; lr=0.001 is its own default" in doc
    adamw_doc = " ".join(ast.get_docstring(ast.parse(export_source(reference_source("adamw"), "AdamW"))).split())
    assert "decoupled weight decay, as AdamW's" in adamw_doc and "complex parameters (as torch.view_as_real)" in adamw_doc


def test_class_names() -> None:
    assert [class_name_for(n) for n in ("adamw", "sgd_momentum", "my-rule", "3x")] == \
        ["AdamW", "SGDMomentum", "MyRule", "Optimizer3x"]
    assert all(class_name_for(n).isidentifier() for n in reference_names())


# --- the CLI ---------------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from discover.cli import main

    monkeypatch.setattr(sys, "argv", ["discover", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out, err = capsys.readouterr()
    return info.value.code or 0, out, err


def test_cli_export_writes_an_importable_module(tmp_path: Path, monkeypatch, capsys) -> None:
    target = tmp_path / "my_opt.py"
    code, out, err = run_cli(monkeypatch, capsys, "export", "lion", "-o", str(target), "--class-name", "MyLion")
    assert code == 0, err
    assert str(target) in out.replace("\n", "")
    assert "from my_opt import MyLion" in out and "optimizer = MyLion(model.parameters())" in out
    assert "MyLion is a torch.optim.Optimizer; use it like one:" in out and "torch.optim.AdamW" not in out
    namespace: dict = {}
    exec(target.read_text(), namespace)
    assert issubclass(namespace["MyLion"], torch.optim.Optimizer)


@pytest.mark.parametrize("make_input, fragment", [
    (lambda d: str(d / "missing.py"), "no such file"),
    (lambda d: "nonexistent_reference", "no such candidate file, reference optimizer"),
    (lambda d: _write(d / "notes.py", "This optimizer is great.\nTrust me."), "syntax error"),
    (lambda d: _write(d / "evil.py", "import os\n" + reference_source("sgd")), "line 1: import is not allowed"),
])
def test_cli_export_bad_input_is_one_line_and_exit_code_2(tmp_path: Path, monkeypatch, capsys, make_input, fragment) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "export", make_input(tmp_path), "-o", str(tmp_path / "o.py"))
    assert code == 2
    assert fragment in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.py").exists()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
