"""The whitelist walk over one function body of a candidate: which statements, operators,
names, calls, attributes, subscripts and literals a program may use."""

from __future__ import annotations

import ast

from sandbox import vocabulary
from sandbox.contract_syntax import _is_docstring, _literal_number
from sandbox.contract_terms import (
    MAX_LOOP_DEPTH,
    MAX_LOOP_ITERATIONS,
    CandidateError,
    _forbid,
    _invalid,
)

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
