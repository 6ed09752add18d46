"""Validation of a whole candidate module before anything runs: its module-level statements,
HPARAMS, the ``init``/``update`` signatures, each function body (see contract_checker) and
recursion between its functions."""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass

from sandbox import vocabulary
from sandbox.contract_checker import _CONSTRUCT_NAMES, _Checker
from sandbox.contract_syntax import _is_docstring, _literal_number, parse
from sandbox.contract_terms import INIT_ARGS, UPDATE_ARGS, HParams, _forbid, _invalid


@dataclass(frozen=True)
class _Checked:
    tree: ast.Module
    hparams: dict[str, float]
    constants: dict[str, float]
    doc: str
    ops_used: frozenset[str]


def _check(source: str) -> _Checked:
    tree = parse(source)
    body = list(tree.body)
    doc = ""
    if body and _is_docstring(body[0]):
        doc = body.pop(0).value.value.strip()
    functions: dict[str, ast.FunctionDef] = {}
    constants: dict[str, float] = {}
    hparams: dict[str, float] | None = None
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef):
            _Checker._check_name_text(stmt.name, stmt)
            if stmt.name in vocabulary.OPS or stmt.name == "range":
                raise _forbid(stmt, f"redefining the vocabulary op `{stmt.name}`")
            if stmt.name in functions:
                raise _invalid(stmt, f"`{stmt.name}` is defined twice")
            functions[stmt.name] = stmt
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name = stmt.targets[0].id
            _Checker._check_name_text(name, stmt)
            if name == "HPARAMS":
                hparams = _check_hparams(stmt.value)
            else:
                value = _literal_number(stmt.value)
                if value is None:
                    raise _forbid(stmt, f"the module-level value of `{name}` (only number literals, and HPARAMS)")
                constants[name] = value
        elif type(stmt) in _CONSTRUCT_NAMES:
            raise _forbid(stmt, _CONSTRUCT_NAMES[type(stmt)])
        else:
            raise _forbid(stmt, f"a module-level statement `{ast.unparse(stmt)[:40]}` (only HPARAMS, constants and functions)")
    if hparams is None:
        raise _invalid(None, 'the program must define HPARAMS = {"lr": ..., ...}')
    for name, expected in (("init", INIT_ARGS), ("update", UPDATE_ARGS)):
        fn = functions.get(name)
        if fn is None:
            raise _invalid(None, f"the program must define `def {name}({', '.join(expected)}):`")
        got = [a.arg for a in fn.args.args]
        if len(got) != len(expected) or fn.args.vararg or fn.args.kwarg:
            raise _invalid(fn, f"wrong `{name}` signature: expected {name}({', '.join(expected)}), got {name}({', '.join(got)})")
    checker = _Checker(functions, set(constants), set(hparams))
    checker.constant_values = constants
    for fn in functions.values():
        checker.check_function(fn)
    _reject_recursion(checker.calls, functions)
    return _Checked(tree, hparams, constants, doc, frozenset(checker.ops_used))


def _check_hparams(node: ast.AST) -> dict[str, float]:
    if not isinstance(node, ast.Dict):
        raise _invalid(node, "HPARAMS must be a dict literal of numbers")
    values: dict[str, float] = {}
    for key, value in zip(node.keys, node.values):
        if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
            raise _invalid(node, "HPARAMS keys must be string literals")
        name = key.value
        # A keyword cannot be read as `hp.<key>`; an HParams method name would shadow the value.
        # (A tensor attribute name such as `clip` is fine: `hp` is not a tensor.)
        if (not name.isidentifier() or name.startswith("_") or not name.islower() or keyword.iskeyword(name)
                or hasattr(HParams, name)):
            raise _invalid(node, f"HPARAMS key {name!r} must be a lowercase identifier that is not a Python "
                                 f"keyword or one of {', '.join(n for n in dir(HParams) if not n.startswith('_'))}")
        number = _literal_number(value)
        if number is None or isinstance(number, bool):
            raise _invalid(value, f"HPARAMS[{name!r}] must be a number literal")
        values[name] = float(number)
    if "lr" not in values:
        raise _invalid(node, 'HPARAMS must contain "lr" (the learning rate the task schedule scales)')
    if not values["lr"] > 0:
        raise _invalid(node, 'HPARAMS["lr"] must be positive')
    return values


def _reject_recursion(calls: dict[str, set[str]], functions: dict[str, ast.FunctionDef]) -> None:
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            raise _forbid(functions[name], f"recursion through `{name}`")
        visiting.add(name)
        for callee in calls.get(name, ()):
            visit(callee)
        visiting.discard(name)
        done.add(name)

    for name in functions:
        visit(name)


def validate(source: str) -> None:
    """Check a program against the contract without running it; raise ``CandidateError``."""
    _check(source)
