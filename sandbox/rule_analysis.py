"""What can be read off a rule's syntax tree about how its tensors are combined.

:func:`position_independent`: whether the rule gives the same bits on any slice or concatenation
of parameters as on each whole parameter. The exporter runs such a rule over cache-sized chunks
and packs of small tensors (:mod:`archive.export_analysis`); the harness runs it once on the
stacked parameters of every (learning rate, seed) row instead of under ``vmap``
(:mod:`sandbox.harness`), where ``hp.lr`` is a tensor of one rate per row.
"""

from __future__ import annotations

import ast

SHAPE_OPS = frozenset({"ndim", "numel", "size", "matmul", "transpose", "newton_schulz"})
"""Ops whose result depends on a tensor's shape: torch.view_as_real (n, m) -> (n, m, 2) changes it."""
MATRIX_OPS = frozenset({"matmul", "newton_schulz"})
"""Ops that multiply matrices: a rule using them steps same-shaped parameters in one batched call."""
REDUCTION_OPS = frozenset({"mean", "sum", "rms", "norm", "dot", "amax"})
"""Ops that mix every entry of a tensor: splitting a tensor in two changes what they see."""


def complex_refusal(ops_used: frozenset[str]) -> str | None:
    """Why the rule cannot optimize a complex parameter as its ``torch.view_as_real`` view, or
    None. torch.optim's convention (AdamW, Adam, SGD) is that a complex parameter is optimized as
    the real tensor ``view_as_real`` gives; that is the same rule only when the rule does not
    depend on the tensor's shape."""
    used = sorted(ops_used & SHAPE_OPS)
    if not used:
        return None
    return (f"its rule uses {', '.join(used)}, which depend on the tensor's shape, and "
            "torch.view_as_real would change that shape")


def splits_exactly(ops_used: frozenset[str]) -> bool:
    """Whether the rule treats every entry on its own, so a complex parameter optimized whole
    equals its real and imaginary parts optimized as two separate tensors."""
    return not ops_used & (SHAPE_OPS | REDUCTION_OPS)


# Ops whose every output element is one correctly rounded operation (or a selection) on the
# inputs' elements at the same position. torch's vectorised and scalar code paths agree on these,
# so running them over a concatenation gives the same bits as running them tensor by tensor.
# Transcendentals (exp, log, tanh, sigmoid, rsqrt, power) are left out: their vectorised and
# scalar implementations may round differently, and concatenating moves elements between paths.
POSITION_INDEPENDENT_OPS = frozenset({
    "abs", "sign", "sqrt", "square", "relu", "clamp", "maximum", "minimum", "where", "interp",
    "zeros_like", "ones_like", "full_like",
})
# fine on numbers; on tensors they are shape-dependent (@) or, like power, may round differently
# in vectorised and scalar code
_UNSAFE_TENSOR_BINOPS = (ast.Pow, ast.Mod, ast.FloorDiv, ast.MatMult)


def position_independent(tree: ast.Module, tensor_attrs: frozenset[str] = frozenset()) -> bool:
    """Whether the rule gives the same bits on a concatenation of parameters as on each one.

    A taint analysis marks what may be a tensor: the arguments grad, param and state of update
    (param of init), a helper's arguments wherever a call passes it a tensor, and anything
    computed from those. The rule qualifies when tensors only meet :data:`POSITION_INDEPENDENT_OPS`
    and + - * / and comparisons, and never decide Python control flow (``if``, ``and``/``or``/
    ``not``) or get indexed; numbers (``step``, ``hp.*``, constants, bias corrections) may do
    anything. ``tensor_attrs``: hyperparameters that are tensors too (the harness hands ``hp.lr``
    over as one learning rate per stacked row), so what reads them is a tensor.
    """
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    tainted = {name: set() for name in functions}
    tainted["update"] |= {a.arg for a in functions["update"].args.args[:3]}
    tainted["init"] |= {a.arg for a in functions["init"].args.args}
    # ``X.lr`` is only legal on a function's parameter (the checker's rule), so any attribute
    # of that name, whatever the parameter is called, is the hyperparameter.
    for names in tainted.values():
        names |= {"." + attr for attr in tensor_attrs}
    changed = True
    while changed:  # to a fixed point: loops, branches and helper calls may come in any order
        changed = False
        for name, fn in functions.items():
            for node in ast.walk(fn):
                found: list[tuple[str, set[str]]] = []
                if isinstance(node, ast.Assign) and _uses(node.value, tainted[name]):
                    found += [(n.id, tainted[name]) for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
                    params = [a.arg for a in functions[node.func.id].args.args]
                    passed = list(zip(params, node.args)) + [(k.arg, k.value) for k in node.keywords]
                    found += [(p, tainted[node.func.id]) for p, arg in passed if _uses(arg, tainted[name])]
                for var, into in found:
                    if var not in into:
                        into.add(var)
                        changed = True
    return all(_tensors_stay_in_place(fn, tainted[name], set(functions)) for name, fn in functions.items())


def _uses(expr: ast.AST, names: set[str]) -> bool:
    return any((isinstance(node, ast.Name) and node.id in names)
               or (isinstance(node, ast.Attribute) and "." + node.attr in names) for node in ast.walk(expr))


def _tensors_stay_in_place(fn: ast.FunctionDef, tainted: set[str], helpers: set[str]) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in helpers:
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if node.func.id not in POSITION_INDEPENDENT_OPS and any(_uses(a, tainted) for a in arguments):
                return False
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _UNSAFE_TENSOR_BINOPS):
            if _uses(node.left, tainted) or _uses(node.right, tainted):
                return False
        elif isinstance(node, (ast.If, ast.IfExp)) and _uses(node.test, tainted):
            return False
        elif isinstance(node, ast.BoolOp) and any(_uses(v, tainted) for v in node.values):
            return False
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and _uses(node.operand, tainted):
            return False
        elif isinstance(node, ast.Subscript) and _uses(node.value, tainted):
            key = node.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return False
    return True
