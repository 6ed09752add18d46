"""Export a candidate program as a standalone ``torch.optim.Optimizer`` module.

The generated module imports only torch. It holds, in order:

1. the source of the vocabulary ops the program calls (and their private helpers), copied from
   :mod:`sandbox.vocabulary` with ``inspect.getsource``;
2. the program itself, exactly as :func:`sandbox.contract.load_program` runs it (``x += y`` is
   spelled ``x = x + y``, which is what the sandbox executes);
3. an ``Optimizer`` subclass: one constructor keyword per HPARAMS key, per-group hyperparameters,
   lazy per-parameter state (the program's state tensors plus an int ``step``), closures,
   ``state_dict``/``load_state_dict`` and LR schedulers (``group["lr"]`` is ``hp.lr``).

Because the ops and the rule are the same code the sandbox ran, and the wrapper only applies
``param.add_(delta)``, an exported optimizer reproduces the sandbox's numbers bit for bit. When
a taint analysis proves the rule elementwise and built from ops that round the same wherever an
element sits (:data:`POSITION_INDEPENDENT_OPS`), the class also gets a flattened path that runs the
rule once over same-dtype parameters concatenated (fewer kernel launches; same bits).

:func:`load_optimizer` resolves a program by file path, reference name or archive reference
(``campaign_dir:ID``) through a small registry of source resolvers, and returns the class.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import keyword
import re
import statistics
import textwrap
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from archive.resolve import parse_program_ref, resolve_program
from archive.store import ArchiveError, open_archive
from sandbox import vocabulary
from sandbox.contract import executable_module, first_doc_line, load_program, parse_ast, program_hash
from sandbox.references import reference_names, reference_source

DEFAULT_CLASS_NAME = "DiscoveredOptimizer"
EXPORT_MARKER = "a torch.optim optimizer exported by optimizer-discovery"
"""The first line of every exported module's docstring carries this; it is how one is recognised."""


class ExportError(ValueError):
    """A program cannot be found or exported as asked (unknown id, unreadable file, bad name)."""


# --- where programs come from ------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedSource:
    """A program's source and the name its exported class is derived from."""

    source: str
    name: str
    origin: str  # for messages: a path, "reference adamw", "campaigns/x:12"
    evidence: str = ""  # what a campaign measured for an archived program (see campaign_evidence)


SourceResolver = Callable[[str], "ResolvedSource | None"]
"""Turns a user's reference into a program, or returns None when the reference is not its kind."""

_RESOLVERS: dict[str, SourceResolver] = {}


def register_source_resolver(kind: str, resolver: SourceResolver) -> None:
    """Add (or replace) a way to find programs; resolvers are tried in registration order."""
    _RESOLVERS[kind] = resolver


def _resolve_file(ref: str) -> ResolvedSource | None:
    path = Path(ref).expanduser()
    if not path.exists():
        if ref.endswith(".py"):
            raise ExportError(f"{ref}: no such file")
        return None
    if not path.is_file():
        raise ExportError(f"{ref} is a directory, not a candidate program file")
    try:
        source = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ExportError(f"{ref} is not a text file (expected a candidate program in Python)") from None
    if is_exported_module(source):
        raise ExportError(f"{ref} is an optimizer module `discover export` wrote, not a candidate program: "
                          "import it (or pass it to load_optimizer), or export the candidate program it came from")
    return ResolvedSource(source=source, name=path.stem, origin=str(path))


def is_exported_module(text: str) -> bool:
    """Whether ``text`` is a module :func:`export_source` wrote (its docstring's first line says so)."""
    return EXPORT_MARKER in first_doc_line(text)


def _resolve_reference(ref: str) -> ResolvedSource | None:
    if ref not in reference_names():
        return None
    return ResolvedSource(source=reference_source(ref), name=ref, origin=f"reference {ref}")


