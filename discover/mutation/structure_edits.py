"""Edits that add or remove code: insert or delete a statement, add or drop a moving-average
state, add a hyperparameter."""

from __future__ import annotations

import ast
import copy
import random

from discover.mutation.analysis import TENSOR, UNKNOWN, _Analysis
from discover.mutation.ast_tools import (
    _code,
    _expr,
    _expr_children,
    _first_index,
    _loads,
    _return_index,
    _returns,
    _Site,
    _sites,
    _stmt,
    _top_index,
    _where,
)
from discover.mutation.expression_edits import _COMBINE_FORMS, _NEW_BETAS, _TENSOR_WRAPS, _wrap_text
from discover.mutation.values import _fmt, _is_code_number, perturb_value
from discover.mutation.work import _Work


def _state_value_ids(work: _Work) -> set[int]:
    """ids of the dict literals ``update`` returns as new state."""
    return {id(r.value.elts[1]) for r in _returns(work.update)
            if isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2}


def _blocks(body: list[ast.stmt]) -> list[list[ast.stmt]]:
    """A function's statement lists: its body, then those of its ``if``s and loops."""
    out = [body]
    for stmt in body:
        if isinstance(stmt, (ast.If, ast.For)):
            out += [block for inner in (stmt.body, stmt.orelse) if inner for block in _blocks(inner)]
    return out


def _insertion_points(work: _Work, analysis: _Analysis) -> list[tuple[list[ast.stmt], int, str]]:
    """(block, index, name): a tensor ``name`` assigned before statement ``index`` of a block of
    ``update`` and read at or after it (inserting ``name = f(name)`` there changes the result)."""
    points = []
    for block in _blocks(work.update.body):
        for p in range(_first_index(block), len(block)):
            later = set(_loads(block[p:]))
            points += [(block, p, name) for name in analysis.names_before(block[p], TENSOR) if name in later]
    return points


def _describe_insert(block: list[ast.stmt], p: int, stmt: ast.stmt) -> str:
    nxt = block[p + 1]
    line = getattr(nxt, "lineno", None)
    where = f"before line {line}" if line else f"before {_code(nxt)}"
    return f"update: inserted {_code(stmt)} {where}"


def _insert_statement(work: _Work, rng: random.Random) -> str | None:
    """Insert ``x = f(x)`` or ``x = x (op) w`` before a statement that reads tensor ``x``."""
    analysis = work.analyse_update()
    points = _insertion_points(work, analysis)
    if not points:
        return None
    block, p, name = rng.choice(points)
    state = work.arg(work.update, 2)
    others = [n for n in analysis.names_before(block[p], TENSOR) if n != name]
    others += [f'{state}["{k}"]' for k in work.common_state_keys() if analysis.state_kinds.get(k) == TENSOR]
    if others and rng.random() < 0.5:
        text = _wrap_text(rng.choice(_COMBINE_FORMS), name, rng, rng.choice(others))
    else:
        text = _wrap_text(rng.choice(_TENSOR_WRAPS), name, rng)
    stmt = _stmt(f"{name} = {text}")
    block.insert(p, stmt)
    return _describe_insert(block, p, stmt)


def _add_state(work: _Work, rng: random.Random) -> str | None:
    """Add a moving average as new state: init makes it, update advances and returns it, and a
    later read of a tensor now reads (or mixes in) the average."""
    dicts = work.state_dicts()
    analysis = work.analyse_update()
    if dicts is None:
        return None
    body = work.update.body
    top = _top_index(body)
    state_values = _state_value_ids(work)
    uses = [s for s in work.sites("update") if isinstance(s.node, ast.Name) and id(s.holder) not in state_values
            and analysis.kind_at(s.node, s.stmt) == TENSOR]
    options = []
    # Before the first statement holding a `return`, so every path updates the new state.
    for p in range(_first_index(body), min(_return_index(body), len(body) - 1) + 1):
        sources = analysis.names_before(body[p], TENSOR)
        later = [s for s in uses if top[id(s.stmt)] >= p]
        if sources and later:
            options.append((p, sources, later))
    if not options:
        return None
    p, sources, later = rng.choice(options)
    key = work.fresh_name("ema")
    hp = work.hparams()
    betas = [k for k, v in hp.items() if 0.5 <= v < 1]
    beta = rng.choice(betas) if betas and rng.random() < 0.6 else work.add_hparam("beta", rng.choice(_NEW_BETAS))
    source = rng.choice(sources)
    source = rng.choices((source, f"square({source})", f"abs({source})"), (0.6, 0.3, 0.1))[0]
    state, hp_name, param = work.arg(work.update, 2), work.arg(work.update, 4), work.arg(work.init, 0)
    stmt = _stmt(f'{key} = interp({source}, {state}["{key}"], {hp_name}.{beta})')
    site = rng.choice(later)
    old = _code(site.node)
    site.replace(_expr(rng.choice((key, f"{site.node.id} + {key}", f"interp({site.node.id}, {key}, 0.5)"))))
    body.insert(p, stmt)
    for d in dicts[0]:
        d.keys.append(ast.Constant(value=key))
        d.values.append(_expr(f"zeros_like({param})"))
    for d in dicts[1]:
        d.keys.append(ast.Constant(value=key))
        d.values.append(ast.Name(id=key, ctx=ast.Load()))
    return (f"state: added `{key}` ({_code(stmt)}), read at {_where(site.stmt, site.fn)}: "
            f"replaced {old} with {_code(site.node)}")


