"""What a child is (:class:`Mutation`) and what keeps one: sound by the kind analysis, valid
by the contract, and new by its program hash."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from discover.mutation.work import _Work
from sandbox.contract import CandidateError, program_hash, validate


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
