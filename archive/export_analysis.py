"""What the exporter reads off a rule's syntax tree before writing its optimizer.

* :func:`position_independent`: whether the rule gives the same bits on any slice or
  concatenation of parameters as on each whole parameter (then the optimizer may run it over
  cache-sized chunks and packs of small tensors instead of tensor by tensor);
* :func:`complex_refusal`: why a rule cannot take complex parameters as ``torch.view_as_real``
  pairs (it reads shapes or multiplies matrices), or None when it can;
* :func:`splits_exactly`: whether optimizing a complex number's real and imaginary parts as two
  separate real tensors is the same rule (elementwise rules only);
* :func:`ops_needed`: the vocabulary ops (and private helpers) to copy into the module.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Callable

from sandbox import vocabulary
from sandbox.contract import parse_ast
from sandbox.rule_analysis import (  # noqa: F401  (re-exported: the exporter's names)
    MATRIX_OPS,
    POSITION_INDEPENDENT_OPS,
    REDUCTION_OPS,
    SHAPE_OPS,
    complex_refusal,
    position_independent,
    splits_exactly,
)


def ops_needed(direct: frozenset[str]) -> dict[str, Callable]:
    """The ops (and private helpers) the program needs, closed over ops calling ops."""
    available = {**vocabulary.HELPERS, **vocabulary.OPS}
    needed: set[str] = set()
    todo = list(direct)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo.extend(n for n in names_in(inspect.getsource(available[name])) if n in available and n != name)
    # helpers first, then ops in vocabulary order: stable text, definitions before use
    return {name: fn for name, fn in available.items() if name in needed}


def names_in(text: str) -> set[str]:
    tree = parse_ast(textwrap.dedent(text))
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


_position_independent = position_independent  # the name tests and older callers use
