"""Export a candidate program as a standalone ``torch.optim.Optimizer`` module.

The generated module imports only torch. It holds, in order:

1. the source of the vocabulary ops the program calls (and their private helpers), copied from
   :mod:`sandbox.vocabulary` with ``inspect.getsource``;
2. the program itself, exactly as :func:`sandbox.contract.load_program` runs it (``x += y`` is
   spelled ``x = x + y``, which is what the sandbox executes; :mod:`archive.export_rule_text`);
3. an ``Optimizer`` subclass (:mod:`archive.export_template`): one constructor keyword per HPARAMS
   key (and ``betas``, ``maximize``, ``foreach``), validated as torch.optim validates its own,
   per-group hyperparameters, a tensor step counter, closures, state_dict, LR schedulers, complex
   parameters, torch.compile, and an elementwise fast path where :mod:`archive.export_analysis`
   proves the rule position-independent.

Because the ops and the rule are the same code the sandbox ran, and the wrapper only applies
``param.add_(delta)``, an exported optimizer reproduces the sandbox's numbers bit for bit on the
CPU (float hyperparameters, eager mode). The docstrings (:mod:`archive.export_docs`) say what
the rule does in plain words, its maths, what a campaign measured and, for a campaign's
program, the measured step cost next to AdamW (:mod:`archive.export_step_cost`).

:func:`load_optimizer` resolves a program by file path, reference name or archive reference
(``campaign_dir:ID``) through the resolvers of :mod:`archive.export_sources`, and returns the class.
"""

from __future__ import annotations

import builtins
import hashlib
import importlib.util
import inspect
import keyword
import sys
import types
from pathlib import Path

import torch

from archive.export_analysis import (  # noqa: F401 (re-exported: callers import them from here)
    MATRIX_OPS,
    POSITION_INDEPENDENT_OPS,
    _position_independent,
    complex_refusal,
    names_in,
    ops_needed,
    position_independent,
)
from archive.export_docs import class_doc, module_doc
from archive.export_naming import class_name_for, descriptive_name  # noqa: F401
from archive.export_rule_text import rule_text
from archive.export_sources import (  # noqa: F401
    _RESOLVERS,
    EXPORT_MARKER,
    ExportError,
    ResolvedSource,
    campaign_evidence,
    is_exported_module,
    register_source_resolver,
    resolve_source,
)
from archive.export_step_cost import measure_step_cost, step_cost_note
from archive.export_template import WRAPPER_NAMES, render_wrapper
from sandbox.contract import executable_module, load_program, program_hash

DEFAULT_CLASS_NAME = "DiscoveredOptimizer"


def _banner(title: str) -> str:
    return f"# --- {title} " + "-" * max(3, 96 - len(title) - 7)


def export_source(source: str, class_name: str | None = None, evidence: str = "",
                  step_cost: bool | None = None) -> str:
    """A standalone Python module (text) defining ``class_name`` as a torch optimizer that runs
    the candidate ``source``. ``evidence``: what a campaign measured, for the docstring;
    ``step_cost``: measure one step against torch AdamW for the docstring (about a second; by
    default only with evidence, i.e. for a campaign's program). Raises ``CandidateError`` for an
    invalid program and :class:`ExportError` for a class name or HPARAMS key that cannot be used."""
    program = load_program(source)  # validates; the text below is built from the same tree
    class_name = class_name or DEFAULT_CLASS_NAME
    if not class_name.isidentifier() or keyword.iskeyword(class_name) or class_name.startswith("_"):
        raise ExportError(f"class name {class_name!r} is not a valid Python class name")
    clashes = sorted(set(program.hparams) & WRAPPER_NAMES)
    if clashes:
        raise ExportError(f"HPARAMS key(s) {', '.join(clashes)} cannot be constructor arguments; rename them")

    ops = ops_needed(program.ops_used)
    op_text = "\n\n\n".join(inspect.getsource(fn).strip() for fn in ops.values())
    fast = position_independent(executable_module(source))
    refusal = complex_refusal(program.ops_used)
    batched = bool(program.ops_used & MATRIX_OPS) and not fast
    wrapper = render_wrapper(class_name, class_doc(program.doc, source, program.hparams), program.hparams,
                             fast, refusal, batched=batched)
    reserved = {"torch", class_name} | names_in(op_text) | names_in(wrapper) | set(dir(builtins))
    rule = rule_text(source, reserved).strip()

    def module(cost: str) -> str:
        header = module_doc(class_name, source, program.doc, program_hash(source), program.hparams, refusal,
                            fast, evidence, cost, batched)
        sections = [
            header,
            "import torch",
            _banner("vocabulary ops the rule uses (copied from sandbox/vocabulary.py)") + "\n\n" + op_text
            if op_text else "",
            _banner("the update rule, as the discovery sandbox runs it") + "\n\n" + rule,
            _banner("torch.optim wrapper") + "\n" + wrapper.rstrip(),
        ]
        return "\n\n\n".join(s for s in sections if s) + "\n"

    text = module("")
    if step_cost if step_cost is not None else bool(evidence):
        text = module(step_cost_note(measure_step_cost(_class_from_text(text, class_name, "<step cost>"))))
    return text


def _class_from_text(text: str, class_name: str, origin: str) -> type[torch.optim.Optimizer]:
    # Registered in sys.modules, as an import would be: torch.compile looks the class's module up
    # by name. The name carries the text's digest, so two different exports never share one.
    name = f"exported_{class_name.lower()}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name, f"Exported from {origin}")
        exec(compile(text, f"<exported {origin}>", "exec"), module.__dict__)
        sys.modules[name] = module
    return getattr(module, class_name)


def _import_exported(path: Path) -> type[torch.optim.Optimizer]:
    spec = importlib.util.spec_from_file_location(f"exported_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = [value for value in vars(module).values() if isinstance(value, type)
             and issubclass(value, torch.optim.Optimizer) and value.__module__ == module.__name__]
    if len(found) != 1:
        raise ExportError(f"{path}: expected one torch.optim.Optimizer class in the module, found {len(found)}")
    return found[0]


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
    # no step-cost measurement here: a user loading a class wants it now
    return _class_from_text(export_source(found.source, class_name, found.evidence, step_cost=False),
                            class_name, found.origin)
