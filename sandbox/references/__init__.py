"""Reference optimizers written as candidate programs, one file each.

They are data, not modules of this package: each file is read as text and loaded through the
candidate contract, exactly like a proposal from the LLM.
"""

from __future__ import annotations

import ast
from importlib import resources

from sandbox.contract import Program, load_program, parse_ast


def reference_names() -> list[str]:
    """Names of the shipped reference programs (file stems), sorted."""
    root = resources.files(__name__)
    return sorted(p.name[:-3] for p in root.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))


def reference_source(name: str) -> str:
    """Source text of reference ``name``; ``KeyError`` if there is none."""
    if name not in reference_names():
        raise KeyError(f"no reference optimizer {name!r}; known: {', '.join(reference_names())}")
    return resources.files(__name__).joinpath(f"{name}.py").read_text(encoding="utf-8")


def load_reference(name: str) -> Program:
    """The reference ``name`` loaded as a :class:`Program`."""
    return load_program(reference_source(name), name=name)


def with_hparams(source: str, overrides: dict[str, float]) -> str:
    """``source`` with some HPARAMS values replaced (the dict literal is rewritten in place);
    ``KeyError`` for a name HPARAMS does not declare."""
    tree = parse_ast(source)  # not ast.parse: evaluation threads call this (see parse_ast)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "HPARAMS" for t in node.targets):
            values = ast.literal_eval(node.value)
            unknown = set(overrides) - set(values)
            if unknown:
                raise KeyError(f"HPARAMS has no {sorted(unknown)}")
            values.update(overrides)
            lines = source.splitlines(keepends=True)
            start, end = node.lineno - 1, node.end_lineno
            return "".join(lines[:start]) + f"HPARAMS = {values!r}\n" + "".join(lines[end:])
    raise KeyError("no HPARAMS assignment")
