"""The candidate-program contract: parse, validate, normalise and load an update rule.

A candidate is a short module of restricted Python (see shared/DESIGN.md section 2)::

    HPARAMS = {"lr": 1e-3, "beta1": 0.9}

    def init(param):
        return {"m": zeros_like(param)}

    def update(grad, param, state, step, hp):
        m = interp(grad, state["m"], hp.beta1)
        return -hp.lr * sign(m), {"m": m}

Validation works on the AST before anything runs and rejects with a message that names the
line and the construct. Loading executes the (already validated) module with no builtins but
the vocabulary, so even a construct the whitelist missed finds nothing dangerous in scope.
Untrusted code still only *runs* inside a sandbox worker; this module is the first wall.
"""

from __future__ import annotations

import ast
import hashlib
import keyword
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from sandbox import vocabulary

FAILURE_REASONS = (
    "invalid_code",
    "forbidden_construct",
    "timeout",
    "oom",
    "nan",
    "diverged",
    "shape_error",
    "crashed",
)
"""Every way a candidate can fail; each failure record carries exactly one of these."""

MAX_SOURCE_CHARS = 8000
MAX_LINES = 200
MAX_AST_NODES = 3000
MAX_AST_DEPTH = 100  # the checker and compiler recurse per level; deeper input would overflow them
MAX_LOOP_ITERATIONS = 16
MAX_LOOP_DEPTH = 2  # nested loops multiply: 16 ** depth iterations at most
MAX_STATE_FACTOR = 8  # state tensors may hold at most this many entries per parameter entry
INIT_ARGS = ("param",)
UPDATE_ARGS = ("grad", "param", "state", "step", "hp")


class CandidateError(Exception):
    """A candidate broke the contract. ``reason`` is one of :data:`FAILURE_REASONS`."""

    def __init__(self, reason: str, message: str, line: int | None = None):
        assert reason in FAILURE_REASONS, reason
        self.reason = reason
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


class HParams:
    """Read-only attribute view of a candidate's hyperparameters (``hp.lr``, ``hp.beta1``).

    Values are numbers, or 0-d tensors when a grid of them is evaluated in one batched pass.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, Any]):
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no hyperparameter `{name}` (HPARAMS has {sorted(self._values)})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("hyperparameters are read-only inside a candidate")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def replace(self, **changes: Any) -> HParams:
        return HParams({**self._values, **changes})

    def __repr__(self) -> str:
        return f"HParams({self._values})"


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


# --- validation ---------------------------------------------------------------------------

_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.FloorDiv, ast.Mod, ast.MatMult)
_UNARYOPS = (ast.USub, ast.UAdd, ast.Not)
_CMPOPS = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_CONSTRUCT_NAMES = {
    ast.Import: "import",
    ast.ImportFrom: "import",
    ast.While: "`while` loop",
    ast.Lambda: "lambda",
    ast.ClassDef: "class definition",
    ast.With: "`with` block",
    ast.AsyncFunctionDef: "async function",
    ast.AsyncFor: "async loop",
    ast.AsyncWith: "async block",
    ast.Await: "await",
    ast.Try: "`try` block",
    ast.Raise: "`raise`",
    ast.Global: "`global`",
    ast.Nonlocal: "`nonlocal`",
    ast.Delete: "`del`",
    ast.Yield: "`yield`",
    ast.YieldFrom: "`yield from`",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.NamedExpr: "walrus operator `:=`",
    ast.Starred: "starred expression",
    ast.JoinedStr: "f-string",
    ast.Assert: "`assert`",
    ast.List: "list literal",
    ast.Set: "set literal",
    ast.Slice: "slice",
    ast.Lambda: "lambda",
}
if hasattr(ast, "TryStar"):
    _CONSTRUCT_NAMES[ast.TryStar] = "`try` block"
if hasattr(ast, "Match"):
    _CONSTRUCT_NAMES[ast.Match] = "`match` statement"


def _forbid(node: ast.AST, what: str) -> CandidateError:
    return CandidateError("forbidden_construct", f"{what} is not allowed", getattr(node, "lineno", None))


def _invalid(node: ast.AST | None, what: str) -> CandidateError:
    return CandidateError("invalid_code", what, getattr(node, "lineno", None))


def _literal_number(node: ast.AST) -> float | int | bool | None:
    """The value of a numeric literal (``3``, ``-1e-8``, ``True``) or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal_number(node.operand)
        if inner is not None and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


