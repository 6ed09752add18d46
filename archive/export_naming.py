"""A class name and a plain-language account of what a rule does, read from its code.

A discovered program's docstring is often an edit log ("Mutant: HPARAMS: beta1 0.8 -> 0.59;
...") and its archive name an id, neither of which tells a user what the optimizer is. The
exporter names the class from the docstring when it starts with a name (``"AdamW: Adam with
decoupled weight decay."``) and otherwise from the rule's ingredients (Newton-Schulz, clipping,
normalisation, an Adam-style second moment, a sign, momentum): ``NewtonSchulzAdam``.
"""

from __future__ import annotations

import ast
import re

from sandbox.contract import executable_module, load_program

_REFERENCE_CLASS_NAMES = {
    "adadelta": "Adadelta", "adagrad": "Adagrad", "adam": "Adam", "adamw": "AdamW", "ademamix": "AdEMAMix",
    "amsgrad": "AMSGrad", "lion": "Lion", "muon": "Muon", "nadam": "NAdam", "nesterov": "Nesterov",
    "rmsprop": "RMSprop", "sgd": "SGD", "sgd_momentum": "SGDMomentum", "signsgd": "SignSGD", "signum": "Signum",
}
_EDIT_LOG_WORDS = ("mutant", "crossover", "child", "offspring", "program", "candidate")


def class_name_for(name: str) -> str:
    """A class name from a program name: ``adamw`` -> ``AdamW``, ``my_rule`` -> ``MyRule``."""
    if name in _REFERENCE_CLASS_NAMES:
        return _REFERENCE_CLASS_NAMES[name]
    parts = [p for p in re.split(r"[^0-9A-Za-z]+", name) if p]
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    if not camel or not camel[0].isalpha():
        camel = "Optimizer" + camel
    return camel


def _features(source: str) -> dict[str, bool]:
    program = load_program(source)
    ops = program.ops_used
    tree = executable_module(source)
    init = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "init")
    state_keys = {k.value for node in ast.walk(init) if isinstance(node, ast.Dict)
                  for k in node.keys if isinstance(k, ast.Constant)}
    text = ast.unparse(tree)
    return {
        "newton_schulz": "newton_schulz" in ops,
        "clipped": "clamp" in ops,
        "normalized": bool(ops & {"rms", "norm"}),
        "squashed": bool(ops & {"tanh", "sigmoid"}),
        "second_moment": bool(ops & {"sqrt", "rsqrt"}) and len(state_keys) >= 2,
        "sign": "sign" in ops,
        "momentum": bool(state_keys),
        "weight_decay": "weight_decay" in program.hparams and "param" in text,
        "coupled_decay": _decay_feeds_moments(tree),
    }


def _decay_feeds_moments(tree: ast.Module) -> bool:
    # `g = grad + hp.weight_decay * param`, then `m = interp(g, ...)` returned as state: L2-style
    # decay through the running averages, rather than AdamW's decoupled shrinking
    update = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "update")
    decayed = {t.id for node in ast.walk(update) if isinstance(node, ast.Assign)
               and any(isinstance(a, ast.Attribute) and a.attr == "weight_decay" for a in ast.walk(node.value))
               for t in node.targets if isinstance(t, ast.Name)}
    returned = update.body[-1]
    state_names = {n.id for node in ast.walk(returned) if isinstance(node, ast.Dict)
                   for v in node.values for n in ast.walk(v) if isinstance(n, ast.Name)}
    return any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in state_names for t in node.targets)
               and any(isinstance(n, ast.Name) and n.id in decayed for n in ast.walk(node.value))
               for node in ast.walk(update))


def descriptive_name(source: str, doc: str) -> str:
    """A name for the rule's class: the word before the colon of a docstring that starts with
    one ("Lion: evolved sign momentum"), else one built from the rule's ingredients."""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    match = re.match(r"^([A-Za-z][A-Za-z0-9_-]{1,40}):\s", first)
    if match and match.group(1).lower() not in _EDIT_LOG_WORDS:
        return match.group(1)
    f = _features(source)
    prefix = "NewtonSchulz" * f["newton_schulz"] + "Clipped" * f["clipped"] + "Normalized" * f["normalized"]
    if f["second_moment"]:
        base = "Adam"
    elif f["sign"]:
        base = "SignMomentum" if f["momentum"] else "SignSGD"
    else:
        base = "Momentum" if f["momentum"] else "SGD"
    return prefix + base


def plain_description(source: str) -> list[str]:
    """What the rule does, one plain sentence per ingredient (read from the code, not claimed)."""
    f = _features(source)
    lines = []
    if f["clipped"] or f["normalized"]:
        done = [w for w, on in (("clips the gradient", f["clipped"]),
                                ("rescales the gradient by an RMS or norm", f["normalized"])) if on]
        lines.append("It " + " and ".join(done) + " before using it.")
    if f["newton_schulz"]:
        lines.append("It orthogonalises 2-D gradients (or momenta) with Newton-Schulz iterations, as Muon does; "
                     "each step then costs several matrix products per weight matrix.")
    if f["second_moment"]:
        lines.append("It keeps running averages of the gradient and of its square, and steps along the first "
                     "divided by the square root of the second, as Adam does.")
    elif f["sign"]:
        lines.append("It steps along the sign of " + ("a momentum" if f["momentum"] else "the gradient")
                     + ", so every coordinate moves by the learning rate.")
    elif f["momentum"]:
        lines.append("It keeps a momentum (running average) of the gradient and steps along it.")
    else:
        lines.append("It steps along the (transformed) gradient, with no state.")
    if f["squashed"]:
        lines.append("It squashes some quantities with tanh or sigmoid.")
    if f["weight_decay"] and f["coupled_decay"]:
        lines.append("weight_decay adds weight_decay * param to the gradient before its running averages "
                     "(L2-style decay, as Adam's weight_decay).")
    elif f["weight_decay"]:
        lines.append("weight_decay shrinks the parameters directly (decoupled weight decay, as AdamW's).")
    return lines