def _resolve_archived(ref: str) -> ResolvedSource | None:
    if ":" not in ref and not ref.strip().isdigit() and ref.strip() != "best":
        return None
    try:
        parse_program_ref(ref, default_dir=".")  # syntax only: DIR:ID, ID or best
    except ArchiveError:
        return None
    try:
        found = resolve_program(ref)
    except ArchiveError as exc:
        raise ExportError(str(exc)) from None
    # an archived program may carry a name of its own; otherwise name the class by its id
    name = found.name if found.name and ":" not in found.name else f"program_{found.program_id}"
    return ResolvedSource(source=found.source, name=name, origin=f"{found.campaign_dir}:{found.program_id}",
                          evidence=campaign_evidence(found.campaign_dir, found.program_id))


def campaign_evidence(campaign_dir: Path, program_id: int) -> str:
    """What the campaign measured for a program, for the exported module's docstring: its
    fitness on the search suite, on fresh seeds and on the held-out suite, and each task's tuned
    learning rate beside tuned AdamW's (so a user knows where to start ``lr``). Empty for a
    program that was never scored."""
    with open_archive(campaign_dir, readonly=True) as store:
        record = store.program(program_id)
        adamw = next((r for r in store.programs(status="evaluated")
                      if r.proposer == "reference" and r.name == "adamw"), None)
    if record.status != "evaluated" or record.fitness is None:
        return ""
    lines = [f"Measured in campaign {Path(campaign_dir).resolve().name}, program #{program_id}",
             "(fitness: geometric-mean speed-up over tuned AdamW; 1.0 = as fast in the same steps):",
             f"    search suite    {record.fitness:.3f} ± {record.fitness_spread or 0:.3f}"
             + (f"; on fresh seeds {record.confirmed_fitness:.3f} ± {record.meta.get('confirmed_spread') or 0:.3f}"
                if record.confirmed_fitness is not None else "")]
    if record.heldout_fitness is not None:
        lines.append(f"    held-out suite  {record.heldout_fitness:.3f} ± {record.meta.get('heldout_spread') or 0:.3f}"
                     " (tasks the search never saw)")
    rows = []
    for suite, own, base in (
            ("search", record.scores, adamw.scores if adamw else None),
            ("held-out", record.meta.get("heldout_scores"), adamw.meta.get("heldout_scores") if adamw else None)):
        for task, entry in sorted((own or {}).items()):
            lr, base_lr = entry.get("best_lr"), ((base or {}).get(task) or {}).get("best_lr")
            if isinstance(lr, (int, float)) and isinstance(base_lr, (int, float)) and lr > 0 and base_lr > 0:
                rows.append((suite, task, float(entry.get("score") or 0.0), lr, base_lr))
    if rows:
        lines += ["", "Per task: speed-up over tuned AdamW, this rule's tuned learning rate, AdamW's:"]
        lines += [f"    {suite:<9} {task:<22} {score:5.2f}x   lr {lr:<8.3g} AdamW {base_lr:.3g}"
                  for suite, task, score, lr, base_lr in rows]
        ratio = statistics.median(lr / base_lr for *_, lr, base_lr in rows)
        lines += [f"Median learning-rate ratio to AdamW: {ratio:.2g}. Start from about {ratio:.2g}x the",
                  "learning rate you use with AdamW, then tune it."]
    return "\n".join(lines)


register_source_resolver("file", _resolve_file)
register_source_resolver("reference", _resolve_reference)
register_source_resolver("archive", _resolve_archived)


def resolve_source(path_or_id: str) -> ResolvedSource:
    """The program ``path_or_id`` names: a candidate file, a reference name (``adamw``) or an
    archived program (``campaign_dir:ID``); :class:`ExportError` when none matches."""
    for resolver in _RESOLVERS.values():
        found = resolver(path_or_id)
        if found is not None:
            return found
    raise ExportError(f"{path_or_id!r}: no such candidate file, reference optimizer "
                      f"({', '.join(reference_names())}) or archived program (campaign_dir:ID)")


# --- generating the module -----------------------------------------------------------------------

