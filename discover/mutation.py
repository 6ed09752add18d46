"""Offline symbolic mutation and crossover of candidate programs: the proposer that needs no LLM.

In the spirit of the program search that found Lion (Chen et al., "Symbolic Discovery of
Optimization Algorithms", 2023), a child is its parent with a few random edits: replace an op,
an operator, an operand or a constant; insert a statement, a wrapping op, a new moving-average
state or a new hyperparameter; delete a statement or simplify an expression to one of its
operands; swap arguments. Edits are plain functions in the :data:`EDITS` registry, each drawn
with a weight.

Edits work on the AST and keep the program well formed. A small *kind* analysis
(:class:`_Analysis`) tracks which values are parameter-shaped tensors, 0-d tensors, numbers or
masks, and which names are certainly assigned at each statement; an edit only puts an
expression where one of the same kind was, and a child is kept only if (1) every name it reads
is assigned first, the update is still shaped like the parameter and init's and update's
state keys still agree, (2) it passes :func:`sandbox.contract.validate`, and (3) its
:func:`~sandbox.contract.program_hash` differs from its parent's. Otherwise another random edit
is tried, up to ``max_attempts`` times, before :class:`MutationError`.

Every random choice comes from the ``random.Random`` passed in, and nothing iterates a set, so
one seed gives the same children in the same order.
"""

from __future__ import annotations

import ast
import copy
import functools
import math
import random
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, NamedTuple

import torch

from sandbox import vocabulary
from sandbox.contract import CandidateError, parse_ast, program_hash, validate

DEFAULT_ATTEMPTS = 50
"""Candidate children :func:`mutate` builds before it gives up."""

SNIPPET_CHARS = 60
"""Code quoted in an edit description is cut to this many characters."""


class MutationError(Exception):
    """No valid child could be made (an invalid parent, or every attempt broke the contract)."""


@dataclass
class Mutation:
    """A child program and how it was made.

    ``edits`` are human-readable (``"line 12: replaced `sqrt(v)` with `abs(v)`"``, line numbers
    of the parent), ``kinds`` the registry names of the edits applied, ``hash`` the child's
    :func:`~sandbox.contract.program_hash`, and ``attempts`` the number of children built to
    get this one (1: the first random edit was already valid).
    """

    source: str
    edits: list[str]
    kinds: list[str] = field(default_factory=list)
    hash: str = ""
    attempts: int = 1


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


# --- the program being edited --------------------------------------------------------------


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


class _Work:
    """A parsed program being edited, with handles on the parts edits touch."""

    def __init__(self, source: str):
        self.tree = parse_ast(source)
        self.functions: dict[str, ast.FunctionDef] = {}
        self.constants: dict[str, float] = {}
        self.hparams_node = ast.Dict(keys=[], values=[])
        for stmt in self.tree.body:
            if isinstance(stmt, ast.FunctionDef):
                self.functions[stmt.name] = stmt
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                if stmt.targets[0].id == "HPARAMS" and isinstance(stmt.value, ast.Dict):
                    self.hparams_node = stmt.value
                elif _number(stmt.value) is not None:
                    self.constants[stmt.targets[0].id] = _number(stmt.value)

    @property
    def init(self) -> ast.FunctionDef:
        return self.functions["init"]

    @property
    def update(self) -> ast.FunctionDef:
        return self.functions["update"]

    def arg(self, fn: ast.FunctionDef, position: int) -> str:
        """Name of ``fn``'s argument at ``position`` (``update``: grad, param, state, step, hp)."""
        return fn.args.args[position].arg

    def hparams(self) -> dict[str, float]:
        node = self.hparams_node
        return {k.value: _number(v) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant)}

    def set_hparam(self, key: str, value: float) -> None:
        node = self.hparams_node
        index = [k.value for k in node.keys].index(key)
        node.values[index] = _number_node(value)

    def add_hparam(self, stem: str, value: float) -> str:
        name = self.fresh_name(stem)
        self.hparams_node.keys.append(ast.Constant(value=name))
        self.hparams_node.values.append(_number_node(value))
        return name

    def taken(self) -> set[str]:
        """Every name in use anywhere (only for membership tests)."""
        names = {"HPARAMS", "range", *vocabulary.OPS, *self.functions, *self.constants, *self.hparams()}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Dict):
                names.update(k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str))
        return names

    def fresh_name(self, stem: str) -> str:
        """``stem`` plus the smallest number that makes a name no part of the program uses."""
        taken = self.taken()
        number = 1
        while f"{stem}{number}" in taken or hasattr(torch.Tensor, f"{stem}{number}"):
            number += 1
        return f"{stem}{number}"

    def sites(self, *names: str) -> list[_Site]:
        """Editable expressions of the named functions (all by default). When init's state
        depends on an ``if`` (Muon: one state for matrices, another for vectors), the ``if``
        conditions are left alone: update's must keep choosing the branch init chose."""
        tests = not any(isinstance(s, ast.If) for s in _statements(self.init.body))
        return [site for name, fn in self.functions.items() if not names or name in names
                for site in _sites(fn, tests)]

    def analyses(self) -> dict[str, _Analysis]:
        init = _Analysis(self, self.init)
        out = {"init": init}
        for name, fn in self.functions.items():
            if name != "init":
                out[name] = _Analysis(self, fn, init.returned_state if name == "update" else None)
        return out

    def analyse_update(self) -> _Analysis:
        return _Analysis(self, self.update, _Analysis(self, self.init).returned_state)

    def errors(self) -> list[str]:
        """What the kind analysis expects to fail at run time (empty for a sound program)."""
        analyses = self.analyses()
        errors = [e for a in analyses.values() for e in a.errors]
        init, update = analyses["init"], analyses["update"]
        if not (init.opaque_state or update.opaque_state) and set(init.state_key_sets) != set(update.state_key_sets):
            errors.append("init's and update's state keys differ")
        if "lr" not in update.hp_reads:
            errors.append("update does not read hp.lr, so the task's schedule and LR grid cannot scale it")
        return errors

    def state_dicts(self) -> tuple[list[ast.Dict], list[ast.Dict]] | None:
        """The dict literals init and update return as state, or None if one is not a literal."""
        init = [r.value for r in _returns(self.init)]
        update = [r.value.elts[1] if isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2 else None
                  for r in _returns(self.update)]
        if not init or not update or not all(isinstance(d, ast.Dict) for d in init + update):
            return None
        return init, update

    def state_keys(self) -> list[str]:
        dicts = self.state_dicts()
        if dicts is None:
            return []
        keys = [k.value for d in dicts[0] for k in d.keys]
        return list(dict.fromkeys(keys))

    def common_state_keys(self) -> list[str]:
        """Keys every one of init's returns makes (Muon's vectors have a key its matrices lack)."""
        dicts = self.state_dicts()
        if dicts is None:
            return []
        return [k for k in self.state_keys() if all(k in [key.value for key in d.keys] for d in dicts[0])]

    def source(self, docstring: str) -> str:
        doc = ast.Expr(value=ast.Constant(value=docstring))
        if self.tree.body and _is_docstring(self.tree.body[0]):
            self.tree.body[0] = doc
        else:
            self.tree.body.insert(0, doc)
        return ast.unparse(self.tree) + "\n"


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


