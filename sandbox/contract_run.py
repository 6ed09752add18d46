"""Running one ``init`` or ``update`` call of a loaded candidate with its output contract checked:
the state dict and the ``(delta, new_state)`` pair."""

from __future__ import annotations

from typing import Any

import torch

from sandbox.contract_load import Program
from sandbox.contract_terms import MAX_STATE_FACTOR, CandidateError, HParams


def check_state(state: Any, param: torch.Tensor, where: str, keys: frozenset[str] | None = None) -> dict:
    """Validate a state dict returned by ``init`` or ``update``; raise ``CandidateError``."""
    if not isinstance(state, dict):
        raise CandidateError("shape_error", f"{where} must return a dict of tensors as state, got {type(state).__name__}")
    if keys is not None and frozenset(state) != keys:
        raise CandidateError(
            "shape_error", f"{where} returned state keys {sorted(state)}, but init made {sorted(keys)}")
    budget = MAX_STATE_FACTOR * param.numel() + 4096
    total = 0
    for key, value in state.items():
        if not isinstance(key, str):
            raise CandidateError("shape_error", f"{where}: state keys must be strings, got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise CandidateError("shape_error", f"{where}: state[{key!r}] must be a tensor, got {type(value).__name__}")
        total += value.numel()
    if total > budget:
        raise CandidateError("shape_error", f"{where}: state holds {total} entries, more than {MAX_STATE_FACTOR}x the parameter's {param.numel()}")
    return state


def check_update_result(result: Any, param: torch.Tensor, keys: frozenset[str]) -> tuple[torch.Tensor, dict]:
    """Validate ``update``'s ``(delta, new_state)``; raise ``CandidateError`` with reason shape_error."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CandidateError("shape_error", f"update must return (delta, new_state), got {type(result).__name__}"
                             + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    delta, state = result
    if not isinstance(delta, torch.Tensor):
        raise CandidateError("shape_error", f"update's delta must be a tensor shaped like param, got {type(delta).__name__}")
    if delta.shape != param.shape:
        raise CandidateError("shape_error", f"update's delta has shape {tuple(delta.shape)}, param has {tuple(param.shape)}")
    if not delta.is_floating_point():
        raise CandidateError("shape_error", f"update's delta has dtype {delta.dtype}, expected a floating dtype")
    return delta, check_state(state, param, "update", keys)


def run_init(program: Program, param: torch.Tensor) -> dict:
    """``program.init(param)`` with the contract checked."""
    return check_state(program.init(param), param, "init")


def run_update(program: Program, grad: torch.Tensor, param: torch.Tensor, state: dict, step: int,
               hp: HParams) -> tuple[torch.Tensor, dict]:
    """One ``update`` call with the contract checked. ``state`` is passed as a fresh dict."""
    return check_update_result(program.update(grad, param, dict(state), step, hp), param, frozenset(state))
