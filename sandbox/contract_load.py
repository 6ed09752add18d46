"""Loading a validated candidate: the tree it executes (no in-place ops), the restricted
globals it runs in, and the resulting :class:`Program`."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from sandbox import vocabulary
from sandbox.contract_normalise import program_hash
from sandbox.contract_terms import (
    MAX_LOOP_ITERATIONS,
    CandidateError,
    HParams,
    _invalid,
)
from sandbox.contract_validate import _check


@dataclass(frozen=True)
class Program:
    """A validated, loaded candidate: pure ``init``/``update`` plus its default HPARAMS."""

    source: str
    hparams: dict[str, float]
    init: Callable[[torch.Tensor], dict]
    update: Callable[..., tuple]
    doc: str = ""
    name: str | None = None
    ops_used: frozenset[str] = field(default_factory=frozenset)

    @property
    def hash(self) -> str:
        return program_hash(self.source)

    def hp(self, **overrides: Any) -> HParams:
        return HParams({**self.hparams, **overrides})


class _NoInPlace(ast.NodeTransformer):
    """``x += y`` becomes ``x = x + y``: never an in-place op on a tensor the caller owns."""

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.Assign:
        load = ast.Name(id=node.target.id, ctx=ast.Load())
        return ast.copy_location(ast.Assign(targets=[node.target], value=ast.BinOp(load, node.op, node.value)), node)


def _executable(tree: ast.Module) -> ast.Module:
    return ast.fix_missing_locations(_NoInPlace().visit(tree))


def executable_module(source: str) -> ast.Module:
    """The validated program exactly as :func:`load_program` executes it (``x += y`` already
    rewritten as ``x = x + y``); the exporter turns this tree back into source."""
    return _executable(_check(source).tree)


def _safe_range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_LOOP_ITERATIONS:
        raise CandidateError("forbidden_construct", f"a loop of {len(r)} iterations")
    return r


def load_program(source: str, name: str | None = None) -> Program:
    """Validate and load a candidate into a :class:`Program`; raise ``CandidateError``.

    The module runs with no builtins except a bounded ``range``; its globals are the vocabulary,
    its number constants and its own functions. Module level holds only literals and ``def``s,
    so loading never runs candidate logic.
    """
    checked = _check(source)
    tree = _executable(checked.tree)
    scope: dict[str, Any] = {"__builtins__": {"range": _safe_range}, **vocabulary.OPS}
    try:
        exec(compile(tree, f"<candidate {name or ''}>".replace(" >", ">"), "exec"), scope)
    except Exception as exc:  # a literal the checker allowed but Python rejects
        raise _invalid(None, f"cannot load the program: {exc}") from None
    return Program(
        source=source,
        hparams=checked.hparams,
        init=scope["init"],
        update=scope["update"],
        doc=checked.doc,
        name=name,
        ops_used=checked.ops_used,
    )