MAX_CONSTANT_BITS = 4096
"""Integer arithmetic on constants is exact in Python, so `7 ** (10**8)` computes a 280-million
bit number and holds a worker for minutes. No optimizer needs a constant beyond this size."""


def _constant_int(node: ast.AST, constants: dict[str, float]) -> int | None:
    """The value of an integer expression of literals and module constants (None when it is not
    one); raises ``forbidden_construct`` when it would exceed :data:`MAX_CONSTANT_BITS`, judged
    before computing it."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, int) and not isinstance(node.value, bool) else None
    if isinstance(node, ast.Name):
        value = constants.get(node.id)
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _constant_int(node.operand, constants)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Pow,
                                                                   ast.FloorDiv, ast.Mod))):
        return None
    a, b = _constant_int(node.left, constants), _constant_int(node.right, constants)
    if a is None or b is None:
        return None
    if isinstance(node.op, ast.Pow):
        if b < 0 or abs(a) <= 1:
            return None if b < 0 else a ** b  # a float, or 0/1/-1: cheap either way
        bits = b * (abs(a).bit_length() - 1)  # a lower bound of the result's size
    elif isinstance(node.op, ast.Mult):
        bits = abs(a).bit_length() + abs(b).bit_length() - 1
    else:
        bits = max(abs(a).bit_length(), abs(b).bit_length())
    if bits > MAX_CONSTANT_BITS:
        raise _forbid(node, f"the constant `{ast.unparse(node)[:60]}` (about {bits} bits: too large; "
                            f"constant integers are limited to {MAX_CONSTANT_BITS} bits)")
    if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and b == 0:
        return None
    return {ast.Add: int.__add__, ast.Sub: int.__sub__, ast.Mult: int.__mul__, ast.Pow: int.__pow__,
            ast.FloorDiv: int.__floordiv__, ast.Mod: int.__mod__}[type(node.op)](a, b)


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


class _Checker(ast.NodeVisitor):
    """Walks one function body; knows which names are in scope."""

    def __init__(self, functions: dict[str, ast.FunctionDef], constants: set[str], hp_keys: set[str]):
        self.functions = functions
        self.constants = constants
        self.hp_keys = hp_keys
        self.ops_used: set[str] = set()
        self.calls: dict[str, set[str]] = {}
        self.current: str = ""
        self.locals: set[str] = set()
        self.params: set[str] = set()
        self.loop_depth = 0
        self.constant_values: dict[str, float] = {}

    def check_function(self, fn: ast.FunctionDef) -> None:
        self.current = fn.name
        self.calls[fn.name] = set()
        args = fn.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
            raise _forbid(fn, f"`*args`, `**kwargs` or keyword-only parameters in `{fn.name}`")
        if fn.decorator_list:
            raise _forbid(fn.decorator_list[0], "a decorator")
        if fn.returns is not None or any(a.annotation is not None for a in args.args):
            raise _forbid(fn, f"a type annotation in `{fn.name}`")
        for default in args.defaults:
            if _literal_number(default) is None:
                raise _forbid(default, "a default value that is not a number")
        self.params = {a.arg for a in args.args}
        for name in self.params:
            self._check_name_text(name, fn)
        # Every name assigned anywhere in the body is a local (Python's own scoping rule).
        self.locals = set(self.params)
        for node in ast.walk(fn):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.locals.add(node.id)
        body = fn.body[1:] if fn.body and _is_docstring(fn.body[0]) else fn.body
        if not body:
            raise _invalid(fn, f"`{fn.name}` has no body")
        for stmt in body:
            self.visit(stmt)

    @staticmethod
    def _check_name_text(name: str, node: ast.AST) -> None:
        if name.startswith("_") and name != "_":
            raise _forbid(node, f"the name `{name}` (names may not start with an underscore)")

    # statements
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        raise _forbid(node, f"a nested function `{node.name}`")

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._check_target(target)
        self.visit(node.value)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if not isinstance(node.op, _BINOPS):
            raise _forbid(node, f"the operator `{type(node.op).__name__}`")
        self._check_target(node.target)
        self.visit(node.value)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        raise _forbid(node, "a type annotation")

    def _check_target(self, target: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self._check_name_text(target.id, target)
            if target.id in self.functions or target.id in vocabulary.OPS:
                raise _forbid(target, f"assigning to `{target.id}`, which names a function")
        elif isinstance(target, ast.Tuple):
            for elt in target.elts:
                self._check_target(elt)
        elif isinstance(target, ast.Subscript):
            raise _forbid(target, "assigning into a subscript (build a new dict instead: return {..})")
        elif isinstance(target, ast.Attribute):
            raise _forbid(target, f"assigning to an attribute `{ast.unparse(target)}`")
        else:
            raise _forbid(target, f"assigning to `{ast.unparse(target)}`")

    def visit_Return(self, node: ast.Return) -> None:
        if node.value is None:
            raise _invalid(node, f"`{self.current}` must return a value")
        self.visit(node.value)

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        for stmt in node.body + node.orelse:
            self.visit(stmt)

    def visit_For(self, node: ast.For) -> None:
        if node.orelse:
            raise _forbid(node, "`for ... else`")
        if not isinstance(node.target, ast.Name):
            raise _forbid(node.target, "a loop target other than a single name")
        self._check_target(node.target)
        it = node.iter
        bounds = None
        if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and not it.keywords:
            values = [_literal_number(a) for a in it.args]
            if 1 <= len(values) <= 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                bounds = values
        if bounds is None:
            raise _forbid(node, f"a loop over `{ast.unparse(it)}` (only `for i in range(N)` with a literal N <= {MAX_LOOP_ITERATIONS})")
        count = bounds[0] if len(bounds) == 1 else bounds[1] - bounds[0]
        if count > MAX_LOOP_ITERATIONS:
            raise _forbid(node, f"a loop of {count} iterations (limit {MAX_LOOP_ITERATIONS})")
        if self.loop_depth >= MAX_LOOP_DEPTH:
            raise _forbid(node, f"loops nested more than {MAX_LOOP_DEPTH} deep")
        self.loop_depth += 1
        for stmt in node.body:
            self.visit(stmt)
        self.loop_depth -= 1

    def visit_Expr(self, node: ast.Expr) -> None:
        if _is_docstring(node):
            return
        raise _forbid(node, f"a bare expression statement `{ast.unparse(node)[:40]}` (it has no effect)")

    def visit_Pass(self, node: ast.Pass) -> None:
        return

    # expressions
    def visit_Name(self, node: ast.Name) -> None:
        self._check_name_text(node.id, node)
        if isinstance(node.ctx, ast.Load):
            known = node.id in self.locals or node.id in self.constants
            if node.id in vocabulary.OPS or node.id in self.functions:
                raise _forbid(node, f"using the function `{node.id}` as a value (call it instead)")
            if not known:
                raise CandidateError("invalid_code", f"unknown name `{node.id}`", node.lineno)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        text = ast.unparse(node)
        if node.attr.startswith("_"):
            raise _forbid(node, f"attribute access `{text}`")
        if not (isinstance(node.value, ast.Name) and node.value.id in self.params and node.value.id != "_"):
            raise _forbid(node, f"attribute access `{text}` (only hyperparameters, as `hp.name`)")
        if node.attr not in self.hp_keys:
            raise _forbid(node, f"attribute access `{text}` (HPARAMS has no `{node.attr}`; it has {sorted(self.hp_keys)})")
        self.visit(node.value)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        key = node.slice
        ok = (isinstance(key, ast.Constant) and isinstance(key.value, str)) or isinstance(_literal_number(key), int)
        if not ok:
            raise _forbid(node, f"the subscript `{ast.unparse(node)}` (only a string key like state[\"m\"] or an integer index)")
        self.visit(node.value)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if not isinstance(func, ast.Name):
            raise _forbid(node, f"calling `{ast.unparse(func)}` (only vocabulary ops and your own functions can be called)")
        name = func.id
        if name == "range":
            raise _forbid(node, "`range` outside a `for` loop header")
        if name in vocabulary.OPS:
            self.ops_used.add(name)
        elif name in self.functions:
            self.calls[self.current].add(name)
        elif name.startswith("__") or name.startswith("_"):
            raise _forbid(node, f"the name `{name}` (names may not start with an underscore)")
        else:
            raise CandidateError("invalid_code", f"unknown op `{name}` (not in the vocabulary)", node.lineno)
        for kw in node.keywords:
            if kw.arg is None:
                raise _forbid(node, "`**` arguments")
        for arg in node.args:
            self.visit(arg)
        for kw in node.keywords:
            self.visit(kw.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if not isinstance(node.op, _BINOPS):
            raise _forbid(node, f"the operator `{type(node.op).__name__}`")
        if isinstance(node.op, (ast.Pow, ast.Mult)):
            _constant_int(node, self.constant_values)  # raises for a constant integer that would stall a worker
        self.generic_visit(node)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if not isinstance(node.op, _UNARYOPS):
            raise _forbid(node, f"the operator `{type(node.op).__name__}`")
        self.generic_visit(node)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if not isinstance(op, _CMPOPS):
                raise _forbid(node, f"the comparison `{type(op).__name__}` (use ==, !=, <, <=, >, >=)")
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.generic_visit(node)

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key in node.keys:
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise _forbid(node, "a dict key that is not a string literal")
        for value in node.values:
            self.visit(value)

    def visit_Tuple(self, node: ast.Tuple) -> None:
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, (int, float, str, bool, type(None))):
            raise _forbid(node, f"the literal {node.value!r}")
        if isinstance(node.value, int) and not isinstance(node.value, bool) and abs(node.value) > 10**12:
            raise _forbid(node, f"the integer literal {node.value} (too large)")
        if isinstance(node.value, str) and len(node.value) > 200:
            raise _forbid(node, "a string literal longer than 200 characters")

    def visit_Load(self, node: ast.AST) -> None:
        return

    visit_Store = visit_Load

    def generic_visit(self, node: ast.AST) -> None:
        kind = type(node)
        if kind in _CONSTRUCT_NAMES:
            raise _forbid(node, _CONSTRUCT_NAMES[kind])
        allowed = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop, ast.keyword,
                   ast.BinOp, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp, ast.Tuple, ast.Dict,
                   ast.Name, ast.Constant, ast.Call, ast.Subscript, ast.Attribute)
        if not isinstance(node, allowed):
            raise _forbid(node, f"the construct `{kind.__name__}`")
        super().generic_visit(node)


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


# --- running one step, with the output contract checked ------------------------------------


def check_state(state: Any, param: torch.Tensor, where: str, keys: frozenset[str] | None = None) -> dict:
    """Validate a state dict returned by ``init`` or ``update``; raise ``CandidateError``."""
    if not isinstance(state, dict):
        raise CandidateError("shape_error", f"{where} must return a dict of tensors as state, got {type(state).__name__}")
    if keys is not None and frozenset(state) != keys:
        raise CandidateError(
            "shape_error", f"{where} returned state keys {sorted(state)}, but init made {sorted(keys)}")
    budget = MAX_STATE_FACTOR * param.numel() + 4096
    total = 0
    for key, value in state.items():
        if not isinstance(key, str):
            raise CandidateError("shape_error", f"{where}: state keys must be strings, got {key!r}")
        if not isinstance(value, torch.Tensor):
            raise CandidateError("shape_error", f"{where}: state[{key!r}] must be a tensor, got {type(value).__name__}")
        total += value.numel()
    if total > budget:
        raise CandidateError("shape_error", f"{where}: state holds {total} entries, more than {MAX_STATE_FACTOR}x the parameter's {param.numel()}")
    return state


def check_update_result(result: Any, param: torch.Tensor, keys: frozenset[str]) -> tuple[torch.Tensor, dict]:
    """Validate ``update``'s ``(delta, new_state)``; raise ``CandidateError`` with reason shape_error."""
    if not (isinstance(result, tuple) and len(result) == 2):
        raise CandidateError("shape_error", f"update must return (delta, new_state), got {type(result).__name__}"
                             + (f" of length {len(result)}" if isinstance(result, tuple) else ""))
    delta, state = result
    if not isinstance(delta, torch.Tensor):
        raise CandidateError("shape_error", f"update's delta must be a tensor shaped like param, got {type(delta).__name__}")
    if delta.shape != param.shape:
        raise CandidateError("shape_error", f"update's delta has shape {tuple(delta.shape)}, param has {tuple(param.shape)}")
    if not delta.is_floating_point():
        raise CandidateError("shape_error", f"update's delta has dtype {delta.dtype}, expected a floating dtype")
    return delta, check_state(state, param, "update", keys)


def run_init(program: Program, param: torch.Tensor) -> dict:
    """``program.init(param)`` with the contract checked."""
    return check_state(program.init(param), param, "init")


def run_update(program: Program, grad: torch.Tensor, param: torch.Tensor, state: dict, step: int,
               hp: HParams) -> tuple[torch.Tensor, dict]:
    """One ``update`` call with the contract checked. ``state`` is passed as a fresh dict."""
    return check_update_result(program.update(grad, param, dict(state), step, hp), param, frozenset(state))


# --- normalisation for exact de-duplication ------------------------------------------------


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