# The wrapper below refers to these module-level names; a program's own top-level names that
# collide with them (or with anything the copied ops refer to) are renamed in the export.
_WRAPPER = """
class _HParams:
    \"\"\"One parameter group's hyperparameters as attributes (``hp.lr``, ``hp.beta1``, ...).\"\"\"

    def __init__(self, group):
        for name in HPARAMS:
            setattr(self, name, float(group[name]))


def _own(tensor, param, grad):
    # The rule is pure, but it may hand back `param` or `grad` themselves (e.g. a state that
    # remembers the last gradient). Those tensors change in place later (param.add_, backward
    # into an existing grad), so keep a private copy, as the sandbox's functional loop implies.
    storage = tensor.untyped_storage().data_ptr()
    if storage == param.untyped_storage().data_ptr() or storage == grad.untyped_storage().data_ptr():
        return tensor.clone()
    return tensor


class {class_name}(torch.optim.Optimizer):
    \"\"\"{class_doc}\"\"\"
{flat_attributes}
    def __init__(
        self,
        params,
{signature}
    ):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {{lr}}")
        defaults = {{
{defaults}
        }}
        super().__init__(params, defaults)

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        for param in self.param_groups[-1]["params"]:
            if torch.is_complex(param):
                raise ValueError("{class_name} does not support complex parameters; "
                                 "optimize torch.view_as_real(param) instead")
            if not param.is_floating_point():
                raise ValueError(f"{class_name} optimizes floating-point parameters, got {{param.dtype}}")

    @torch.no_grad()
    def step(self, closure=None):
        \"\"\"Perform one optimization step: ``param += delta`` for every parameter with a grad.

        Args:
            closure (Callable, optional): re-evaluates the model and returns the loss.
        \"\"\"
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            hp = _HParams(group)
            params = []
            for param in group["params"]:
                if param.grad is None:
                    continue
                if param.grad.is_sparse:
                    raise RuntimeError("{class_name} does not support sparse gradients")
                if len(self.state[param]) == 0:
                    self.state[param].update(self._initial_state(param))
                params.append(param)
{dispatch}
        return loss

    def _step_param(self, param, hp):
        # The reference loop: one call of the rule per parameter, as the sandbox runs it.
        grad, state = param.grad, self.state[param]
        state["step"] += 1
        rule_state = {{key: value for key, value in state.items() if key != "step"}}
        delta, new_state = update(grad, param, rule_state, state["step"], hp)
        if new_state.keys() != rule_state.keys():
            raise RuntimeError(f"update returned state keys {{sorted(new_state)}}, but init made {{sorted(rule_state)}}")
        if delta.shape != param.shape:
            raise RuntimeError(f"update's delta has shape {{tuple(delta.shape)}}, param has {{tuple(param.shape)}}")
        for key, value in new_state.items():
            state[key] = _own(value, param, grad)
        param.add_(_own(delta, param, grad))

    @staticmethod
    def _initial_state(param):
        state = init(param)
        if "step" in state:
            raise RuntimeError("the update rule's state has a key 'step', which the optimizer "
                               "keeps for its own step count; rename it in the program")
        return {{"step": 0, **{{key: _own(value, param, param) for key, value in state.items()}}}}
{flat_methods}"""

_DISPATCH_PER_PARAM = """\
            for param in params:
                self._step_param(param, hp)"""

_DISPATCH_FLAT = """\
            for bucket in self._buckets(params):
                if len(bucket) == 1 or not self._step_flat(bucket, hp):
                    for param in bucket:
                        self._step_param(param, hp)"""

_FLAT_ATTRIBUTES = """
    # The rule is elementwise and uses only ops that round the same wherever an element sits, so
    # it may run once over a concatenation of same-dtype parameters with the same bits as running
    # it parameter by parameter. That saves kernel launches on GPUs and calls on small CPU
    # tensors. Every temporary of the rule is as large as the concatenation, so one holds at most
    # `flat_max_numel` entries, and on CPU at most `flat_cpu_numel` (temporaries that stay in
    # cache; larger CPU tensors keep the per-parameter loop). `flatten = False` always loops.
    flatten = True
    flat_cpu_numel = 2 ** 18
    flat_max_numel = 2 ** 25
"""