def _state_value_ids(work: _Work) -> set[int]:
    """ids of the dict literals ``update`` returns as new state."""
    return {id(r.value.elts[1]) for r in _returns(work.update)
            if isinstance(r.value, ast.Tuple) and len(r.value.elts) == 2}


# --- numbers ---------------------------------------------------------------------------------

_SMALL_VALUES = (1e-4, 1e-3, 1e-2, 0.1)


def _nice(x: float, rng: random.Random) -> float:
    """``x`` rounded to one or two significant digits."""
    return float(f"{x:.{rng.choice((1, 2))}g}")


def _jiggle(x: float, rng: random.Random, spread: float = 3.0) -> float:
    """``x`` times a log-uniform factor in [1/spread, spread]."""
    return x * spread ** rng.uniform(-1.0, 1.0)


def perturb_value(value: float, rng: random.Random) -> float:
    """A different value near ``value`` of the same nature.

    Values in (0, 1) stay in (0, 1) (from 0.5 up, ``1 - value`` moves on a log scale, so 0.999
    becomes 0.998 or 0.9995); other values keep their sign (so ``lr`` stays positive) and move
    by a log-uniform factor; zero becomes a small nice value.
    """
    for _ in range(16):
        if value == 0:
            new = rng.choice(_SMALL_VALUES)
        elif 0.5 <= value < 1:
            new = round(1 - _nice(_jiggle(1 - value, rng), rng), 12)
        elif 0 < value < 0.5:
            new = _nice(_jiggle(value, rng), rng)
        else:
            new = math.copysign(_nice(_jiggle(abs(value), rng), rng), value)
        if new != value and (not 0 < value < 1 or 0 < new < 1):
            return new
    return (1 + value) / 2 if 0 < value < 1 else 2 * value or 0.1


