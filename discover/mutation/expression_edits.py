"""Edits that change one expression in place: swap an op or operator, move a constant, wrap
an expression in new ops, simplify it to an operand, swap arguments, read another variable."""

from __future__ import annotations

import ast
import random

from discover.mutation.analysis import SCALAR, TENSOR, ZEROD
from discover.mutation.ast_tools import _code, _expr, _expr_children, _number, _Site, _where
from discover.mutation.values import _fmt, _is_code_number, _perturb_code_number, perturb_value
from discover.mutation.work import _Work
from sandbox import vocabulary

_UNARY_SWAPS: dict[str, tuple[str, ...]] = {
    "sign": ("tanh",),
    "tanh": ("sign", "sigmoid"),
    "sigmoid": ("tanh", "relu"),
    "relu": ("abs", "sigmoid"),
    "abs": ("sqrt", "square", "relu"),
    "sqrt": ("abs", "rsqrt", "square"),
    "rsqrt": ("sqrt",),
    "square": ("abs", "sqrt"),
    "exp": ("sigmoid", "square"),
    "log": ("sqrt", "tanh"),
    "zeros_like": ("ones_like",),
    "ones_like": ("zeros_like",),
    "mean": ("rms", "amax"),
    "rms": ("mean", "norm", "amax"),
    "norm": ("rms",),
    "amax": ("rms",),
    "sum": ("mean", "norm"),
}
"""Unary op -> ops of the same arity and kind it may become (sign <-> tanh, sqrt -> abs ...)."""

_BINOP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub, ast.Sub, ast.Mult),
    ast.Sub: (ast.Add, ast.Add, ast.Div),
    ast.Mult: (ast.Div, ast.Div, ast.Add),
    ast.Div: (ast.Mult, ast.Mult, ast.Sub),
}
"""Operator -> operators it may become; the same family (+/-, */÷) twice as likely."""

_BINARY_CALL_SWAPS = {"maximum": "minimum", "minimum": "maximum"}

_TENSOR_WRAPS = (
    "sign({x})", "tanh({x})", "clamp({x}, -{c}, {c})", "{x} / (rms({x}) + 1e-8)", "{x} * rms({x})",
    "sign({x}) * sqrt(abs({x}))", "{x} / (1 + abs({x}))", "newton_schulz({x}, 5)", "{x} - mean({x})",
    "abs({x})", "{x} * sigmoid({x})",
)
"""Ways to wrap a parameter-shaped expression ``x`` in new ops (results stay parameter-shaped)."""

_NUMBER_WRAPS = ("sqrt(abs({x}))", "square({x})", "tanh({x})", "sigmoid({x})", "maximum({x}, 1e-8)")
"""Ways to wrap a number (or 0-d tensor) ``x``."""

_COMBINE_FORMS = (
    "{x} + {c} * {w}", "{x} * {w}", "interp({x}, {w}, {b})", "{x} / (sqrt(abs({w})) + 1e-8)", "{x} - {c} * {w}",
)
"""New right-hand sides ``x = ...`` for an inserted statement that mixes in another tensor ``w``."""

_CLAMPS = (0.1, 0.5, 1.0, 2.0, 3.0)
_MIX_WEIGHTS = (0.01, 0.1, 0.5, 1.0)
_BETAS = (0.5, 0.9, 0.99)
_NEW_BETAS = (0.9, 0.95, 0.99, 0.999)


def _wrap_text(template: str, x: str, rng: random.Random, w: str = "") -> str:
    return template.format(x=f"({x})", w=f"({w})", c=rng.choice(_CLAMPS if "clamp" in template else _MIX_WEIGHTS),
                           b=rng.choice(_BETAS))


def _replace_unary_op(work: _Work, rng: random.Random) -> str | None:
    """Swap a unary op for a compatible one: ``sign(m)`` -> ``tanh(m)``, ``sqrt(v)`` -> ``abs(v)``."""
    sites = [s for s in work.sites() if isinstance(s.node, ast.Call) and isinstance(s.node.func, ast.Name)
             and s.node.func.id in _UNARY_SWAPS and len(s.node.args) == 1]
    if not sites:
        return None
    site = rng.choice(sites)
    old = _code(site.node)
    site.node.func = ast.Name(id=rng.choice(_UNARY_SWAPS[site.node.func.id]), ctx=ast.Load())
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(site.node)}"