_FLAT_METHODS = """
    def _buckets(self, params):
        # Parameters that can share one call of the rule: same device, dtype and step count,
        # contiguous, with state tensors shaped like the parameter. Any other goes alone.
        buckets = {{}}
        for param in params:
            state = self.state[param]
            key = (param.device, param.dtype, state["step"], tuple(state))
            fits = self.flatten and param.is_contiguous() and param.grad.is_contiguous() and \\
                param.grad.dtype == param.dtype and all(
                    value.shape == param.shape and value.dtype == param.dtype and value.is_contiguous()
                    for name, value in state.items() if name != "step")
            small = param.device.type != "cpu" or param.numel() < self.flat_cpu_numel
            buckets.setdefault(key if fits and small else id(param), []).append(param)
        # cap each concatenation: every temporary of the rule is as large as the bucket
        capped = []
        for bucket in buckets.values():
            cap = self.flat_cpu_numel if bucket[0].device.type == "cpu" else self.flat_max_numel
            capped.append([])
            numel = 0
            for param in bucket:
                if capped[-1] and numel + param.numel() > cap:
                    capped.append([])
                    numel = 0
                capped[-1].append(param)
                numel += param.numel()
        return capped

    def _step_flat(self, bucket, hp):
        # One call of the rule over the concatenated parameters; False (nothing changed) when
        # its output is not shaped like its input, so the caller takes the per-parameter loop.
        states = [self.state[param] for param in bucket]
        keys = [key for key in states[0] if key != "step"]
        flat_param = torch.cat([param.view(-1) for param in bucket])
        flat_grad = torch.cat([param.grad.view(-1) for param in bucket])
        flat_state = {{key: _tiled([state[key] for state in states]) for key in keys}}
        step = states[0]["step"] + 1
        delta, new_state = update(flat_grad, flat_param, flat_state, step, hp)
        if delta.shape != flat_param.shape or new_state.keys() != flat_state.keys() or not all(
                value.shape == flat_param.shape and value.dtype == flat_param.dtype for value in new_state.values()):
            return False
        deltas, start = [], 0
        for param, state in zip(bucket, states):
            stop = start + param.numel()
            state["step"] = step
            for key in keys:
                # views of the new flat state: next step finds them tiled and skips the copy
                state[key] = new_state[key][start:stop].view_as(param)
            deltas.append(delta[start:stop].view_as(param))
            start = stop
        torch._foreach_add_(bucket, deltas)
        return True


def _tiled(tensors):
    # The 1-D tensor that `tensors` tile end to end when they are consecutive views of one
    # buffer (as _step_flat leaves them), else their concatenation.
    first = tensors[0]
    offset = first.storage_offset()
    for tensor in tensors:
        if tensor.untyped_storage().data_ptr() != first.untyped_storage().data_ptr() or \\
                tensor.storage_offset() != offset or not tensor.is_contiguous():
            return torch.cat([tensor.view(-1) for tensor in tensors])
        offset += tensor.numel()
    return first.as_strided((offset - first.storage_offset(),), (1,), first.storage_offset())
"""

_WRAPPER_LOCAL_NAMES = {"self", "params", "super", "defaults"}  # HPARAMS keys may not shadow these in __init__


