"""Small AST helpers the edits share: number literals, new statements, the editable
expressions of a function (sites), and short code quotes for edit descriptions."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from sandbox.contract import parse_ast

SNIPPET_CHARS = 60
"""Code quoted in an edit description is cut to this many characters."""


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _number(node: ast.AST) -> float | int | None:
    """The value of a number literal (``3``, ``-1e-8``), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _number_node(value: float | int) -> ast.expr:
    if value < 0:
        return ast.UnaryOp(op=ast.USub(), operand=ast.Constant(value=-value))
    return ast.Constant(value=value)


def _expr(text: str) -> ast.expr:
    return parse_ast(text, mode="eval").body


def _stmt(text: str) -> ast.stmt:
    """A new statement; line 0 marks it as not the parent's."""
    return _strip_locations(parse_ast(text).body[0])


def _strip_locations(node: ast.AST) -> ast.AST:
    """Set line numbers to 0 (new code), so descriptions never cite another program's lines."""
    for sub in ast.walk(node):
        if hasattr(sub, "lineno"):
            sub.lineno = sub.end_lineno = 0
    return node


def _returns(fn: ast.FunctionDef) -> list[ast.Return]:
    return [s for s in _statements(fn.body) if isinstance(s, ast.Return) and s.value is not None]


# --- sites: places in the code an edit may change ------------------------------------------

_SKIP_FIELDS = frozenset({"targets", "target", "iter", "keys", "slice", "func", "ctx"})


@dataclass
class _Site:
    """One expression in a function: where it hangs, and the statement it belongs to."""

    holder: ast.AST
    field: str
    index: int | None
    node: ast.expr
    stmt: ast.stmt
    fn: ast.FunctionDef

    def replace(self, new: ast.expr) -> None:
        if self.index is None:
            setattr(self.holder, self.field, new)
        else:
            getattr(self.holder, self.field)[self.index] = new
        self.node = new


def _statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Every statement of a block, nested ones included, in program order."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, (ast.If, ast.For)):
            yield from _statements(stmt.body)
            yield from _statements(stmt.orelse)


def _expr_children(node: ast.AST) -> Iterator[tuple[str, int | None, ast.expr]]:
    for name, value in ast.iter_fields(node):
        if name in _SKIP_FIELDS:
            continue
        if isinstance(value, ast.expr):
            yield name, None, value
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, ast.expr):
                    yield name, i, item


def _sites(fn: ast.FunctionDef, tests: bool = True) -> list[_Site]:
    """Every editable expression of ``fn``: not assignment targets, loop headers, dict keys,
    called names, ``hp``/``state`` themselves (``hp.x`` and ``state["k"]`` are single sites),
    nor, unless ``tests``, the conditions of ``if`` statements."""
    out: list[_Site] = []

    def collect(holder: ast.AST, name: str, index: int | None, node: ast.expr, stmt: ast.stmt) -> None:
        out.append(_Site(holder, name, index, node, stmt, fn))
        if not isinstance(node, (ast.Attribute, ast.Subscript)):
            for child_field, child_index, child in _expr_children(node):
                collect(node, child_field, child_index, child, stmt)

    for stmt in _statements(fn.body):
        if not _is_docstring(stmt):
            for name, index, child in _expr_children(stmt):
                if tests or not (isinstance(stmt, ast.If) and name == "test"):
                    collect(stmt, name, index, child, stmt)
    return out


def _loads(nodes: list[ast.AST]) -> list[str]:
    """Names read in ``nodes``, in order of first read."""
    names = [n.id for node in nodes for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return list(dict.fromkeys(names))


def _code(node: ast.AST) -> str:
    text = ast.unparse(node)
    return f"`{text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS - 3] + '...'}`"


def _where(stmt: ast.stmt, fn: ast.FunctionDef) -> str:
    line = getattr(stmt, "lineno", None)
    return f"line {line}" if line else f"`{fn.name}` (new line)"


def _return_index(body: list[ast.stmt]) -> int:
    """Index of the first top-level statement that contains a ``return``."""
    for i, stmt in enumerate(body):
        if any(isinstance(n, ast.Return) for n in ast.walk(stmt)):
            return i
    return len(body)


def _first_index(body: list[ast.stmt]) -> int:
    return 1 if body and _is_docstring(body[0]) else 0


def _top_index(body: list[ast.stmt]) -> dict[int, int]:
    """id(statement) -> index of the top-level statement holding it."""
    return {id(s): i for i, top in enumerate(body) for s in _statements([top])}