def _perturb_code_number(value: int | float, rng: random.Random) -> int | float:
    if isinstance(value, int):
        options = [v for v in (value - 1, value + 1, 2 * value, value // 2) if 1 <= v != value]
        return rng.choice(options)
    return perturb_value(value, rng)


def _fmt(value: float) -> str:
    return f"{value:g}"


def _is_code_number(site: _Site) -> bool:
    """A non-zero number literal of the code that is a quantity, not a dimension (``size(x, 1)``)."""
    node, holder = site.node, site.holder
    if not (isinstance(node, ast.Constant) and _number(node) is not None and node.value != 0):
        return False
    return not (isinstance(holder, ast.Call) and isinstance(holder.func, ast.Name) and holder.func.id == "size")


# --- the edits ---------------------------------------------------------------------------------

_UNARY_SWAPS: dict[str, tuple[str, ...]] = {
    "sign": ("tanh",),
    "tanh": ("sign", "sigmoid"),
    "sigmoid": ("tanh", "relu"),
    "relu": ("abs", "sigmoid"),
    "abs": ("sqrt", "square", "relu"),
    "sqrt": ("abs", "rsqrt", "square"),
    "rsqrt": ("sqrt",),
    "square": ("abs", "sqrt"),
    "exp": ("sigmoid", "square"),
    "log": ("sqrt", "tanh"),
    "zeros_like": ("ones_like",),
    "ones_like": ("zeros_like",),
    "mean": ("rms", "amax"),
    "rms": ("mean", "norm", "amax"),
    "norm": ("rms",),
    "amax": ("rms",),
    "sum": ("mean", "norm"),
}
"""Unary op -> ops of the same arity and kind it may become (sign <-> tanh, sqrt -> abs ...)."""

_BINOP_SWAPS: dict[type, tuple[type, ...]] = {
    ast.Add: (ast.Sub, ast.Sub, ast.Mult),
    ast.Sub: (ast.Add, ast.Add, ast.Div),
    ast.Mult: (ast.Div, ast.Div, ast.Add),
    ast.Div: (ast.Mult, ast.Mult, ast.Sub),
}
"""Operator -> operators it may become; the same family (+/-, */÷) twice as likely."""

_BINARY_CALL_SWAPS = {"maximum": "minimum", "minimum": "maximum"}

_TENSOR_WRAPS = (
    "sign({x})", "tanh({x})", "clamp({x}, -{c}, {c})", "{x} / (rms({x}) + 1e-8)", "{x} * rms({x})",
    "sign({x}) * sqrt(abs({x}))", "{x} / (1 + abs({x}))", "newton_schulz({x}, 5)", "{x} - mean({x})",
    "abs({x})", "{x} * sigmoid({x})",
)
"""Ways to wrap a parameter-shaped expression ``x`` in new ops (results stay parameter-shaped)."""

_NUMBER_WRAPS = ("sqrt(abs({x}))", "square({x})", "tanh({x})", "sigmoid({x})", "maximum({x}, 1e-8)")
"""Ways to wrap a number (or 0-d tensor) ``x``."""

_COMBINE_FORMS = (
    "{x} + {c} * {w}", "{x} * {w}", "interp({x}, {w}, {b})", "{x} / (sqrt(abs({w})) + 1e-8)", "{x} - {c} * {w}",
)
"""New right-hand sides ``x = ...`` for an inserted statement that mixes in another tensor ``w``."""

_CLAMPS = (0.1, 0.5, 1.0, 2.0, 3.0)
_MIX_WEIGHTS = (0.01, 0.1, 0.5, 1.0)
_BETAS = (0.5, 0.9, 0.99)
_NEW_BETAS = (0.9, 0.95, 0.99, 0.999)


def _wrap_text(template: str, x: str, rng: random.Random, w: str = "") -> str:
    return template.format(x=f"({x})", w=f"({w})", c=rng.choice(_CLAMPS if "clamp" in template else _MIX_WEIGHTS),
                           b=rng.choice(_BETAS))


def _replace_unary_op(work: _Work, rng: random.Random) -> str | None:
    """Swap a unary op for a compatible one: ``sign(m)`` -> ``tanh(m)``, ``sqrt(v)`` -> ``abs(v)``."""
    sites = [s for s in work.sites() if isinstance(s.node, ast.Call) and isinstance(s.node.func, ast.Name)
             and s.node.func.id in _UNARY_SWAPS and len(s.node.args) == 1]
    if not sites:
        return None
    site = rng.choice(sites)
    old = _code(site.node)
    site.node.func = ast.Name(id=rng.choice(_UNARY_SWAPS[site.node.func.id]), ctx=ast.Load())
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(site.node)}"


def _replace_binary(work: _Work, rng: random.Random) -> str | None:
    """Swap ``+ - * /`` for another, ``maximum`` for ``minimum``, or an ``interp`` weight."""
    hp = work.hparams()
    sites = [s for s in work.sites()
             if (isinstance(s.node, ast.BinOp) and type(s.node.op) in _BINOP_SWAPS)
             or (isinstance(s.node, ast.Call) and isinstance(s.node.func, ast.Name)
                 and (s.node.func.id in _BINARY_CALL_SWAPS or s.node.func.id == "interp" and len(s.node.args) == 3))]
    if not sites:
        return None
    site = rng.choice(sites)
    node, old = site.node, _code(site.node)
    if isinstance(node, ast.BinOp):
        ops = _BINOP_SWAPS[type(node.op)]
        if _is_zero(node.right, work, site.fn):  # `hp.lr * hp.weight_decay` must not become a division by 0
            ops = tuple(op for op in ops if op is not ast.Div)
        node.op = rng.choice(ops)()
    elif node.func.id in _BINARY_CALL_SWAPS:
        node.func = ast.Name(id=_BINARY_CALL_SWAPS[node.func.id], ctx=ast.Load())
    else:
        options = [repr(beta) for beta in _NEW_BETAS]
        if site.fn is work.update:  # only update can read hyperparameters
            options += [f"{work.arg(site.fn, 4)}.{k}" for k, v in hp.items() if 0 < v < 1]
        current = ast.unparse(node.args[2])
        node.args[2] = _expr(rng.choice([text for text in options if text != current]))
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(node)}"


def _is_zero(node: ast.expr, work: _Work, fn: ast.FunctionDef) -> bool:
    """Whether ``node`` is a literal 0 or reads a hyperparameter whose value is 0."""
    if _number(node) == 0:
        return True
    return (fn is work.update and isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == work.arg(fn, 4) and work.hparams().get(node.attr) == 0)


def _perturb_constant(work: _Work, rng: random.Random) -> str | None:
    """Move a hyperparameter (``HPARAMS: beta1 0.9 -> 0.95``) or a number in the code."""
    hp = work.hparams()
    code_sites = [s for s in work.sites() if _is_code_number(s)]
    if hp and (not code_sites or rng.random() < 0.6):
        keys = list(hp)
        key = rng.choices(keys, [0.3 if k == "lr" else 1.0 for k in keys])[0]
        new = perturb_value(hp[key], rng)
        work.set_hparam(key, new)
        return f"HPARAMS: {key} {_fmt(hp[key])} -> {_fmt(new)}"
    if not code_sites:
        return None
    site = rng.choice(code_sites)
    old = site.node.value
    site.node.value = _perturb_code_number(old, rng)
    return f"{_where(site.stmt, site.fn)}: constant {_fmt(old)} -> {_fmt(site.node.value)}"


def _wrap_expression(work: _Work, rng: random.Random) -> str | None:
    """Wrap an expression of ``update`` in new ops: ``m`` -> ``sign(m)``, ``clamp(g, -1, 1)``..."""
    analysis = work.analyse_update()
    by_kind: dict[str, list[_Site]] = {TENSOR: [], SCALAR: []}
    for site in work.sites("update"):
        if isinstance(site.node, (ast.Constant, ast.Compare, ast.BoolOp)):
            continue
        kind = analysis.kind_at(site.node, site.stmt)
        if kind in (ZEROD, SCALAR):
            by_kind[SCALAR].append(site)
        elif kind == TENSOR:
            by_kind[TENSOR].append(site)
    kind = TENSOR if by_kind[TENSOR] and (not by_kind[SCALAR] or rng.random() < 0.85) else SCALAR
    if not by_kind[kind]:
        return None
    site = rng.choice(by_kind[kind])
    old = _code(site.node)
    template = rng.choice(_TENSOR_WRAPS if kind == TENSOR else _NUMBER_WRAPS)
    site.replace(_expr(_wrap_text(template, ast.unparse(site.node), rng)))
    return f"{_where(site.stmt, site.fn)}: wrapped {old} as {_code(site.node)}"


