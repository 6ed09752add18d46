"""Crossover: a child that combines two parents (the donor's hyperparameter values, one of its
statements, or both update rules side by side), and the registry :data:`CROSSOVERS`."""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Callable, Mapping
from typing import NamedTuple

from discover.mutation.ast_tools import (
    _code,
    _is_docstring,
    _loads,
    _number_node,
    _return_index,
    _returns,
    _stmt,
    _strip_locations,
    _where,
)
from discover.mutation.children import Mutation, MutationError, _finish, _parent
from discover.mutation.values import _fmt
from discover.mutation.work import _Work
from sandbox import vocabulary


def _cross_hparams(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """The recipient's code with the donor's values for some shared hyperparameters."""
    mine, theirs = work.hparams(), donor.hparams()
    shared = [k for k in mine if k in theirs and mine[k] != theirs[k]]
    if not shared:
        return None
    chosen = [k for k in shared if rng.random() < 0.5] or [rng.choice(shared)]
    for key in chosen:
        work.set_hparam(key, theirs[key])
    changes = ", ".join(f"{k} {_fmt(mine[k])} -> {_fmt(theirs[k])}" for k in chosen)
    return f"crossover: {labels[0]} with {labels[1]}'s HPARAMS values ({changes})"


def _renamed(node: ast.AST, mapping: Mapping[str, str]) -> ast.AST:
    node = _strip_locations(copy.deepcopy(node))
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in mapping:
            sub.id = mapping[sub.id]
    return node


def _hparams_available(work: _Work, donor: _Work, node: ast.AST, hp_name: str) -> bool:
    """Whether every hyperparameter ``node`` reads is in the recipient's or the donor's HPARAMS."""
    known = {**donor.hparams(), **work.hparams()}
    return all(sub.attr in known for sub in ast.walk(node) if isinstance(sub, ast.Attribute)
               and isinstance(sub.value, ast.Name) and sub.value.id == hp_name)


def _import_hparams(work: _Work, donor: _Work, node: ast.AST, hp_name: str) -> None:
    """Copy into ``work`` the donor's hyperparameters that ``node`` reads and ``work`` lacks."""
    mine, theirs = work.hparams(), donor.hparams()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == hp_name:
            if sub.attr not in mine and sub.attr in theirs:
                work.hparams_node.keys.append(ast.Constant(value=sub.attr))
                work.hparams_node.values.append(_number_node(theirs[sub.attr]))
                mine[sub.attr] = theirs[sub.attr]


def _cross_statement(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """One statement of the recipient's update (or its returned delta) taken from the donor,
    where both assign the same name and the donor's version reads only what is defined there."""
    mapping = {d.arg: r.arg for d, r in zip(donor.update.args.args, work.update.args.args)}
    analysis = work.analyse_update()
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    keys = work.state_keys()

    def assignments(w: _Work) -> list[tuple[str, ast.AST, str]]:
        body = w.update.body
        out = [(s.targets[0].id, s, "value") for s in body[:_return_index(body)]
               if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)]
        last = body[-1] if body else None
        if isinstance(last, ast.Return) and isinstance(last.value, ast.Tuple) and len(last.value.elts) == 2:
            out.append(("<delta>", last.value, "delta"))
        return out

    theirs: dict[str, list[ast.expr]] = {}
    for name, holder, slot in assignments(donor):
        value = holder.value if slot == "value" else holder.elts[0]
        theirs.setdefault(name, []).append(_renamed(value, mapping))
    options = []
    for name, holder, slot in assignments(work):
        stmt = holder if slot == "value" else work.update.body[-1]
        mine = holder.value if slot == "value" else holder.elts[0]
        _, defined = analysis.before[id(stmt)]
        for value in theirs.get(name, []):
            if ast.dump(value) == ast.dump(mine):
                continue
            reads_ok = all(n in defined or n in work.constants or n in (state, hp_name) or n in vocabulary.OPS
                           for n in _loads([value]))
            state_ok = all(ast.literal_eval(s.slice) in keys for s in ast.walk(value) if isinstance(s, ast.Subscript)
                           and isinstance(s.value, ast.Name) and s.value.id == state)
            if reads_ok and state_ok and _hparams_available(work, donor, value, hp_name):
                options.append((stmt, holder, slot, value))
    if not options:
        return None
    stmt, holder, slot, value = rng.choice(options)
    _import_hparams(work, donor, value, hp_name)
    old = _code(stmt if slot == "value" else holder.elts[0])
    if slot == "value":
        holder.value = value
    else:
        holder.elts[0] = value
    new = _code(stmt if slot == "value" else value)
    return f"crossover: {labels[0]} with {_where(stmt, work.update)} {old} replaced by {labels[1]}'s {new}"


def _single_return(fn: ast.FunctionDef) -> ast.Return | None:
    """The function's only return, when it is its last top-level statement."""
    returns = _returns(fn)
    if len(returns) == 1 and fn.body and fn.body[-1] is returns[0]:
        return returns[0]
    return None


def _is_step_return(ret: ast.Return) -> bool:
    """``return delta, {...}``: a tuple of an update and a state dict literal."""
    return isinstance(ret.value, ast.Tuple) and len(ret.value.elts) == 2 and isinstance(ret.value.elts[1], ast.Dict)


def _stored_names(fn: ast.FunctionDef) -> list[str]:
    names = [n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    return list(dict.fromkeys(names))


def _unclashed(name: str, taken: set[str]) -> str:
    """``name``, or ``name_b``, ``name_b2``... whichever is not taken yet; marks it taken."""
    new, number = name, 1
    while new in taken:
        new = f"{name}_b" if number == 1 else f"{name}_b{number}"
        number += 1
    taken.add(new)
    return new


def _cross_average(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """Run both parents' update rules side by side (the donor's clashing names and state keys
    renamed) and step by a weighted average of their updates; init makes both states. Shared
    hyperparameters keep the recipient's values; the donor's others are copied in."""
    mine_ret, their_ret = _single_return(work.update), _single_return(donor.update)
    mine_init, their_init = _single_return(work.init), _single_return(donor.init)
    if not (mine_ret and their_ret and mine_init and their_init and len(donor.init.body) == 1
            and _is_step_return(mine_ret) and _is_step_return(their_ret)
            and isinstance(mine_init.value, ast.Dict) and isinstance(their_init.value, ast.Dict)):
        return None
    my_params = [a.arg for a in work.update.args.args]
    donor_params = [a.arg for a in donor.update.args.args]
    if (any(name not in ("init", "update") for name in donor.functions)
            or any(name in my_params for name in _stored_names(work.update))
            or any(name in donor_params for name in _stored_names(donor.update))
            or any(work.constants.get(name, value) != value for name, value in donor.constants.items())):
        return None
    taken = work.taken()
    mapping = dict(zip(donor_params, my_params))
    for name in _stored_names(donor.update):
        mapping[name] = _unclashed(name, taken)
    taken_keys = set(work.state_keys())
    key_map = {key: _unclashed(key, taken_keys) for key in donor.state_keys()}
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    body = [_renamed(s, mapping) for s in donor.update.body[:-1] if not _is_docstring(s)]
    delta = _renamed(their_ret.value.elts[0], mapping)
    new_state = _renamed(their_ret.value.elts[1], mapping)
    for node in [*body, delta, new_state]:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == state:
                key = ast.literal_eval(sub.slice)
                sub.slice = ast.Constant(value=key_map.get(key, key))
        if not _hparams_available(work, donor, node, hp_name):
            return None
        _import_hparams(work, donor, node, hp_name)
    at = next(i for i, s in enumerate(work.tree.body) if isinstance(s, ast.Assign)) + 1
    for name, value in donor.constants.items():
        if name not in work.constants:
            work.tree.body.insert(at, _stmt(f"{name} = {value!r}"))
            work.constants[name] = value
    init_param = {donor.arg(donor.init, 0): work.arg(work.init, 0)}
    for key, value in zip(their_init.value.keys, their_init.value.values):
        mine_init.value.keys.append(ast.Constant(value=key_map[key.value]))
        mine_init.value.values.append(_renamed(value, init_param))
    mine_state = mine_ret.value.elts[1]
    for key, value in zip(new_state.keys, new_state.values):
        mine_state.keys.append(ast.Constant(value=key_map[key.value]))
        mine_state.values.append(value)
    weight = rng.choice((0.5, 0.5, 0.25, 0.75))
    mine_ret.value.elts[0] = ast.Call(func=ast.Name(id="interp", ctx=ast.Load()),
                                      args=[mine_ret.value.elts[0], delta, ast.Constant(value=weight)], keywords=[])
    work.update.body[-1:-1] = body
    return (f"crossover: {labels[0]}'s and {labels[1]}'s update rules side by side, stepping by "
            f"{_fmt(1 - weight)} x {labels[0]}'s update + {_fmt(weight)} x {labels[1]}'s")


class Crossover(NamedTuple):
    """One way to combine two parents: ``apply(recipient, donor, rng, labels)`` edits the
    recipient in place and describes it, or returns None when the pair gives it nothing to do."""

    weight: float
    apply: Callable[[_Work, _Work, random.Random, tuple[str, str]], str | None]


CROSSOVERS: dict[str, Crossover] = {
    "hparams": Crossover(1.0, _cross_hparams),
    "statement": Crossover(2.0, _cross_statement),
    "average": Crossover(1.0, _cross_average),
}
"""Crossover name -> :class:`Crossover`; :attr:`Mutation.kinds` lists ``crossover_<name>``."""


def crossover(a: str, b: str, rng: random.Random, *, max_attempts: int = 20) -> Mutation:
    """A child that combines parents ``a`` and ``b`` (see :data:`CROSSOVERS`): the donor's
    hyperparameter values, a statement, or both update rules averaged. Either parent may be the
    recipient. The child is valid and differs from both parents; raises :class:`MutationError`
    if no combination of these two parents gives one.
    """
    parents = [_parent(a), _parent(b)]
    if parents[0].hash == parents[1].hash:
        raise MutationError("the two parents are the same program; crossover needs two different ones")
    options = [(name, flip) for name in CROSSOVERS for flip in (False, True)]
    attempt = 0
    while options and attempt < max_attempts:
        name, flip = rng.choices(options, [CROSSOVERS[n].weight for n, _ in options])[0]
        recipient, donor, labels = (b, a, ("B", "A")) if flip else (a, b, ("A", "B"))
        work = _Work(recipient)
        description = CROSSOVERS[name].apply(work, _Work(donor), rng, labels)
        if description is None:  # nothing to do for this pair this way round: never try it again
            options.remove((name, flip))
            continue
        attempt += 1
        child = _finish(work, parents, f"Crossover of A and B: {description.removeprefix('crossover: ')}.")
        if child is not None:
            return Mutation(child[0], [description], [f"crossover_{name}"], child[1], attempt)
    raise MutationError("no valid crossover of these two programs was found")
