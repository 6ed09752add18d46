"""The registry of edits (:data:`EDITS`) and :func:`mutate`, which draws edits from it by weight."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import NamedTuple

from discover.mutation.children import Mutation, MutationError, _finish, _parent
from discover.mutation.expression_edits import (
    _perturb_constant,
    _replace_binary,
    _replace_operand,
    _replace_unary_op,
    _simplify_expression,
    _swap_arguments,
    _wrap_expression,
)
from discover.mutation.structure_edits import _add_hparam, _add_state, _delete_statement, _drop_state, _insert_statement
from discover.mutation.work import _Work

DEFAULT_ATTEMPTS = 50
"""Candidate children :func:`mutate` builds before it gives up."""


class Edit(NamedTuple):
    """One kind of random edit: how often it is drawn, and the function that applies it.

    ``apply(work, rng)`` changes the program in place and returns a description, or returns
    None, changing nothing, when the program has no place for this edit.
    """

    weight: float
    apply: Callable[[_Work, random.Random], str | None]


EDITS: dict[str, Edit] = {
    "perturb_constant": Edit(3.0, _perturb_constant),
    "replace_unary_op": Edit(2.0, _replace_unary_op),
    "replace_binary": Edit(2.0, _replace_binary),
    "replace_operand": Edit(2.0, _replace_operand),
    "wrap_expression": Edit(2.0, _wrap_expression),
    "insert_statement": Edit(1.5, _insert_statement),
    "delete_statement": Edit(1.5, _delete_statement),
    "simplify_expression": Edit(1.5, _simplify_expression),
    "add_state": Edit(1.0, _add_state),
    "add_hparam": Edit(1.0, _add_hparam),
    "swap_arguments": Edit(0.7, _swap_arguments),
    "drop_state": Edit(0.5, _drop_state),
}
"""Edit name -> :class:`Edit`. The names are what :attr:`Mutation.kinds` lists."""


def _apply_random_edit(work: _Work, rng: random.Random, weights: Mapping[str, float]) -> tuple[str, str] | None:
    """Apply one edit drawn by weight; an edit with no place in the program is set aside."""
    names = [name for name in EDITS if weights.get(name, EDITS[name].weight) > 0]
    while names:
        name = rng.choices(names, [weights.get(n, EDITS[n].weight) for n in names])[0]
        description = EDITS[name].apply(work, rng)
        if description is not None:
            return name, description
        names.remove(name)
    return None


def mutate(source: str, rng: random.Random, n_edits: int = 1, *, max_attempts: int = DEFAULT_ATTEMPTS,
           weights: Mapping[str, float] | None = None) -> Mutation:
    """A child of ``source`` made by ``n_edits`` random edits (see :data:`EDITS`).

    The child passes :func:`sandbox.contract.validate`, differs from its parent by
    ``program_hash``, and carries a one-line docstring listing the edits. ``weights`` overrides
    the registry's edit weights by name (0 disables an edit). Raises :class:`MutationError`
    when the parent is invalid or ``max_attempts`` random tries all failed.
    """
    if n_edits < 1:
        raise ValueError(f"n_edits must be at least 1, got {n_edits}")
    parent = _parent(source)
    weights = dict(weights or {})
    for attempt in range(1, max_attempts + 1):
        work = _Work(source)
        applied = []
        for _ in range(n_edits):
            step = _apply_random_edit(work, rng, weights)
            if step is None:
                break
            applied.append(step)
        if not applied:
            raise MutationError("no edit applies to this program")
        edits = [description for _, description in applied]
        child = _finish(work, [parent], "Mutant: " + "; ".join(edits) + ".")
        if child is not None:
            return Mutation(child[0], edits, [name for name, _ in applied], child[1], attempt)
    raise MutationError(f"no valid mutation found in {max_attempts} attempts")