def _blocks(body: list[ast.stmt]) -> list[list[ast.stmt]]:
    """A function's statement lists: its body, then those of its ``if``s and loops."""
    out = [body]
    for stmt in body:
        if isinstance(stmt, (ast.If, ast.For)):
            out += [block for inner in (stmt.body, stmt.orelse) if inner for block in _blocks(inner)]
    return out


def _insertion_points(work: _Work, analysis: _Analysis) -> list[tuple[list[ast.stmt], int, str]]:
    """(block, index, name): a tensor ``name`` assigned before statement ``index`` of a block of
    ``update`` and read at or after it (inserting ``name = f(name)`` there changes the result)."""
    points = []
    for block in _blocks(work.update.body):
        for p in range(_first_index(block), len(block)):
            later = set(_loads(block[p:]))
            points += [(block, p, name) for name in analysis.names_before(block[p], TENSOR) if name in later]
    return points


def _describe_insert(block: list[ast.stmt], p: int, stmt: ast.stmt) -> str:
    nxt = block[p + 1]
    line = getattr(nxt, "lineno", None)
    where = f"before line {line}" if line else f"before {_code(nxt)}"
    return f"update: inserted {_code(stmt)} {where}"


def _insert_statement(work: _Work, rng: random.Random) -> str | None:
    """Insert ``x = f(x)`` or ``x = x (op) w`` before a statement that reads tensor ``x``."""
    analysis = work.analyse_update()
    points = _insertion_points(work, analysis)
    if not points:
        return None
    block, p, name = rng.choice(points)
    state = work.arg(work.update, 2)
    others = [n for n in analysis.names_before(block[p], TENSOR) if n != name]
    others += [f'{state}["{k}"]' for k in work.common_state_keys() if analysis.state_kinds.get(k) == TENSOR]
    if others and rng.random() < 0.5:
        text = _wrap_text(rng.choice(_COMBINE_FORMS), name, rng, rng.choice(others))
    else:
        text = _wrap_text(rng.choice(_TENSOR_WRAPS), name, rng)
    stmt = _stmt(f"{name} = {text}")
    block.insert(p, stmt)
    return _describe_insert(block, p, stmt)


def _add_state(work: _Work, rng: random.Random) -> str | None:
    """Add a moving average as new state: init makes it, update advances and returns it, and a
    later read of a tensor now reads (or mixes in) the average."""
    dicts = work.state_dicts()
    analysis = work.analyse_update()
    if dicts is None:
        return None
    body = work.update.body
    top = _top_index(body)
    state_values = _state_value_ids(work)
    uses = [s for s in work.sites("update") if isinstance(s.node, ast.Name) and id(s.holder) not in state_values
            and analysis.kind_at(s.node, s.stmt) == TENSOR]
    options = []
    # Before the first statement holding a `return`, so every path updates the new state.
    for p in range(_first_index(body), min(_return_index(body), len(body) - 1) + 1):
        sources = analysis.names_before(body[p], TENSOR)
        later = [s for s in uses if top[id(s.stmt)] >= p]
        if sources and later:
            options.append((p, sources, later))
    if not options:
        return None
    p, sources, later = rng.choice(options)
    key = work.fresh_name("ema")
    hp = work.hparams()
    betas = [k for k, v in hp.items() if 0.5 <= v < 1]
    beta = rng.choice(betas) if betas and rng.random() < 0.6 else work.add_hparam("beta", rng.choice(_NEW_BETAS))
    source = rng.choice(sources)
    source = rng.choices((source, f"square({source})", f"abs({source})"), (0.6, 0.3, 0.1))[0]
    state, hp_name, param = work.arg(work.update, 2), work.arg(work.update, 4), work.arg(work.init, 0)
    stmt = _stmt(f'{key} = interp({source}, {state}["{key}"], {hp_name}.{beta})')
    site = rng.choice(later)
    old = _code(site.node)
    site.replace(_expr(rng.choice((key, f"{site.node.id} + {key}", f"interp({site.node.id}, {key}, 0.5)"))))
    body.insert(p, stmt)
    for d in dicts[0]:
        d.keys.append(ast.Constant(value=key))
        d.values.append(_expr(f"zeros_like({param})"))
    for d in dicts[1]:
        d.keys.append(ast.Constant(value=key))
        d.values.append(ast.Name(id=key, ctx=ast.Load()))
    return (f"state: added `{key}` ({_code(stmt)}), read at {_where(site.stmt, site.fn)}: "
            f"replaced {old} with {_code(site.node)}")


