"""Where programs to export come from: a candidate file, a reference name or an archived program.

:func:`resolve_source` tries a small registry of resolvers in order; an archived program also
carries what its campaign measured (:func:`campaign_evidence`), for the exported docstring.
"""

from __future__ import annotations

import ast
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from archive.resolve import parse_program_ref, resolve_program
from archive.store import ArchiveError, open_archive
from archive.verdict import verdict
from archive.export_naming import descriptive_name
from sandbox.contract import CandidateError, first_doc_line, parse_ast
from sandbox.references import reference_names, reference_source

EXPORT_MARKER = "a torch.optim optimizer exported by optimizer-discovery"
"""The first line of every exported module's docstring carries this; it is how one is recognised."""


class ExportError(ValueError):
    """A program cannot be found or exported as asked (unknown id, unreadable file, bad name)."""


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
    # an archived program may carry a name of its own; otherwise name the class by what the
    # rule does (its id says nothing to a user: "Program483")
    name = found.name if found.name and ":" not in found.name else _name_from_rule(found.source, found.program_id)
    return ResolvedSource(source=found.source, name=name, origin=f"{found.campaign_dir}:{found.program_id}",
                          evidence=campaign_evidence(found.campaign_dir, found.program_id))


def _name_from_rule(source: str, program_id: int) -> str:
    # an archive also holds programs that fail the contract: those keep their id as a name and
    # fail later, where the contract is checked, with the contract's message
    try:
        return descriptive_name(source, ast.get_docstring(parse_ast(source)) or "")
    except (CandidateError, SyntaxError, ValueError, RecursionError, MemoryError):
        return f"program_{program_id}"


def campaign_evidence(campaign_dir: Path, program_id: int) -> str:
    """What the campaign measured for a program, for the exported module's docstring: its
    fitness on the search, validation and test tiers, the campaign's verdict, and each task's
    tuned learning rate beside tuned AdamW's (so a user knows where to start ``lr``). Empty for
    a program that was never scored."""
    with open_archive(campaign_dir, readonly=True) as store:
        record = store.program(program_id)
        adamw = next((r for r in store.programs(status="evaluated")
                      if r.proposer == "reference" and r.name == "adamw"), None)
    if record.status != "evaluated" or record.fitness is None:
        return ""
    meta = record.meta or {}
    lines = [f"Measured in campaign {Path(campaign_dir).resolve().name}, program #{program_id}",
             "(fitness: geometric-mean speed-up to tuned AdamW's validation targets; 1.0 = as fast):",
             f"    search tier      {record.fitness:.3f} ± {record.fitness_spread or 0:.3f}"
             " (the workloads the search selected parents on)"]
    if record.confirmed_fitness is not None:
        lines.append(f"    validation tier  {record.confirmed_fitness:.3f} ± {meta.get('confirmed_spread') or 0:.3f}"
                     " (unseen variants, fresh seeds: decides what is announced)")
    if record.heldout_fitness is not None:
        lines.append(f"    test tier        {record.heldout_fitness:.3f} ± {meta.get('heldout_spread') or 0:.3f}"
                     " (tasks and variants no decision read)")
    word = verdict(record)
    if word:
        lines.append(f"    verdict          {word}" + (" (beats tuned AdamW on the validation tier beyond seed"
                                                        " noise, and at 3x the steps)" if word == "announced" else ""))
    rows = []
    for suite, own, base in (
            ("search", record.scores, adamw.scores if adamw else None),
            ("test", meta.get("heldout_scores"), adamw.meta.get("heldout_scores") if adamw else None)):
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