def export_source(source: str, class_name: str | None = None, evidence: str = "") -> str:
    """A standalone Python module (text) defining ``class_name`` as a torch optimizer that runs
    the candidate ``source`` (``evidence``: what a campaign measured, for the docstring); raises
    ``CandidateError`` for an invalid program and :class:`ExportError` for a class name or HPARAMS
    key that cannot be used."""
    program = load_program(source)  # validates; the text below is built from the same tree
    class_name = class_name or DEFAULT_CLASS_NAME
    if not class_name.isidentifier() or keyword.iskeyword(class_name) or class_name.startswith("_"):
        raise ExportError(f"class name {class_name!r} is not a valid Python class name")
    clashes = sorted(set(program.hparams) & _WRAPPER_LOCAL_NAMES)
    if clashes:
        raise ExportError(f"HPARAMS key(s) {', '.join(clashes)} cannot be constructor arguments; rename them")

    ops = _ops_needed(program.ops_used)
    op_text = "\n\n\n".join(inspect.getsource(fn).strip() for fn in ops.values())
    flat = _position_independent(executable_module(source))
    wrapper = _WRAPPER.format(
        class_name=class_name,
        flat_attributes=_FLAT_ATTRIBUTES if flat else "",
        dispatch=_DISPATCH_FLAT if flat else _DISPATCH_PER_PARAM,
        flat_methods=_FLAT_METHODS.format() if flat else "",
        class_doc=_class_doc(program.doc, program.hparams),
        signature="\n".join(f"        {key}={value!r}," for key, value in program.hparams.items()),
        defaults="\n".join(f"            {key!r}: {key}," for key in program.hparams),
    )
    reserved = {"torch", class_name} | _names_in(op_text) | _names_in(wrapper) | set(dir(builtins))
    rule_text = _rule_text(source, reserved).strip()

    header = _module_doc(class_name, program.doc, program_hash(source), program.hparams["lr"], evidence)
    sections = [
        header,
        "import torch",
        _banner("vocabulary ops the rule uses (copied from sandbox/vocabulary.py)") + "\n\n" + op_text
        if op_text else "",
        _banner("the update rule, as the discovery sandbox runs it") + "\n\n" + rule_text,
        _banner("torch.optim wrapper") + "\n" + wrapper.rstrip(),
    ]
    return "\n\n\n".join(s for s in sections if s) + "\n"


# Ops whose every output element is one correctly rounded operation (or a selection) on the
# inputs' elements at the same position. torch's vectorised and scalar code paths agree on these,
# so running them over a concatenation gives the same bits as running them tensor by tensor.
# Transcendentals (exp, log, tanh, sigmoid, rsqrt, power) are left out: their vectorised and
# scalar implementations may round differently, and concatenating moves elements between paths.
POSITION_INDEPENDENT_OPS = frozenset({
    "abs", "sign", "sqrt", "square", "relu", "clamp", "maximum", "minimum", "where", "interp",
    "zeros_like", "ones_like", "full_like",
})
# fine on numbers; on tensors they are shape-dependent (@) or, like power, may round differently
# in vectorised and scalar code
_UNSAFE_TENSOR_BINOPS = (ast.Pow, ast.Mod, ast.FloorDiv, ast.MatMult)


def _position_independent(tree: ast.Module) -> bool:
    """Whether the rule gives the same bits on a concatenation of parameters as on each one.

    A taint analysis marks what may be a tensor: the arguments grad, param and state of update
    (param of init), a helper's arguments wherever a call passes it a tensor, and anything
    computed from those. The rule qualifies when tensors only meet :data:`POSITION_INDEPENDENT_OPS`
    and + - * / and comparisons, and never decide Python control flow (``if``, ``and``/``or``/
    ``not``) or get indexed; numbers (``step``, ``hp.*``, constants, bias corrections) may do
    anything.
    """
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    tainted = {name: set() for name in functions}
    tainted["update"] |= {a.arg for a in functions["update"].args.args[:3]}
    tainted["init"] |= {a.arg for a in functions["init"].args.args}
    changed = True
    while changed:  # to a fixed point: loops, branches and helper calls may come in any order
        changed = False
        for name, fn in functions.items():
            for node in ast.walk(fn):
                found: list[tuple[str, set[str]]] = []
                if isinstance(node, ast.Assign) and _uses(node.value, tainted[name]):
                    found += [(n.id, tainted[name]) for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in functions:
                    params = [a.arg for a in functions[node.func.id].args.args]
                    passed = list(zip(params, node.args)) + [(k.arg, k.value) for k in node.keywords]
                    found += [(p, tainted[node.func.id]) for p, arg in passed if _uses(arg, tainted[name])]
                for var, into in found:
                    if var not in into:
                        into.add(var)
                        changed = True
    return all(_tensors_stay_in_place(fn, tainted[name], set(functions)) for name, fn in functions.items())


def _uses(expr: ast.AST, names: set[str]) -> bool:
    return any(isinstance(node, ast.Name) and node.id in names for node in ast.walk(expr))


def _tensors_stay_in_place(fn: ast.FunctionDef, tainted: set[str], helpers: set[str]) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in helpers:
            arguments = [*node.args, *(k.value for k in node.keywords)]
            if node.func.id not in POSITION_INDEPENDENT_OPS and any(_uses(a, tainted) for a in arguments):
                return False
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _UNSAFE_TENSOR_BINOPS):
            if _uses(node.left, tainted) or _uses(node.right, tainted):
                return False
        elif isinstance(node, (ast.If, ast.IfExp)) and _uses(node.test, tainted):
            return False
        elif isinstance(node, ast.BoolOp) and any(_uses(v, tainted) for v in node.values):
            return False
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not) and _uses(node.operand, tainted):
            return False
        elif isinstance(node, ast.Subscript) and _uses(node.value, tainted):
            key = node.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                return False
    return True