def _delete_statement(work: _Work, rng: random.Random) -> str | None:
    """Delete an assignment of ``update``; if it first assigned a name that is read later, those
    reads take one of its operands instead (``d = a * b`` gone: ``d`` -> ``a``)."""
    analysis = work.analyse_update()
    options = []
    for block in _blocks(work.update.body):
        for i in range(_first_index(block), len(block) if len(block) > 1 else 0):
            stmt = block[i]
            if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
                options.append((block, i, None))
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                name = stmt.targets[0].id
                _, defined = analysis.before[id(stmt)]
                if name in defined or name not in _loads(block[i + 1:]):
                    options.append((block, i, None))
                    continue
                kind = analysis.kind_at(stmt.value, stmt)
                subs = [n for n in ast.walk(stmt.value) if n is not stmt.value and isinstance(n, ast.expr)
                        and not isinstance(n, ast.Constant) and kind != UNKNOWN and analysis.kind_at(n, stmt) == kind]
                options += [(block, i, sub) for sub in subs]
    if not options:
        return None
    block, i, sub = rng.choice(options)
    stmt = block.pop(i)
    text = f"update: deleted {_where(stmt, work.update)} {_code(stmt)}"
    if sub is None:
        return text
    name = stmt.targets[0].id
    for later in block[i:]:
        for node in ast.walk(later):
            for child_field, child_index, child in list(_expr_children(node)):
                if isinstance(child, ast.Name) and child.id == name and isinstance(child.ctx, ast.Load):
                    _Site(node, child_field, child_index, child, later, work.update).replace(copy.deepcopy(sub))
        if any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(later)):
            break
    return f"{text}; reads of `{name}` now read {_code(sub)}"


_SIMPLIFIABLE = (ast.BinOp, ast.Call, ast.UnaryOp, ast.IfExp)


def _simplify_expression(work: _Work, rng: random.Random) -> str | None:
    """Replace an expression by one of its operands of the same kind: ``a * b`` -> ``a``."""
    analysis = work.analyse_update()
    options = []
    for site in work.sites("update"):
        node = site.node
        if not isinstance(node, _SIMPLIFIABLE) or isinstance(node, ast.Call) and (
                not isinstance(node.func, ast.Name) or node.func.id not in vocabulary.OPS):
            continue
        kind = analysis.kind_at(node, site.stmt)
        if kind in (TENSOR, ZEROD, SCALAR):
            operands = node.args if isinstance(node, ast.Call) else [
                c for f, _, c in _expr_children(node) if f != "test"]
            options += [(site, o) for o in operands
                        if not isinstance(o, ast.Constant) and analysis.kind_at(o, site.stmt) == kind]
    if not options:
        return None
    site, operand = rng.choice(options)
    old = _code(site.node)
    site.replace(operand)
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(operand)}"


def _swap_arguments(work: _Work, rng: random.Random) -> str | None:
    """Swap the operands of ``-`` or ``/``, the ends of an ``interp``, or the branches of ``where``."""
    analysis = work.analyse_update()
    options = []
    for site in work.sites("update"):
        node = site.node
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Sub, ast.Div)):
            options.append((site, "left", "right"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 3:
            pair = {"interp": (0, 1), "where": (1, 2)}.get(node.func.id)
            kinds = [analysis.kind_at(node.args[i], site.stmt) for i in pair] if pair else []
            if pair and kinds[0] == kinds[1]:
                options.append((site, *pair))
    if not options:
        return None
    site, a, b = rng.choice(options)
    node, old = site.node, _code(site.node)
    if isinstance(a, str):
        node.left, node.right = node.right, node.left
    else:
        node.args[a], node.args[b] = node.args[b], node.args[a]
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(node)}"


def _replace_operand(work: _Work, rng: random.Random) -> str | None:
    """Read another variable of the same kind: ``interp(grad, ...)`` -> ``interp(m, ...)``,
    ``hp.beta1`` -> ``hp.beta2`` (Lion's "change an argument" mutation)."""
    analysis = work.analyse_update()
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    hp_reads = [("attr", hp_name, k) for k in work.hparams()]
    state_reads = [("item", state, k) for k in work.common_state_keys() if k in analysis.state_kinds]
    options = []
    for site in work.sites("update"):
        node = site.node
        if not (isinstance(node, (ast.Subscript, ast.Attribute))
                or isinstance(node, ast.Name) and node.id not in (state, hp_name)):
            continue
        kind = analysis.kind_at(node, site.stmt)
        if kind in (TENSOR, ZEROD):
            pool = [("name", n) for n in analysis.names_before(site.stmt, kind)]
            pool += [read for read in state_reads if analysis.state_kinds[read[2]] == kind]
        elif kind == SCALAR:
            pool = [("name", n) for n in analysis.names_before(site.stmt, SCALAR)] + hp_reads
        else:
            continue
        current = _leaf(node)
        options += [(site, leaf) for leaf in pool if leaf != current]
    if not options:
        return None
    site, leaf = rng.choice(options)
    old = _code(site.node)
    site.replace(_leaf_node(leaf))
    return f"{_where(site.stmt, site.fn)}: replaced {old} with {_code(site.node)}"


def _leaf(node: ast.expr) -> tuple[str, ...]:
    """A variable read as a comparable value: ``m`` -> ("name", "m"), ``hp.b`` -> ("attr", "hp",
    "b"), ``state["k"]`` -> ("item", "state", "k")."""
    if isinstance(node, ast.Name):
        return ("name", node.id)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return ("attr", node.value.id, node.attr)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Constant):
        return ("item", node.value.id, node.slice.value)
    return ("expr", ast.unparse(node))


def _leaf_node(leaf: tuple[str, ...]) -> ast.expr:
    """The expression :func:`_leaf` describes."""
    if leaf[0] == "name":
        return ast.Name(id=leaf[1], ctx=ast.Load())
    base = ast.Name(id=leaf[1], ctx=ast.Load())
    if leaf[0] == "attr":
        return ast.Attribute(value=base, attr=leaf[2], ctx=ast.Load())
    return ast.Subscript(value=base, slice=ast.Constant(value=leaf[2]), ctx=ast.Load())


def _hparam_stem(name: str, value: float) -> str:
    stem = name.rstrip("0123456789_")
    if stem:
        return stem
    return "eps" if abs(value) < 1e-3 else "beta" if 0.5 <= value < 1 else "coef"


def _add_hparam(work: _Work, rng: random.Random) -> str | None:
    """Add a hyperparameter and use it: a number of ``update`` becomes ``hp.<new>``, or one read
    of an existing hyperparameter reads a new one (a second beta), at a nearby value."""
    hp = work.hparams()
    hp_name = work.arg(work.update, 4)
    # Whole numbers stay literals: they may count steps or index a dimension (`size(x, 1)`).
    sites = [s for s in work.sites("update") if _is_code_number(s) and isinstance(s.node.value, float)
             or isinstance(s.node, ast.Attribute) and isinstance(s.node.value, ast.Name)
             and s.node.value.id == hp_name and s.node.attr in hp and s.node.attr != "lr"]
    if not sites:
        return None
    site = rng.choice(sites)
    old = _code(site.node)
    if isinstance(site.node, ast.Attribute):
        base = hp[site.node.attr]
        stem = _hparam_stem(site.node.attr, base)
    else:
        base = float(site.node.value)
        stem = _hparam_stem("", base)
    value = perturb_value(base, rng)
    key = work.add_hparam(stem, value)
    site.replace(_expr(f"{hp_name}.{key}"))
    return f"HPARAMS: added {key} = {_fmt(value)}, read at {_where(site.stmt, site.fn)} in place of {old}"


def _drop_state(work: _Work, rng: random.Random) -> str | None:
    """Remove a state variable: init no longer makes it, update no longer returns it, and its
    reads see zeros (a momentum that is dropped leaves the plain gradient)."""
    dicts = work.state_dicts()
    if dicts is None:
        return None
    state, param = work.arg(work.update, 2), work.arg(work.update, 1)
    reads = [n for n in ast.walk(work.update) if isinstance(n, ast.Subscript)
             and isinstance(n.value, ast.Name) and n.value.id == state]
    if sum(isinstance(n, ast.Name) and n.id == state for n in ast.walk(work.update)) != len(reads):
        return None  # `state` is used other than as state["key"]
    keys = work.state_keys()
    if not keys:
        return None
    key = rng.choice(keys)
    read_ids = {id(n) for n in reads}
    for d in dicts[0] + dicts[1]:
        kept = [(k, v) for k, v in zip(d.keys, d.values) if k.value != key]
        d.keys, d.values = [k for k, _ in kept], [v for _, v in kept]
    for site in _sites(work.update):
        if id(site.node) in read_ids and ast.literal_eval(site.node.slice) == key:
            site.replace(_expr(f"zeros_like({param})"))
    return f'state: dropped `{key}` (reads of {state}["{key}"] now see zeros)'


class Edit(NamedTuple):
    """One kind of random edit: how often it is drawn, and the function that applies it.

    ``apply(work, rng)`` changes the program in place and returns a description, or returns
    None, changing nothing, when the program has no place for this edit.
    """

    weight: float
    apply: Callable[[_Work, random.Random], str | None]


EDITS: dict[str, Edit] = {
    "perturb_constant": Edit(3.0, _perturb_constant),
    "replace_unary_op": Edit(2.0, _replace_unary_op),
    "replace_binary": Edit(2.0, _replace_binary),
    "replace_operand": Edit(2.0, _replace_operand),
    "wrap_expression": Edit(2.0, _wrap_expression),
    "insert_statement": Edit(1.5, _insert_statement),
    "delete_statement": Edit(1.5, _delete_statement),
    "simplify_expression": Edit(1.5, _simplify_expression),
    "add_state": Edit(1.0, _add_state),
    "add_hparam": Edit(1.0, _add_hparam),
    "swap_arguments": Edit(0.7, _swap_arguments),
    "drop_state": Edit(0.5, _drop_state),
}
"""Edit name -> :class:`Edit`. The names are what :attr:`Mutation.kinds` lists."""


# --- mutation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parent:
    source: str
    hash: str
    error_count: int


@functools.lru_cache(maxsize=256)
def _parent(source: str) -> _Parent:
    """The parent's hash and error count (cached: a campaign mutates the same parents often)."""
    try:
        validate(source)
    except CandidateError as exc:
        raise MutationError(f"the parent is not a valid program: {exc}") from None
    return _Parent(source, program_hash(source), len(_Work(source).errors()))


@functools.lru_cache(maxsize=1024)
def _checked_hash(source: str) -> str | None:
    """``program_hash`` of a valid program, None for an invalid one. Cached: a small program
    has few distinct one-edit children, and the same ones are drawn again and again."""
    try:
        validate(source)
        return program_hash(source)
    except CandidateError:
        return None


def _finish(work: _Work, parents: list[_Parent], docstring: str) -> tuple[str, str] | None:
    """The child's source and hash if it is sound, valid and new, else None."""
    if len(work.errors()) > min(p.error_count for p in parents):
        return None
    source = work.source(docstring)
    child_hash = _checked_hash(source)
    if child_hash is None or any(child_hash == p.hash for p in parents):
        return None
    return source, child_hash


def _apply_random_edit(work: _Work, rng: random.Random, weights: Mapping[str, float]) -> tuple[str, str] | None:
    """Apply one edit drawn by weight; an edit with no place in the program is set aside."""
    names = [name for name in EDITS if weights.get(name, EDITS[name].weight) > 0]
    while names:
        name = rng.choices(names, [weights.get(n, EDITS[n].weight) for n in names])[0]
        description = EDITS[name].apply(work, rng)
        if description is not None:
            return name, description
        names.remove(name)
    return None


