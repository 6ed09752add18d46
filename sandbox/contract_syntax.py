"""Reading candidate text: parse it (one thread at a time, within the size limits) and read
literals and docstrings off the syntax tree. Nothing here runs candidate code."""

from __future__ import annotations

import ast
import threading

from sandbox.contract_terms import (
    MAX_AST_DEPTH,
    MAX_AST_NODES,
    MAX_LINES,
    MAX_SOURCE_CHARS,
    CandidateError,
    _forbid,
    _invalid,
)


def _literal_number(node: ast.AST) -> float | int | bool | None:
    """The value of a numeric literal (``3``, ``-1e-8``, ``True``) or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal_number(node.operand)
        if inner is not None and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


_PARSE_LOCK = threading.Lock()


def parse_ast(text: str, mode: str = "exec") -> ast.AST:
    """``ast.parse``, one thread at a time. Every part of the project parses through this.

    CPython before 3.13 keeps the AST constructor's recursion depth in interpreter-wide state, so
    two threads parsing at once (a garbage collection in the middle can switch threads) fail now
    and then with ``SystemError: AST constructor recursion depth mismatch`` (python/cpython#106905).
    A campaign parses in its evaluation and proposal threads at the same time.
    """
    with _PARSE_LOCK:
        return ast.parse(text, mode=mode)


def first_doc_line(text: str) -> str:
    """The first line of a module's docstring, read from its syntax tree (nothing runs); empty
    when the text does not parse or has no docstring."""
    try:
        doc = ast.get_docstring(parse_ast(text))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return ""
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def parse(source: str) -> ast.Module:
    """Parse candidate source, enforcing the size limits; raise ``CandidateError`` on failure."""
    if not isinstance(source, str):
        raise _invalid(None, f"a candidate must be Python source text, got {type(source).__name__}")
    if not source.strip():
        raise _invalid(None, "the program is empty")
    if len(source) > MAX_SOURCE_CHARS:
        raise _forbid(None, f"a program of {len(source)} characters (limit {MAX_SOURCE_CHARS})")
    if source.count("\n") + 1 > MAX_LINES:
        raise _forbid(None, f"a program of {source.count(chr(10)) + 1} lines (limit {MAX_LINES})")
    try:
        tree = parse_ast(source)
    except SyntaxError as exc:
        raise CandidateError("invalid_code", f"syntax error: {exc.msg}", exc.lineno) from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise _invalid(None, f"cannot parse the program: {exc}") from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_AST_NODES:
        raise _forbid(None, f"a program of {nodes} syntax nodes (limit {MAX_AST_NODES})")
    depth = _max_depth(tree)
    if depth > MAX_AST_DEPTH:
        raise _forbid(None, f"expressions nested {depth} levels deep (limit {MAX_AST_DEPTH})")
    return tree


def _max_depth(tree: ast.AST) -> int:
    """Deepest nesting of the syntax tree, computed without recursion."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest
