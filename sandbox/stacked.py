"""The batched harness's step past vmap, on CPU, where that gives the same bits.

vmap's per-op bookkeeping, not arithmetic, is most of a small task's training step. Two pieces
of the step can skip it (see :mod:`sandbox.harness`):

* :func:`stacked_grads`: every row's gradient by plain autograd through the vmapped loss, for
  tasks that declare it exact (``Task.exact_stacked_grad``; tests/test_stacked_step.py checks
  each one at its variants and at two batch sizes);
* :func:`stacked_update`: the candidate's update called once on the stacked rows, for rules
  :func:`sandbox.rule_analysis.position_independent` accepts with ``hp.lr`` a tensor.

:class:`FlatLayout` is the form parameters and states take where the step stays under vmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sandbox.contract import MAX_STATE_FACTOR, HParams, Program
from sandbox.lean_vmap import lean_vmap
from sandbox.tasks.base import Batch, Params, Task


def stacked_grads(task: Task, params: Params, batch: Batch, batch_dims) -> tuple[Params, torch.Tensor]:
    """Every row's gradient and loss by plain autograd through the vmapped loss: the rows are
    independent, so the gradient of their sum with respect to the stacked parameters is each
    row's own gradient (d sum / d loss_i is exactly 1). The backward pass then runs as ordinary
    batched kernels instead of under vmap's per-op bookkeeping: 1.3-1.8x faster than
    ``vmap(grad(loss))`` on the search tasks on CPU, and bit for bit the same where a task declares
    it (:attr:`~sandbox.tasks.base.Task.exact_stacked_grad`, checked by the task tests)."""
    with torch.enable_grad():
        leaves = {name: p.detach().requires_grad_() for name, p in params.items()}
        losses = lean_vmap(task.loss, in_dims=(0, batch_dims))(leaves, batch)
        grads = torch.autograd.grad(losses.sum(), list(leaves.values()), allow_unused=True)
    # A parameter the loss does not use gets zeros, as vmap(grad) gives it.
    return ({name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(leaves.items(), grads)},
            losses.detach())


class _Unstackable(Exception):
    """The rule's update returned something outside the contract (see stacked_update)."""


def stacked_update(program: Program, grads: Params, params: Params, states: dict[str, dict], step: int,
                   hp: HParams, lr: torch.Tensor) -> tuple[Params, dict[str, dict]]:
    """The update applied once to the stacked rows of every parameter, without vmap, for a rule
    whose tensors only meet ops that act on each entry alone and round it correctly
    (:func:`sandbox.rule_analysis.position_independent`, with ``hp.lr`` a tensor): each entry of
    the result is then the same operation on the same numbers as under vmap, so the bits are the
    same. ``hp.lr`` is the rows' learning rates shaped to broadcast against the parameter. A
    result outside the contract raises :class:`_Unstackable`, and the run falls back to the
    sequential path, whose checks name the candidate's error."""
    rows = lr.shape[0]
    new_params, new_states = {}, {}
    for name, param in params.items():
        state = states[name]
        result = program.update(grads[name], param, dict(state), step,
                                hp.replace(lr=lr.reshape((rows,) + (1,) * (param.dim() - 1))))
        if not (isinstance(result, tuple) and len(result) == 2):
            raise _Unstackable("update did not return (delta, state)")
        delta, new_state = result
        if not (isinstance(delta, torch.Tensor) and delta.shape == param.shape and delta.is_floating_point()):
            raise _Unstackable("delta is not a floating tensor shaped like the stacked parameter")
        if not (isinstance(new_state, dict) and new_state.keys() == state.keys()
                and all(isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == rows for v in new_state.values())):
            raise _Unstackable("state is not a dict of stacked tensors with init's keys")
        if sum(v.numel() for v in new_state.values()) > MAX_STATE_FACTOR * param.numel() + 4096 * rows:
            raise _Unstackable("state over the contract's budget")
        new_params[name] = param + delta.to(param.dtype)
        new_states[name] = new_state
    return new_params, new_states


class FlatLayout:
    """Parameters and optimizer states as one flat tuple of tensors, the form the batched path
    hands across vmap's boundary where the step stays under vmap: vmap flattens and rebuilds its
    inputs and outputs as pytrees on every call, and a flat tuple keeps that to one level (the
    nested dicts of states had two). The order is fixed at the start of the run."""

    def __init__(self, params: Params, states: dict[str, dict]):
        self.names = tuple(params)
        self.keys = tuple(tuple(states[name]) for name in self.names)

    def flatten(self, params: Params, states: dict[str, dict]) -> tuple[torch.Tensor, ...]:
        out = [params[name] for name in self.names]
        for name, keys in zip(self.names, self.keys):
            state = states[name]
            out.extend(state[key] for key in keys)
        return tuple(out)

    def unflatten(self, flat: Sequence[torch.Tensor]) -> tuple[Params, dict[str, dict]]:
        params = dict(zip(self.names, flat))
        states, at = {}, len(self.names)
        for name, keys in zip(self.names, self.keys):
            states[name] = dict(zip(keys, flat[at:at + len(keys)]))
            at += len(keys)
        return params, states