def mutate(source: str, rng: random.Random, n_edits: int = 1, *, max_attempts: int = DEFAULT_ATTEMPTS,
           weights: Mapping[str, float] | None = None) -> Mutation:
    """A child of ``source`` made by ``n_edits`` random edits (see :data:`EDITS`).

    The child passes :func:`sandbox.contract.validate`, differs from its parent by
    ``program_hash``, and carries a one-line docstring listing the edits. ``weights`` overrides
    the registry's edit weights by name (0 disables an edit). Raises :class:`MutationError`
    when the parent is invalid or ``max_attempts`` random tries all failed.
    """
    if n_edits < 1:
        raise ValueError(f"n_edits must be at least 1, got {n_edits}")
    parent = _parent(source)
    weights = dict(weights or {})
    for attempt in range(1, max_attempts + 1):
        work = _Work(source)
        applied = []
        for _ in range(n_edits):
            step = _apply_random_edit(work, rng, weights)
            if step is None:
                break
            applied.append(step)
        if not applied:
            raise MutationError("no edit applies to this program")
        edits = [description for _, description in applied]
        child = _finish(work, [parent], "Mutant: " + "; ".join(edits) + ".")
        if child is not None:
            return Mutation(child[0], edits, [name for name, _ in applied], child[1], attempt)
    raise MutationError(f"no valid mutation found in {max_attempts} attempts")


# --- crossover -----------------------------------------------------------------------------


def _cross_hparams(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """The recipient's code with the donor's values for some shared hyperparameters."""
    mine, theirs = work.hparams(), donor.hparams()
    shared = [k for k in mine if k in theirs and mine[k] != theirs[k]]
    if not shared:
        return None
    chosen = [k for k in shared if rng.random() < 0.5] or [rng.choice(shared)]
    for key in chosen:
        work.set_hparam(key, theirs[key])
    changes = ", ".join(f"{k} {_fmt(mine[k])} -> {_fmt(theirs[k])}" for k in chosen)
    return f"crossover: {labels[0]} with {labels[1]}'s HPARAMS values ({changes})"


def _renamed(node: ast.AST, mapping: Mapping[str, str]) -> ast.AST:
    node = _strip_locations(copy.deepcopy(node))
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name) and sub.id in mapping:
            sub.id = mapping[sub.id]
    return node


def _hparams_available(work: _Work, donor: _Work, node: ast.AST, hp_name: str) -> bool:
    """Whether every hyperparameter ``node`` reads is in the recipient's or the donor's HPARAMS."""
    known = {**donor.hparams(), **work.hparams()}
    return all(sub.attr in known for sub in ast.walk(node) if isinstance(sub, ast.Attribute)
               and isinstance(sub.value, ast.Name) and sub.value.id == hp_name)


def _import_hparams(work: _Work, donor: _Work, node: ast.AST, hp_name: str) -> None:
    """Copy into ``work`` the donor's hyperparameters that ``node`` reads and ``work`` lacks."""
    mine, theirs = work.hparams(), donor.hparams()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == hp_name:
            if sub.attr not in mine and sub.attr in theirs:
                work.hparams_node.keys.append(ast.Constant(value=sub.attr))
                work.hparams_node.values.append(_number_node(theirs[sub.attr]))
                mine[sub.attr] = theirs[sub.attr]


def _cross_statement(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """One statement of the recipient's update (or its returned delta) taken from the donor,
    where both assign the same name and the donor's version reads only what is defined there."""
    mapping = {d.arg: r.arg for d, r in zip(donor.update.args.args, work.update.args.args)}
    analysis = work.analyse_update()
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    keys = work.state_keys()

    def assignments(w: _Work) -> list[tuple[str, ast.AST, str]]:
        body = w.update.body
        out = [(s.targets[0].id, s, "value") for s in body[:_return_index(body)]
               if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)]
        last = body[-1] if body else None
        if isinstance(last, ast.Return) and isinstance(last.value, ast.Tuple) and len(last.value.elts) == 2:
            out.append(("<delta>", last.value, "delta"))
        return out

    theirs: dict[str, list[ast.expr]] = {}
    for name, holder, slot in assignments(donor):
        value = holder.value if slot == "value" else holder.elts[0]
        theirs.setdefault(name, []).append(_renamed(value, mapping))
    options = []
    for name, holder, slot in assignments(work):
        stmt = holder if slot == "value" else work.update.body[-1]
        mine = holder.value if slot == "value" else holder.elts[0]
        _, defined = analysis.before[id(stmt)]
        for value in theirs.get(name, []):
            if ast.dump(value) == ast.dump(mine):
                continue
            reads_ok = all(n in defined or n in work.constants or n in (state, hp_name) or n in vocabulary.OPS
                           for n in _loads([value]))
            state_ok = all(ast.literal_eval(s.slice) in keys for s in ast.walk(value) if isinstance(s, ast.Subscript)
                           and isinstance(s.value, ast.Name) and s.value.id == state)
            if reads_ok and state_ok and _hparams_available(work, donor, value, hp_name):
                options.append((stmt, holder, slot, value))
    if not options:
        return None
    stmt, holder, slot, value = rng.choice(options)
    _import_hparams(work, donor, value, hp_name)
    old = _code(stmt if slot == "value" else holder.elts[0])
    if slot == "value":
        holder.value = value
    else:
        holder.elts[0] = value
    new = _code(stmt if slot == "value" else value)
    return f"crossover: {labels[0]} with {_where(stmt, work.update)} {old} replaced by {labels[1]}'s {new}"


def _single_return(fn: ast.FunctionDef) -> ast.Return | None:
    """The function's only return, when it is its last top-level statement."""
    returns = _returns(fn)
    if len(returns) == 1 and fn.body and fn.body[-1] is returns[0]:
        return returns[0]
    return None


def _is_step_return(ret: ast.Return) -> bool:
    """``return delta, {...}``: a tuple of an update and a state dict literal."""
    return isinstance(ret.value, ast.Tuple) and len(ret.value.elts) == 2 and isinstance(ret.value.elts[1], ast.Dict)


