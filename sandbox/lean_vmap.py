"""``torch.func.vmap`` without its per-call Python bookkeeping, for the harness's training loop.

A batched training step makes two to four vmapped calls on small tensors, and on CPU vmap's own
Python wrapper (matching ``in_dims`` against the arguments' pytree, flattening and rebuilding
them, checking the outputs) costs about as much as a small task's arithmetic: ~50 us a call
that does nothing, and a digits-MLP loss took 137-165 us under ``torch.func.vmap`` against
83-90 us here (one thread, 5 rows). :func:`lean_vmap` does what ``torch.func.vmap`` does once it
has checked its inputs (``torch._functorch.vmap._flat_vmap``): enter a vmap level, wrap each
mapped tensor as a batched tensor of that level, call, take the batch dimension back out of
every output as dim 0. The same functorch primitives run the same kernels, so the results are
the same bits; only the checks are gone, which is why it takes only the argument forms the
harness builds: tensors, and dicts, tuples and lists of them, each argument's ``in_dims`` 0 or
None (or, for a dict, a dict of those per key). Where torch lacks the primitives it is
``torch.func.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.func import vmap

try:
    from torch._C._functorch import (
        _add_batch_dim,
        _remove_batch_dim,
        _vmap_decrement_nesting,
        _vmap_increment_nesting,
    )
    from torch._functorch.vmap import lazy_load_decompositions
except ImportError:  # pragma: no cover - a torch without them: plain vmap
    _add_batch_dim = None


def lean_vmap(func: Callable[..., Any], in_dims: Any = 0) -> Callable[..., Any]:
    """``torch.func.vmap(func, in_dims)`` (randomness "error", outputs mapped along dim 0) for
    the harness's own argument forms (module docstring)."""
    if _add_batch_dim is None:
        return vmap(func, in_dims=in_dims)
    # vmap registers its batching decompositions the first time it runs; so must this.
    lazy_load_decompositions()
    dims = in_dims if isinstance(in_dims, tuple) else None

    def mapped(*args: Any) -> Any:
        arg_dims = dims if dims is not None else (in_dims,) * len(args)
        size = _batch_size(args, arg_dims)
        level = _vmap_increment_nesting(size, "error")
        try:
            out = func(*[_wrap(arg, dim, level) for arg, dim in zip(args, arg_dims)])
            return _unwrap(out, level, size)
        finally:
            _vmap_decrement_nesting()
    return mapped


def _batch_size(args: tuple, arg_dims: tuple) -> int:
    for arg, dim in zip(args, arg_dims):
        size = _first_size(arg, dim)
        if size is not None:
            return size
    raise ValueError("lean_vmap: no argument is mapped")


def _first_size(arg: Any, dim: Any) -> int | None:
    if dim is None:
        return None
    if isinstance(arg, torch.Tensor):
        return arg.shape[dim]
    if isinstance(arg, dict):
        for key, value in arg.items():
            size = _first_size(value, dim[key] if isinstance(dim, dict) else dim)
            if size is not None:
                return size
    elif isinstance(arg, (tuple, list)):
        for value in arg:
            size = _first_size(value, dim)
            if size is not None:
                return size
    return None


def _wrap(arg: Any, dim: Any, level: int) -> Any:
    if dim is None:
        return arg
    if isinstance(arg, torch.Tensor):
        return _add_batch_dim(arg, dim, level)
    if isinstance(arg, dict):
        return {key: _wrap(value, dim[key] if isinstance(dim, dict) else dim, level) for key, value in arg.items()}
    if isinstance(arg, (tuple, list)):
        return type(arg)(_wrap(value, dim, level) for value in arg)
    raise TypeError(f"lean_vmap: cannot map a {type(arg).__name__}")


def _unwrap(out: Any, level: int, size: int) -> Any:
    if isinstance(out, torch.Tensor):
        return _remove_batch_dim(out, level, size, 0)
    if isinstance(out, dict):
        return {key: _unwrap(value, level, size) for key, value in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_unwrap(value, level, size) for value in out)
    # As vmap says it (the harness falls back to its sequential path, which names the error).
    raise ValueError(f"vmap: the function must only return Tensors, got type {type(out)}")