def _delete_statement(work: _Work, rng: random.Random) -> str | None:
    """Delete an assignment of ``update``; if it first assigned a name that is read later, those
    reads take one of its operands instead (``d = a * b`` gone: ``d`` -> ``a``)."""
    analysis = work.analyse_update()
    options = []
    for block in _blocks(work.update.body):
        for i in range(_first_index(block), len(block) if len(block) > 1 else 0):
            stmt = block[i]
            if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                options.append((block, i, None))
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                _, defined = analysis.before[id(stmt)]
                if name in defined or name not in _loads(block[i + 1:]):
                    options.append((block, i, None))
                    continue
                kind = analysis.kind_at(stmt.value, stmt)
                subs = [n for n in ast.walk(stmt.value) if n is not stmt.value and isinstance(n, ast.expr)
                        and not isinstance(n, ast.Constant) and kind != UNKNOWN and analysis.kind_at(n, stmt) == kind]
                options += [(block, i, sub) for sub in subs]
    if not options:
        return None
    block, i, sub = rng.choice(options)
    stmt = block.pop(i)
    text = f"update: deleted {_where(stmt, work.update)} {_code(stmt)}"
    if sub is None:
        return text
    name = stmt.targets[0].id
    for later in block[i:]:
        for node in ast.walk(later):
            for child_field, child_index, child in list(_expr_children(node)):
                if isinstance(child, ast.Name) and child.id == name and isinstance(child.ctx, ast.Load):
                    _Site(node, child_field, child_index, child, later, work.update).replace(copy.deepcopy(sub))
        if any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(later)):
            break
    return f"{text}; reads of `{name}` now read {_code(sub)}"


def _hparam_stem(name: str, value: float) -> str:
    stem = name.rstrip("0123456789_")
    if stem:
        return stem
    return "eps" if abs(value) < 1e-3 else "beta" if 0.5 <= value < 1 else "coef"


def _add_hparam(work: _Work, rng: random.Random) -> str | None:
    """Add a hyperparameter and use it: a number of ``update`` becomes ``hp.<new>``, or one read
    of an existing hyperparameter reads a new one (a second beta), at a nearby value."""
    hp = work.hparams()
    hp_name = work.arg(work.update, 4)
    # Whole numbers stay literals: they may count steps or index a dimension (`size(x, 1)`).
    sites = [s for s in work.sites("update") if _is_code_number(s) and isinstance(s.node.value, float)
             or isinstance(s.node, ast.Attribute) and isinstance(s.node.value, ast.Name)
             and s.node.value.id == hp_name and s.node.attr in hp and s.node.attr != "lr"]
    if not sites:
        return None
    site = rng.choice(sites)
    old = _code(site.node)
    if isinstance(site.node, ast.Attribute):
        base = hp[site.node.attr]
        stem = _hparam_stem(site.node.attr, base)
    else:
        base = float(site.node.value)
        stem = _hparam_stem("", base)
    value = perturb_value(base, rng)
    key = work.add_hparam(stem, value)
    site.replace(_expr(f"{hp_name}.{key}"))
    return f"HPARAMS: added {key} = {_fmt(value)}, read at {_where(site.stmt, site.fn)} in place of {old}"


def _drop_state(work: _Work, rng: random.Random) -> str | None:
    """Remove a state variable: init no longer makes it, update no longer returns it, and its
    reads see zeros (a momentum that is dropped leaves the plain gradient)."""
    dicts = work.state_dicts()
    if dicts is None:
        return None
    state, param = work.arg(work.update, 2), work.arg(work.update, 1)
    reads = [n for n in ast.walk(work.update) if isinstance(n, ast.Subscript)
             and isinstance(n.value, ast.Name) and n.value.id == state]
    if sum(isinstance(n, ast.Name) and n.id == state for n in ast.walk(work.update)) != len(reads):
        return None  # `state` is used other than as state["key"]
    keys = work.state_keys()
    if not keys:
        return None
    key = rng.choice(keys)
    read_ids = {id(n) for n in reads}
    for d in dicts[0] + dicts[1]:
        kept = [(k, v) for k, v in zip(d.keys, d.values) if k.value != key]
        d.keys, d.values = [k for k, _ in kept], [v for _, v in kept]
    for site in _sites(work.update):
        if id(site.node) in read_ids and ast.literal_eval(site.node.slice) == key:
            site.replace(_expr(f"zeros_like({param})"))
    return f'state: dropped `{key}` (reads of {state}["{key}"] now see zeros)'