def _ops_needed(direct: frozenset[str]) -> dict[str, Callable]:
    """The ops (and private helpers) the program needs, closed over ops calling ops."""
    available = {**vocabulary.HELPERS, **vocabulary.OPS}
    needed: set[str] = set()
    todo = list(direct)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        todo.extend(n for n in _names_in(inspect.getsource(available[name])) if n in available and n != name)
    # helpers first, then ops in vocabulary order: stable text, definitions before use
    return {name: fn for name, fn in available.items() if name in needed}


def _names_in(text: str) -> set[str]:
    tree = parse_ast(textwrap.dedent(text))
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}


def _rule_text(source: str, reserved: set[str]) -> str:
    """The program's code (without its module docstring) as the sandbox executes it.

    Where possible this is the original text with each ``x op= y`` rewritten in place, so
    comments and layout survive; a program whose top-level names collide with the module's
    other names gets them renamed and is printed from the syntax tree instead. Either way the
    result parses to exactly the tree :func:`sandbox.contract.load_program` executes.
    """
    executed = executable_module(source)
    if executed.body and _is_docstring(executed.body[0]):
        executed.body = executed.body[1:]
    top_level = {node.name for node in executed.body if isinstance(node, ast.FunctionDef)} | {
        target.id for node in executed.body if isinstance(node, ast.Assign)
        for target in node.targets if isinstance(target, ast.Name)}
    collisions = sorted(top_level & reserved - {"HPARAMS", "init", "update"})
    if collisions:
        taken = reserved | {node.id for node in ast.walk(executed) if isinstance(node, ast.Name)}
        renames = {}
        for name in collisions:
            new = f"{name}_rule"
            while new in taken:
                new += "_"
            taken.add(new)
            renames[name] = new
        executed = _Rename(renames).visit(executed)
        return ast.unparse(executed)
    text = _rewrite_in_place(source)
    if text is not None and ast.dump(parse_ast(text)) == ast.dump(executed):
        return text
    return ast.unparse(executed)


def _rewrite_in_place(source: str) -> str | None:
    """The source with its docstring dropped and every augmented assignment spelled out."""
    tree = parse_ast(source)
    edits = []  # (start line, start col, end line, end col, replacement), 1-based lines
    if tree.body and _is_docstring(tree.body[0]):
        doc = tree.body[0]
        edits.append((doc.lineno, doc.col_offset, doc.end_lineno, doc.end_col_offset, ""))
    for node in ast.walk(tree):
        if isinstance(node, ast.AugAssign):
            if node.lineno != node.end_lineno:
                return None  # a statement over several lines: let the tree printer lay it out
            spelled = ast.Assign(targets=[node.target], value=ast.BinOp(
                ast.Name(id=node.target.id, ctx=ast.Load()), node.op, node.value))
            edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset,
                          ast.unparse(ast.fix_missing_locations(spelled))))
    lines = source.splitlines(keepends=True)
    for start, col, end, end_col, text in sorted(edits, reverse=True):
        head = _utf8_prefix(lines[start - 1], col)
        tail = _utf8_suffix(lines[end - 1], end_col)
        lines[start - 1:end] = [head + text + tail]
    return "".join(lines).strip("\n") + "\n"


def _utf8_prefix(line: str, byte_col: int) -> str:
    # ast columns are UTF-8 byte offsets
    return line.encode("utf-8")[:byte_col].decode("utf-8")


