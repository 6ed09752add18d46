"""Prompt templates, kept as plain text files next to this module.

Templates use Python's :class:`string.Template` syntax: ``$name`` (or ``${name}``) is a
placeholder, ``$$`` a literal dollar sign. There is no logic in a template; the caller
computes every value (feedback tables, archive summaries) in Python. :func:`render` fails
loudly when a placeholder has no value, so a renamed field never ships an empty prompt.

Files: ``system`` (role, contract, vocabulary, rules), ``contract`` (the candidate contract,
rendered into ``system``), ``propose`` (a fresh program), ``diff`` (SEARCH/REPLACE edit of one
parent), ``critique`` (TextGrad critic), ``edit`` (apply a critique), ``crossover`` (combine two
parents), ``retry`` (the follow-up when an answer failed to parse or validate).
"""

from __future__ import annotations

from importlib import resources
from string import Template


class PromptError(KeyError):
    """A template is missing or a placeholder got no value."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def template(name: str) -> str:
    """The text of ``prompts/<name>.txt``."""
    path = resources.files(__name__).joinpath(f"{name}.txt")
    if not path.is_file():
        known = sorted(p.name[:-4] for p in resources.files(__name__).iterdir() if p.name.endswith(".txt"))
        raise PromptError(f"no prompt template {name!r}; known: {', '.join(known)}")
    return path.read_text(encoding="utf-8")


def placeholders(name: str) -> set[str]:
    """The ``$placeholders`` template ``name`` needs."""
    found = set()
    for match in Template.pattern.finditer(template(name)):
        key = match.group("named") or match.group("braced")
        if key:
            found.add(key)
    return found


def render(name: str, **values: object) -> str:
    """Template ``name`` with every ``$placeholder`` filled from ``values``.

    Raises :class:`PromptError` naming each placeholder without a value, and each value the
    template has no placeholder for (information the caller believes it sends, but the model
    would never see).
    """
    wanted = placeholders(name)
    missing = sorted(wanted - set(values))
    if missing:
        raise PromptError(
            f"prompt {name!r} needs a value for {', '.join('$' + m for m in missing)} "
            f"(given: {', '.join(sorted(values)) or 'nothing'})")
    unused = sorted(set(values) - wanted)
    if unused:
        raise PromptError(
            f"prompt {name!r} has no placeholder for {', '.join(unused)} "
            f"(prompts/{name}.txt uses: {', '.join('$' + w for w in sorted(wanted)) or 'none'})")
    try:
        return Template(template(name)).substitute({k: str(v) for k, v in values.items()})
    except ValueError as exc:  # a stray `$` in the template text
        raise PromptError(f"prompt {name!r} has a malformed placeholder ({exc}); write a literal $ as $$") from None
