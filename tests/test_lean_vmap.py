"""lean_vmap gives torch.func.vmap's results bit for bit on the argument forms the harness uses,
and fails where vmap fails (the harness's fallback to its sequential path depends on it)."""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, grad_and_value, vmap

from sandbox.lean_vmap import lean_vmap
from sandbox.tasks import get_task

ROWS = 5


def mlp_loss(params, batch):
    h = torch.tanh(batch["x"] @ params["w1"] + params["b1"])
    return torch.nn.functional.cross_entropy(h @ params["w2"], batch["y"])


def stacked(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    params = {"w1": torch.randn(ROWS, 8, 16, generator=g), "b1": torch.randn(ROWS, 16, generator=g),
              "w2": torch.randn(ROWS, 16, 4, generator=g)}
    batch = {"x": torch.randn(ROWS, 32, 8, generator=g), "y": torch.randint(0, 4, (32,), generator=g)}
    return params, batch, {"x": 0, "y": None}


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("transform", [lambda f: f, grad, grad_and_value], ids=["loss", "grad", "grad_and_value"])
def test_the_same_bits_as_vmap_with_per_key_batch_dims(transform):
    params, batch, dims = stacked()
    fn = transform(mlp_loss)
    assert same(lean_vmap(fn, in_dims=(0, dims))(params, batch), vmap(fn, in_dims=(0, dims))(params, batch))


def test_autograd_through_it_as_through_vmap():
    params, batch, dims = stacked(1)
    grads = []
    for mapper in (vmap, lean_vmap):
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        losses = mapper(mlp_loss, in_dims=(0, dims))(leaves, batch)
        grads.append(torch.autograd.grad(losses.sum(), list(leaves.values())))
    assert same(grads[0], grads[1])


def test_tuples_lists_nested_dicts_and_an_unmapped_output():
    flat = (torch.randn(ROWS, 3), torch.randn(ROWS, 2, 2))
    lr = torch.rand(ROWS)
    const = torch.ones(3)

    def step(flat, lr):
        return tuple(t * lr for t in flat), {"a": [flat[0].sum()], "const": const}
    assert same(lean_vmap(step)(flat, lr), vmap(step)(flat, lr))


def test_a_task_loss_under_it_equals_vmap():
    task = get_task("mlp_digits")
    params = {k: torch.stack([v] * 3) for k, v in task.init_params(0).items()}
    batch = task.eval_batch()
    assert same(lean_vmap(task.loss, in_dims=(0, None))(params, batch), vmap(task.loss, in_dims=(0, None))(params, batch))


def test_it_fails_where_vmap_fails_and_leaves_no_level_behind():
    def branch(x):
        return x * 2 if x.sum() > 0 else x  # data-dependent control flow
    x = torch.randn(ROWS, 3)
    with pytest.raises(RuntimeError) as plain:
        vmap(branch)(x)
    with pytest.raises(RuntimeError) as lean:
        lean_vmap(branch)(x)
    assert type(lean.value) is type(plain.value)
    with pytest.raises(ValueError, match="only return Tensors"):
        lean_vmap(lambda x: 1.0)(x)
    # the failed calls left vmap's nesting as they found it: a later call is a plain vmap again
    assert same(lean_vmap(torch.sin)(x), torch.sin(x))
    assert not torch._C._functorch.is_batchedtensor(lean_vmap(torch.sin)(x))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_same_bits_as_vmap_on_cuda():
    params, batch, dims = stacked(2)
    params = {k: v.cuda() for k, v in params.items()}
    batch = {k: v.cuda() for k, v in batch.items()}
    for fn in (mlp_loss, grad(mlp_loss), grad_and_value(mlp_loss)):
        assert same(lean_vmap(fn, in_dims=(0, dims))(params, batch), vmap(fn, in_dims=(0, dims))(params, batch))