def _replace_binary(work: _Work, rng: random.Random) -> str | None:
    """Swap ``+ - * /`` for another, ``maximum`` for ``minimum``, or an ``interp`` weight."""
    hp = work.hparams()
    sites = [s for s in work.sites()
             if (isinstance(s.node, ast.BinOp) and type(s.node.op) in _BINOP_SWAPS)
             or (isinstance(s.node, ast.Call) and isinstance(s.node.func, ast.Name)
                 and (s.node.func.id in _BINARY_CALL_SWAPS or s.node.func.id == "interp" and len(s.node.args) == 3))]
    if not sites:
        return None
    site = rng.choice(sites)
    node, old = site.node, _code(site.node)
    if isinstance(node, ast.BinOp):
        ops = _BINOP_SWAPS[type(node.op)]
        if _is_zero(node.right, work, site.fn):  # `hp.lr * hp.weight_decay` must not become a division by 0
            ops = tuple(op for op in ops if op is not ast.Div)
        node.op = rng.choice(ops)()
    elif node.func.id in _BINARY_CALL_SWAPS:
        node.func = ast.Name(id=_BINARY_CALL_SWAPS[node.func.id], ctx=ast.Load())
    else:
        options = [repr(beta) for beta in _NEW_BETAS]
        if site.fn is work.update:  # only update can read hyperparameters
            options += [f"{work.arg(site.fn, 4)}.{k}" for k, v in hp.items() if 0 < v < 1]
        current = ast.unparse(node.args[2])
        node.args[2] = _expr(rng.choice([text for text in options if text != current]))
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(node)}"


def _is_zero(node: ast.expr, work: _Work, fn: ast.FunctionDef) -> bool:
    """Whether ``node`` is a literal 0 or reads a hyperparameter whose value is 0."""
    if _number(node) == 0:
        return True
    return (fn is work.update and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == work.arg(fn, 4) and work.hparams().get(node.attr) == 0)


def _perturb_constant(work: _Work, rng: random.Random) -> str | None:
    """Move a hyperparameter (``HPARAMS: beta1 0.9 -> 0.95``) or a number in the code."""
    hp = work.hparams()
    code_sites = [s for s in work.sites() if _is_code_number(s)]
    if hp and (not code_sites or rng.random() < 0.6):
        keys = list(hp)
        key = rng.choices(keys, [0.3 if k == "lr" else 1.0 for k in keys])[0]
        new = perturb_value(hp[key], rng)
        work.set_hparam(key, new)
        return f"HPARAMS: {key} {_fmt(hp[key])} -> {_fmt(new)}"
    if not code_sites:
        return None
    site = rng.choice(code_sites)
    old = site.node.value
    site.node.value = _perturb_code_number(old, rng)
    return f"{_where(site.stmt, site.fn)}: constant {_fmt(old)} -> {_fmt(site.node.value)}"


def _wrap_expression(work: _Work, rng: random.Random) -> str | None:
    """Wrap an expression of ``update`` in new ops: ``m`` -> ``sign(m)``, ``clamp(g, -1, 1)``..."""
    analysis = work.analyse_update()
    by_kind: dict[str, list[_Site]] = {TENSOR: [], SCALAR: []}
    for site in work.sites("update"):
        if isinstance(site.node, (ast.Constant, ast.Compare, ast.BoolOp)):
            continue
        kind = analysis.kind_at(site.node, site.stmt)
        if kind in (ZEROD, SCALAR):
            by_kind[SCALAR].append(site)
        elif kind == TENSOR:
            by_kind[TENSOR].append(site)
    kind = TENSOR if by_kind[TENSOR] and (not by_kind[SCALAR] or rng.random() < 0.85) else SCALAR
    if not by_kind[kind]:
        return None
    site = rng.choice(by_kind[kind])
    old = _code(site.node)
    template = rng.choice(_TENSOR_WRAPS if kind == TENSOR else _NUMBER_WRAPS)
    site.replace(_expr(_wrap_text(template, ast.unparse(site.node), rng)))
    return f"{_where(site.stmt, site.fn)}: wrapped {old} as {_code(site.node)}"


_SIMPLIFIABLE = (ast.BinOp, ast.Call, ast.UnaryOp, ast.IfExp)


