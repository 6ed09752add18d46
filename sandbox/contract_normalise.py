"""Normalisation for exact de-duplication: the canonical text of a program and its hash."""

from __future__ import annotations

import ast
import hashlib

from sandbox.contract_syntax import _is_docstring, parse


class _Canonical(ast.NodeTransformer):
    """Renames locals and helper functions by order of first use; drops docstrings."""

    def __init__(self, helpers: set[str]):
        self.helpers = {name: f"f{i}" for i, name in enumerate(sorted(helpers))}
        self.names: dict[str, str] = {}

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        self.names = {}
        node.name = self.helpers.get(node.name, node.name)
        for arg in node.args.args:
            arg.arg = self._rename(arg.arg)
        node.body = [s for s in node.body if not _is_docstring(s)]
        self.generic_visit(node)
        return node

    def _rename(self, name: str) -> str:
        return self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id in self.helpers:
            node.id = self.helpers[node.id]
        elif node.id in self.names or isinstance(node.ctx, ast.Store):
            node.id = self._rename(node.id)
        return node


def normalise(source: str) -> str:
    """Canonical text of a program: formatting, comments, docstrings and local names removed."""
    tree = parse(source)
    tree.body = [s for s in tree.body if not _is_docstring(s)]
    helpers = {s.name for s in tree.body if isinstance(s, ast.FunctionDef) and s.name not in ("init", "update")}
    tree = _Canonical(helpers).visit(tree)
    # Order of top-level definitions does not change behaviour.
    tree.body.sort(key=lambda s: ast.dump(s))
    return ast.unparse(tree)


def program_hash(source: str) -> str:
    """SHA-256 (hex, 16 chars) of :func:`normalise` output: the key for exact de-duplication."""
    return hashlib.sha256(normalise(source).encode()).hexdigest()[:16]
