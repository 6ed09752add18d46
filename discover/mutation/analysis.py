"""The kind analysis: which values of a program are parameter-shaped tensors, 0-d tensors,
numbers or masks, and which names are certainly assigned before each statement."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import TYPE_CHECKING

from sandbox import vocabulary

if TYPE_CHECKING:
    from discover.mutation.work import _Work

# --- kinds: what sort of value an expression is ------------------------------------------

TENSOR = "tensor"  # shaped like the parameter
ZEROD = "0-d"  # a 0-d tensor (a reduction)
SCALAR = "scalar"  # a Python number (or a 0-d hyperparameter in a batched pass)
MASK = "mask"  # a boolean tensor from a comparison
UNKNOWN = "unknown"
STATE = "state"  # the `state` argument itself: only ever subscripted
HP = "hp"  # the `hp` argument itself: only ever read as `hp.name`

_TENSORISH = (TENSOR, ZEROD, MASK, UNKNOWN)
_ARG_KINDS = {"init": (TENSOR,), "update": (TENSOR, TENSOR, STATE, SCALAR, HP)}
_ELEMENTWISE = frozenset({
    "abs", "sign", "sqrt", "rsqrt", "exp", "log", "square", "tanh", "sigmoid", "relu",
    "power", "clamp", "maximum", "minimum", "where", "interp"})
_REDUCTIONS = frozenset({"mean", "sum", "rms", "norm", "dot", "amax"})
_SHAPE_FACTS = frozenset({"ndim", "numel", "size"})
_LIKE_FIRST = frozenset({"zeros_like", "ones_like", "full_like", "transpose", "newton_schulz"})
_TENSOR_ARGS = {
    "zeros_like": (0,), "ones_like": (0,), "full_like": (0,), "mean": (0,), "sum": (0,),
    "rms": (0,), "norm": (0,), "dot": (0, 1), "amax": (0,), "ndim": (0,), "numel": (0,),
    "size": (0,), "matmul": (0, 1), "transpose": (0,), "newton_schulz": (0,)}
_NUMBER_ARGS = {"clamp": (1, 2), "full_like": (1,), "size": (1,), "newton_schulz": (1,)}


def _arith(*kinds: str) -> str:
    """Kind of an arithmetic or elementwise result: tensors win, then 0-d tensors."""
    if any(k in (TENSOR, MASK) for k in kinds):
        return TENSOR
    if any(k not in (ZEROD, SCALAR) for k in kinds):
        return UNKNOWN
    return ZEROD if ZEROD in kinds else SCALAR


def _merge(a: str, b: str) -> str:
    """Kind of a name after two branches assigned it kinds ``a`` and ``b``."""
    if a == b:
        return a
    return TENSOR if TENSOR in (a, b) else UNKNOWN


class _Analysis:
    """Kinds and certainly-assigned names before every statement of one function.

    ``errors`` lists what would fail at run time (a name read before it is assigned, a delta
    not shaped like the parameter, an `if` on a tensor, a tensor op given a number...).
    """

    def __init__(self, work: _Work, fn: ast.FunctionDef, state_kinds: Mapping[str, str] | None = None):
        self.work = work
        self.fn = fn
        self.state_kinds = dict(state_kinds or {})
        self.before: dict[int, tuple[dict[str, str], tuple[str, ...]]] = {}
        self.errors: list[str] = []
        self.returned_state: dict[str, str] = {}  # init only: key -> kind
        self.state_key_sets: list[frozenset[str]] = []
        self.opaque_state = False  # a state dict that is not a literal: keys unknown
        self.hp_reads: set[str] = set()  # hyperparameters read (membership only)
        self._report = True
        names = [a.arg for a in fn.args.args]
        kinds = _ARG_KINDS.get(fn.name, ())
        env = {name: kinds[i] if i < len(kinds) else UNKNOWN for i, name in enumerate(names)}
        self._block(fn.body, env, list(names))
        self._report = False

    def kind_at(self, node: ast.expr, stmt: ast.stmt) -> str:
        """Kind of ``node``, an expression inside ``stmt``."""
        env, defined = self.before[id(stmt)]
        return self.kind(node, env, list(defined))

    def names_before(self, stmt: ast.stmt, kind: str) -> list[str]:
        """Names certainly assigned before ``stmt`` whose value has ``kind``."""
        env, defined = self.before[id(stmt)]
        return [name for name in defined if env.get(name) == kind]

    def _error(self, message: str) -> None:
        if self._report:
            self.errors.append(f"{self.fn.name}: {message}")

    # statements
    def _block(self, stmts: list[ast.stmt], env: dict[str, str], defined: list[str]) -> None:
        for stmt in stmts:
            self.before[id(stmt)] = (dict(env), tuple(defined))
            self._statement(stmt, env, defined)

    def _statement(self, stmt: ast.stmt, env: dict[str, str], defined: list[str]) -> None:
        if isinstance(stmt, ast.Assign):
            kind = self.kind(stmt.value, env, defined)
            for target in stmt.targets:
                self._bind(target, kind, env, defined)
        elif isinstance(stmt, ast.AugAssign):
            old = self.kind(ast.Name(id=getattr(stmt.target, "id", "?"), ctx=ast.Load()), env, defined)
            self._bind(stmt.target, _arith(old, self.kind(stmt.value, env, defined)), env, defined)
        elif isinstance(stmt, ast.Return):
            self._return(stmt, env, defined)
        elif isinstance(stmt, ast.If):
            if self.kind(stmt.test, env, defined) in (TENSOR, MASK):
                self._error(f"`if {ast.unparse(stmt.test)}` tests a whole tensor")
            branches = []
            for body in (stmt.body, stmt.orelse):
                b_env, b_defined = dict(env), list(defined)
                self._block(body, b_env, b_defined)
                returns = bool(body) and isinstance(body[-1], ast.Return)
                branches.append((b_env, b_defined, returns))
            live = [b for b in branches if not b[2]] or branches
            for name in list(dict.fromkeys([*live[0][0], *live[-1][0]])):
                kinds = [b[0][name] for b in live if name in b[0]]
                env[name] = kinds[0] if len(kinds) == 1 else _merge(kinds[0], kinds[-1])
            defined[:] = [name for name in live[0][1] if name in live[-1][1]]
        elif isinstance(stmt, ast.For):
            self._bind(stmt.target, SCALAR, env, defined)
            self._block(stmt.body, env, defined)

    def _bind(self, target: ast.expr, kind: str, env: dict[str, str], defined: list[str]) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = kind
            if target.id not in defined:
                defined.append(target.id)
        elif isinstance(target, ast.Tuple):
            for elt in target.elts:
                self._bind(elt, UNKNOWN, env, defined)

    def _return(self, stmt: ast.Return, env: dict[str, str], defined: list[str]) -> None:
        value = stmt.value
        if value is None:
            return
        if self.fn.name == "init":
            self._state_dict(value, env, defined, self.returned_state)
        elif self.fn.name == "update":
            if not (isinstance(value, ast.Tuple) and len(value.elts) == 2):
                self.kind(value, env, defined)
                self._error("update must return (delta, new_state)")
                return
            if self.kind(value.elts[0], env, defined) not in (TENSOR, UNKNOWN):
                self._error(f"the update `{ast.unparse(value.elts[0])[:40]}` is not shaped like the parameter")
            self._state_dict(value.elts[1], env, defined, None)
        else:
            self.kind(value, env, defined)

    def _state_dict(self, node: ast.expr, env: dict[str, str], defined: list[str], record: dict | None) -> None:
        if not isinstance(node, ast.Dict):
            self.kind(node, env, defined)
            self.opaque_state = True
            return
        keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
        for key, value in zip(keys, node.values):
            kind = self.kind(value, env, defined)
            expected = self.state_kinds.get(key, UNKNOWN)
            if kind not in (TENSOR, ZEROD, UNKNOWN) or (UNKNOWN not in (kind, expected) and kind != expected):
                self._error(f'state["{key}"] becomes a {kind} (init made a {expected})')
            if record is not None:
                record[key] = _merge(record[key], kind) if key in record else kind
        self.state_key_sets.append(frozenset(keys))

    # expressions
    def kind(self, node: ast.expr, env: dict[str, str], defined: list[str]) -> str:
        """Kind of expression ``node`` in the given environment, noting errors on the way."""
        if isinstance(node, ast.Name):
            if node.id in defined:
                return env.get(node.id, UNKNOWN)
            if node.id in self.work.constants:
                return SCALAR
            self._error(f"`{node.id}` is read before it is certainly assigned")
            return env.get(node.id, UNKNOWN)
        if isinstance(node, ast.Constant):
            return SCALAR if isinstance(node.value, (int, float)) else UNKNOWN
        if isinstance(node, ast.Attribute):
            if self.kind(node.value, env, defined) != HP:
                return UNKNOWN
            self.hp_reads.add(node.attr)
            return SCALAR
        if isinstance(node, ast.Subscript):
            base = self.kind(node.value, env, defined)
            if base == STATE and isinstance(node.slice, ast.Constant):
                if self.state_kinds and node.slice.value not in self.state_kinds:
                    self._error(f'state has no key "{node.slice.value}"')
                return self.state_kinds.get(node.slice.value, UNKNOWN)
            return UNKNOWN
        if isinstance(node, ast.BinOp):
            return _arith(self.kind(node.left, env, defined), self.kind(node.right, env, defined))
        if isinstance(node, ast.UnaryOp):
            inner = self.kind(node.operand, env, defined)
            if isinstance(node.op, ast.Not):
                if inner in (TENSOR, MASK):
                    self._error("`not` of a whole tensor")
                return SCALAR
            return _arith(inner)
        if isinstance(node, ast.Compare):
            kinds = [self.kind(n, env, defined) for n in (node.left, *node.comparators)]
            if any(k in (TENSOR, MASK) for k in kinds):
                return MASK
            return UNKNOWN if UNKNOWN in kinds else SCALAR
        if isinstance(node, ast.BoolOp):
            if any(self.kind(v, env, defined) in (TENSOR, MASK) for v in node.values):
                self._error("`and`/`or` of a whole tensor")
            return SCALAR
        if isinstance(node, ast.IfExp):
            if self.kind(node.test, env, defined) in (TENSOR, MASK):
                self._error("a conditional expression that tests a whole tensor")
            return _merge(self.kind(node.body, env, defined), self.kind(node.orelse, env, defined))
        if isinstance(node, ast.Call):
            return self._call(node, env, defined)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.kind(child, env, defined)
        return UNKNOWN

    def _call(self, node: ast.Call, env: dict[str, str], defined: list[str]) -> str:
        kinds = [self.kind(arg, env, defined) for arg in node.args]
        for kw in node.keywords:
            self.kind(kw.value, env, defined)
        name = node.func.id if isinstance(node.func, ast.Name) else ""
        if name not in vocabulary.OPS:
            return _arith(*kinds) if kinds else UNKNOWN
        for i in _TENSOR_ARGS.get(name, ()):
            if i < len(kinds) and kinds[i] not in _TENSORISH:
                self._error(f"`{name}` needs a tensor, got the number `{ast.unparse(node.args[i])[:40]}`")
        for i in _NUMBER_ARGS.get(name, ()):
            if i < len(kinds) and kinds[i] not in (SCALAR, ZEROD, UNKNOWN):
                self._error(f"`{name}` needs a number as argument {i + 1}")
        if name == "where" and kinds and kinds[0] not in (MASK, UNKNOWN):
            self._error("`where` needs a comparison of tensors as its condition")
        if name == "interp" and len(kinds) >= 2 and kinds[0] == TENSOR and kinds[1] not in _TENSORISH:
            self._error("`interp` from a tensor towards a number")
        if name in _ELEMENTWISE:
            return _arith(*kinds)
        if name in _REDUCTIONS:
            return ZEROD
        if name in _SHAPE_FACTS:
            return SCALAR
        if name in _LIKE_FIRST and kinds:
            return TENSOR if kinds[0] == MASK else kinds[0]
        return TENSOR if name == "matmul" else UNKNOWN