def _simplify_expression(work: _Work, rng: random.Random) -> str | None:
    """Replace an expression by one of its operands of the same kind: ``a * b`` -> ``a``."""
    analysis = work.analyse_update()
    options = []
    for site in work.sites("update"):
        node = site.node
        if not isinstance(node, _SIMPLIFIABLE) or isinstance(node, ast.Call) and (
                not isinstance(node.func, ast.Name) or node.func.id not in vocabulary.OPS):
            continue
        kind = analysis.kind_at(node, site.stmt)
        if kind in (TENSOR, ZEROD, SCALAR):
            operands = node.args if isinstance(node, ast.Call) else [
                c for f, _, c in _expr_children(node) if f != "test"]
            options += [(site, o) for o in operands
                        if not isinstance(o, ast.Constant) and analysis.kind_at(o, site.stmt) == kind]
    if not options:
        return None
    site, operand = rng.choice(options)
    old = _code(site.node)
    site.replace(operand)
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(operand)}"


def _swap_arguments(work: _Work, rng: random.Random) -> str | None:
    """Swap the operands of ``-`` or ``/``, the ends of an ``interp``, or the branches of ``where``."""
    analysis = work.analyse_update()
    options = []
    for site in work.sites("update"):
        node = site.node
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Sub, ast.Div)):
            options.append((site, "left", "right"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 3:
            pair = {"interp": (0, 1), "where": (1, 2)}.get(node.func.id)
            kinds = [analysis.kind_at(node.args[i], site.stmt) for i in pair] if pair else []
            if pair and kinds[0] == kinds[1]:
                options.append((site, *pair))
    if not options:
        return None
    site, a, b = rng.choice(options)
    node, old = site.node, _code(site.node)
    if isinstance(a, str):
        node.left, node.right = node.right, node.left
    else:
        node.args[a], node.args[b] = node.args[b], node.args[a]
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(node)}"


def _replace_operand(work: _Work, rng: random.Random) -> str | None:
    """Read another variable of the same kind: ``interp(grad, ...)`` -> ``interp(m, ...)``,
    ``hp.beta1`` -> ``hp.beta2`` (Lion's "change an argument" mutation)."""
    analysis = work.analyse_update()
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    hp_reads = [("attr", hp_name, k) for k in work.hparams()]
    state_reads = [("item", state, k) for k in work.common_state_keys() if k in analysis.state_kinds]
    options = []
    for site in work.sites("update"):
        node = site.node
        if not (isinstance(node, (ast.Subscript, ast.Attribute))
                or isinstance(node, ast.Name) and node.id not in (state, hp_name)):
            continue
        kind = analysis.kind_at(node, site.stmt)
        if kind in (TENSOR, ZEROD):
            pool = [("name", n) for n in analysis.names_before(site.stmt, kind)]
            pool += [read for read in state_reads if analysis.state_kinds[read[2]] == kind]
        elif kind == SCALAR:
            pool = [("name", n) for n in analysis.names_before(site.stmt, SCALAR)] + hp_reads
        else:
            continue
        current = _leaf(node)
        options += [(site, leaf) for leaf in pool if leaf != current]
    if not options:
        return None
    site, leaf = rng.choice(options)
    old = _code(site.node)
    site.replace(_leaf_node(leaf))
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(site.node)}"


def _leaf(node: ast.expr) -> tuple[str, ...]:
    """A variable read as a comparable value: ``m`` -> ("name", "m"), ``hp.b`` -> ("attr", "hp",
    "b"), ``state["k"]`` -> ("item", "state", "k")."""
    if isinstance(node, ast.Name):
        return ("name", node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return ("attr", node.value.id, node.attr)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant):
        return ("item", node.value.id, node.slice.value)
    return ("expr", ast.unparse(node))


def _leaf_node(leaf: tuple[str, ...]) -> ast.expr:
    """The expression :func:`_leaf` describes."""
    if leaf[0] == "name":
        return ast.Name(id=leaf[1], ctx=ast.Load())
    base = ast.Name(id=leaf[1], ctx=ast.Load())
    if leaf[0] == "attr":
        return ast.Attribute(value=base, attr=leaf[2], ctx=ast.Load())
    return ast.Subscript(value=base, slice=ast.Constant(value=leaf[2]), ctx=ast.Load())