def _utf8_suffix(line: str, byte_col: int) -> str:
    return line.encode("utf-8")[byte_col:].decode("utf-8")


class _Rename(ast.NodeTransformer):
    def __init__(self, renames: dict[str, str]):
        self.renames = renames

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.renames.get(node.id, node.id)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.name = self.renames.get(node.name, node.name)
        for arg in node.args.args:
            arg.arg = self.renames.get(arg.arg, arg.arg)
        self.generic_visit(node)
        return node


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _banner(title: str) -> str:
    return f"# --- {title} " + "-" * max(3, 96 - len(title) - 7)


def _module_doc(class_name: str, doc: str, digest: str, lr: float, evidence: str = "") -> str:
    about = textwrap.indent(doc.strip(), "    ") if doc.strip() else "    (the program has no docstring)"
    text = f'''{class_name}: {EXPORT_MARKER} (program {digest}).

The update rule:

{about}

This file imports only torch. The rule is the candidate program exactly as the discovery sandbox
ran it, preceded by the vocabulary ops it calls, so the optimizer reproduces the sandbox's numbers.

Usage (with this file saved as my_opt.py):
    from my_opt import {class_name}
    optimizer = {class_name}(model.parameters(), lr={lr!r})
    loss.backward(); optimizer.step(); optimizer.zero_grad()
'''
    if evidence:
        text += "\n" + evidence.rstrip() + "\n"
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def _class_doc(doc: str, hparams: dict[str, float]) -> str:
    first = doc.strip().splitlines()[0] if doc.strip() else "An optimizer found by optimizer-discovery."
    lines = [first.replace("\\", "\\\\").replace('"""', "'''"), "", "    Args:",
             "        params (iterable): parameters to optimize, or dicts defining parameter groups."]
    lines += [f"        {key} (float, optional): default {value!r}." for key, value in hparams.items()]
    lines.append("    ")
    return "\n".join(lines)


# --- loading --------------------------------------------------------------------------------------


_REFERENCE_CLASS_NAMES = {
    "adadelta": "Adadelta", "adagrad": "Adagrad", "adam": "Adam", "adamw": "AdamW", "ademamix": "AdEMAMix",
    "amsgrad": "AMSGrad", "lion": "Lion", "muon": "Muon", "nadam": "NAdam", "nesterov": "Nesterov",
    "rmsprop": "RMSprop", "sgd": "SGD", "sgd_momentum": "SGDMomentum", "signsgd": "SignSGD", "signum": "Signum",
}


def _import_exported(path: Path) -> type[torch.optim.Optimizer]:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = [value for value in vars(module).values() if isinstance(value, type)
             and issubclass(value, torch.optim.Optimizer) and value.__module__ == module.__name__]
    if len(found) != 1:
        raise ExportError(f"{path}: expected one torch.optim.Optimizer class in the module, found {len(found)}")
    return found[0]


def class_name_for(name: str) -> str:
    """A class name from a program name: ``adamw`` -> ``AdamW``, ``my_rule`` -> ``MyRule``."""
    if name in _REFERENCE_CLASS_NAMES:
        return _REFERENCE_CLASS_NAMES[name]
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    if not camel or not camel[0].isalpha():
        camel = "Optimizer" + camel
    return camel


def load_optimizer(path_or_id: str) -> type[torch.optim.Optimizer]:
    """The optimizer class for a candidate file, a reference name (``"adamw"``) or an archived
    program (``"campaign_dir:ID"``), built from :func:`export_source`'s module text; or the class
    of a module ``discover export`` already wrote (such as ``results/winner.py``), imported."""
    path = Path(path_or_id).expanduser()
    if path.suffix == ".py" and path.is_file():
        try:
            exported = is_exported_module(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            exported = False
        if exported:
            return _import_exported(path)
    found = resolve_source(path_or_id)
    class_name = class_name_for(found.name)
    text = export_source(found.source, class_name, found.evidence)
    module = types.ModuleType(f"exported_{class_name.lower()}", f"Exported from {found.origin}")
    exec(compile(text, f"<exported {found.origin}>", "exec"), module.__dict__)
    return getattr(module, class_name)
