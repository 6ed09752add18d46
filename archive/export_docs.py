"""The docstrings of an exported module and of its optimizer class."""

from __future__ import annotations

import ast
import textwrap

from archive.export_naming import plain_description
from archive.export_sources import EXPORT_MARKER
from sandbox.contract import executable_module


def _update_text(source: str) -> str:
    # the maths: the rule's update function as it runs (helpers are in the module below)
    tree = executable_module(source)
    update = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "update")
    update.body = [s for s in update.body
                   if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return ast.unparse(update)


def module_doc(class_name: str, source: str, doc: str, digest: str, hparams: dict[str, float],
               complex_refusal: str | None, fast: bool, evidence: str = "", step_cost: str = "",
               batched: bool = False) -> str:
    """The module docstring: what the rule does, its maths, evidence, lr advice and step cost."""
    what = "\n".join(textwrap.wrap(" ".join(plain_description(source)), 92))
    about = textwrap.indent(doc.strip(), "    ") if doc.strip() else "    (the program has no docstring)"
    lr = hparams["lr"]
    betas = "beta1" in hparams and "beta2" in hparams
    supports = ["parameter groups", "closures", "state_dict / load_state_dict", "LR schedulers",
                "a Tensor lr", "maximize=True", "torch.compile (opt.step or a whole training step)"]
    if betas:
        supports.insert(0, "betas=(beta1, beta2)")
    supports.append("complex parameters (as torch.view_as_real)" if complex_refusal is None
                    else "no complex parameters (" + complex_refusal + ")")
    supports.append("foreach=None/True: an elementwise fast path with the per-parameter loop's bits" if fast else
                    "same-shaped matrices stepped in one batched call (foreach=True; by default off the CPU)"
                    if batched else "a per-parameter loop (the rule is not elementwise: no fast path)")
    text = f'''{class_name}: {EXPORT_MARKER} (program {digest}).

{what}

The program's own description:

{about}

The maths, exactly as the discovery sandbox ran it (the ops it calls are defined below; `step`
counts from 1; `hp` holds the hyperparameters; the optimizer adds the returned delta to param):

{textwrap.indent(_update_text(source), "    ")}

Usage (with this file saved as my_opt.py):
    from my_opt import {class_name}
    optimizer = {class_name}(model.parameters(), lr={lr!r})
    loss.backward(); optimizer.step(); optimizer.zero_grad()

{textwrap.fill("Supported: " + ", ".join(supports) + ". This file imports only torch.", 96)}
'''
    text += "\n" + (evidence.rstrip() if evidence else
                    f"No campaign measured this program; lr={lr!r} is its own default. Tune lr as you would\n"
                    "AdamW's, starting from it.") + "\n"
    if step_cost:
        text += "\n" + step_cost.rstrip() + "\n"
    return '"""' + text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"') + '"""'


def class_doc(doc: str, source: str, hparams: dict[str, float]) -> str:
    """The class docstring: a first line, then Args in torch.optim's style."""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    if not first or first.lower().startswith(("mutant", "crossover")):
        first = plain_description(source)[0]
    first = textwrap.fill(first, 92, subsequent_indent="    ")
    lines = [first.replace("\\", "\\\\").replace('"""', "'''"), "", "    Args:",
             "        params (iterable): parameters to optimize, or dicts defining parameter groups."]
    lines += [f"        {key} (float{', or a 1-element Tensor' if key == 'lr' else ''}, optional): default {value!r}."
              for key, value in hparams.items()]
    if "beta1" in hparams and "beta2" in hparams:
        lines.append("        betas (Tuple[float, float], optional): sets beta1 and beta2 together.")
    lines += ["        maximize (bool, optional): maximize the objective instead of minimizing it (default False).",
              "        foreach (bool, optional): False forces the per-parameter loop; None or True take the",
              "            elementwise fast path where the rule has one; a rule with matrix products steps",
              "            same-shaped parameters in one batched call off the CPU, and on it with True",
              "            (default None).",
              "    "]
    return "\n".join(lines)