def _stored_names(fn: ast.FunctionDef) -> list[str]:
    names = [n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    return list(dict.fromkeys(names))


def _unclashed(name: str, taken: set[str]) -> str:
    """``name``, or ``name_b``, ``name_b2``... whichever is not taken yet; marks it taken."""
    new, number = name, 1
    while new in taken:
        new = f"{name}_b" if number == 1 else f"{name}_b{number}"
        number += 1
    taken.add(new)
    return new


def _cross_average(work: _Work, donor: _Work, rng: random.Random, labels: tuple[str, str]) -> str | None:
    """Run both parents' update rules side by side (the donor's clashing names and state keys
    renamed) and step by a weighted average of their updates; init makes both states. Shared
    hyperparameters keep the recipient's values; the donor's others are copied in."""
    mine_ret, their_ret = _single_return(work.update), _single_return(donor.update)
    mine_init, their_init = _single_return(work.init), _single_return(donor.init)
    if not (mine_ret and their_ret and mine_init and their_init and len(donor.init.body) == 1
            and _is_step_return(mine_ret) and _is_step_return(their_ret)
            and isinstance(mine_init.value, ast.Dict) and isinstance(their_init.value, ast.Dict)):
        return None
    my_params = [a.arg for a in work.update.args.args]
    donor_params = [a.arg for a in donor.update.args.args]
    if (any(name not in ("init", "update") for name in donor.functions)
            or any(name in my_params for name in _stored_names(work.update))
            or any(name in donor_params for name in _stored_names(donor.update))
            or any(work.constants.get(name, value) != value for name, value in donor.constants.items())):
        return None
    taken = work.taken()
    mapping = dict(zip(donor_params, my_params))
    for name in _stored_names(donor.update):
        mapping[name] = _unclashed(name, taken)
    taken_keys = set(work.state_keys())
    key_map = {key: _unclashed(key, taken_keys) for key in donor.state_keys()}
    state, hp_name = work.arg(work.update, 2), work.arg(work.update, 4)
    body = [_renamed(s, mapping) for s in donor.update.body[:-1] if not _is_docstring(s)]
    delta = _renamed(their_ret.value.elts[0], mapping)
    new_state = _renamed(their_ret.value.elts[1], mapping)
    for node in [*body, delta, new_state]:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Subscript) and isinstance(sub.value, ast.Name) and sub.value.id == state:
                key = ast.literal_eval(sub.slice)
                sub.slice = ast.Constant(value=key_map.get(key, key))
        if not _hparams_available(work, donor, node, hp_name):
            return None
        _import_hparams(work, donor, node, hp_name)
    at = next(i for i, s in enumerate(work.tree.body) if isinstance(s, ast.Assign)) + 1
    for name, value in donor.constants.items():
        if name not in work.constants:
            work.tree.body.insert(at, _stmt(f"{name} = {value!r}"))
            work.constants[name] = value
    init_param = {donor.arg(donor.init, 0): work.arg(work.init, 0)}
    for key, value in zip(their_init.value.keys, their_init.value.values):
        mine_init.value.keys.append(ast.Constant(value=key_map[key.value]))
        mine_init.value.values.append(_renamed(value, init_param))
    mine_state = mine_ret.value.elts[1]
    for key, value in zip(new_state.keys, new_state.values):
        mine_state.keys.append(ast.Constant(value=key_map[key.value]))
        mine_state.values.append(value)
    weight = rng.choice((0.5, 0.5, 0.25, 0.75))
    mine_ret.value.elts[0] = ast.Call(func=ast.Name(id="interp", ctx=ast.Load()),
                                      args=[mine_ret.value.elts[0], delta, ast.Constant(value=weight)], keywords=[])
    work.update.body[-1:-1] = body
    return (f"crossover: {labels[0]}'s and {labels[1]}'s update rules side by side, stepping by "
            f"{_fmt(1 - weight)} x {labels[0]}'s update + {_fmt(weight)} x {labels[1]}'s")


class Crossover(NamedTuple):
    """One way to combine two parents: ``apply(recipient, donor, rng, labels)`` edits the
    recipient in place and describes it, or returns None when the pair gives it nothing to do."""

    weight: float
    apply: Callable[[_Work, _Work, random.Random, tuple[str, str]], str | None]


CROSSOVERS: dict[str, Crossover] = {
    "hparams": Crossover(1.0, _cross_hparams),
    "statement": Crossover(2.0, _cross_statement),
    "average": Crossover(1.0, _cross_average),
}
"""Crossover name -> :class:`Crossover`; :attr:`Mutation.kinds` lists ``crossover_<name>``."""


def crossover(a: str, b: str, rng: random.Random, *, max_attempts: int = 20) -> Mutation:
    """A child that combines parents ``a`` and ``b`` (see :data:`CROSSOVERS`): the donor's
    hyperparameter values, a statement, or both update rules averaged. Either parent may be the
    recipient. The child is valid and differs from both parents; raises :class:`MutationError`
    if no combination of these two parents gives one.
    """
    parents = [_parent(a), _parent(b)]
    if parents[0].hash == parents[1].hash:
        raise MutationError("the two parents are the same program; crossover needs two different ones")
    options = [(name, flip) for name in CROSSOVERS for flip in (False, True)]
    attempt = 0
    while options and attempt < max_attempts:
        name, flip = rng.choices(options, [CROSSOVERS[n].weight for n, _ in options])[0]
        recipient, donor, labels = (b, a, ("B", "A")) if flip else (a, b, ("A", "B"))
        work = _Work(recipient)
        description = CROSSOVERS[name].apply(work, _Work(donor), rng, labels)
        if description is None:  # nothing to do for this pair this way round: never try it again
            options.remove((name, flip))
            continue
        attempt += 1
        child = _finish(work, parents, f"Crossover of A and B: {description.removeprefix('crossover: ')}.")
        if child is not None:
            return Mutation(child[0], [description], [f"crossover_{name}"], child[1], attempt)
    raise MutationError("no valid crossover of these two programs was found")
