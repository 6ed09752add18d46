"""De-duplication: do not evaluate a program the archive already knows.

Two tests, cheapest first:

- **exact**: the normalised-AST hash (:func:`sandbox.contract.program_hash`): formatting,
  comments, docstrings, local and helper names and the order of definitions do not matter.
- **behavioural**: the program's *fingerprint*, its ``update`` outputs on fixed probe tensors
  (a flat list of floats computed by the sandbox worker's ``probe_job``; candidate code never
  runs here), equals an archived fingerprint within tolerance. This catches rewrites the hash
  cannot see: ``a*b`` vs ``b*a``, ``x/2`` vs ``x*0.5``, ``interp`` expanded into arithmetic.

Fingerprints are compared in float64 with a symmetric tolerance (:data:`RTOL`, :data:`ATOL`),
``|a - b| <= atol + rtol * max(|a|, |b|)`` entry by entry, and only between fingerprints of the
same length. A fingerprint holding NaN or inf never matches (a diverging probe says nothing
about behaviour).

Lookup without rounding buckets (so no value can fall on the wrong side of a boundary): the
archive indexes each fingerprint's length and L1 norm, and entry-wise closeness implies
``|L1(a) - L1(b)| <= n * atol + rtol * (L1(a) + L1(b))``, so an indexed range query on the norm
(:func:`l1_bounds`) finds every possible match; the few candidates are then compared exactly,
in one vectorised pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Literal, Sequence

import math

import numpy as np

from archive.store import source_hash

if TYPE_CHECKING:
    from archive.store import Archive

RTOL = 2e-5
"""Relative tolerance. The probe rounds to 6 significant digits, so true twins whose float noise
straddles a rounding boundary differ by one unit in the 6th digit (up to 1e-5 relative)."""
ATOL = 1e-7
"""Absolute tolerance, for entries at or near zero."""

DuplicateKind = Literal["exact", "behavioural"]


def l1_norm(fingerprint: Sequence[float]) -> float | None:
    """The L1 norm the archive indexes, or None for an empty or non-finite fingerprint."""
    if len(fingerprint) == 0 or not all(math.isfinite(x) for x in fingerprint):
        return None
    return math.fsum(abs(float(x)) for x in fingerprint)


def l1_bounds(l1: float, size: int, rtol: float = RTOL, atol: float = ATOL) -> tuple[float, float]:
    """The range of L1 norms a fingerprint matching one of norm ``l1`` (and ``size`` entries)
    can have; widened a little for the rounding of the sums themselves."""
    slack = 1e-9 * (l1 + size * atol) + 1e-300
    low = (l1 * (1 - rtol) - size * atol) / (1 + rtol) - slack
    high = (l1 * (1 + rtol) + size * atol) / (1 - rtol) + slack
    return low, high


def fingerprints_match(a: Sequence[float], b: Sequence[float], rtol: float = RTOL, atol: float = ATOL) -> bool:
    """Whether two fingerprints are equal within tolerance (NaN and inf never match)."""
    return first_match(a, [(0, b)], rtol=rtol, atol=atol) is not None


def first_match(fingerprint: Sequence[float], candidates: Iterable[tuple[int, Sequence[float]]],
                rtol: float = RTOL, atol: float = ATOL) -> int | None:
    """The first id in ``candidates`` (``(id, fingerprint)`` pairs) whose fingerprint matches."""
    query = np.asarray(fingerprint, dtype=np.float64).ravel()
    if query.size == 0 or not np.all(np.isfinite(query)):
        return None
    ids = []
    rows = []
    for candidate_id, values in candidates:
        if len(values) == query.size:
            ids.append(candidate_id)
            rows.append(values)
    if not rows:
        return None
    stored = np.asarray(rows, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bound = atol + rtol * np.maximum(np.abs(stored), np.abs(query))
        close = np.all(np.abs(stored - query) <= bound, axis=1)  # NaN/inf rows compare False
    hits = np.flatnonzero(close)
    return ids[int(hits[0])] if hits.size else None


def find_duplicate(archive: Archive, source: str, fingerprint: Sequence[float] | None = None,
                   rtol: float = RTOL, atol: float = ATOL,
                   exclude_id: int | None = None) -> tuple[DuplicateKind, int] | None:
    """``("exact", id)`` or ``("behavioural", id)`` of the archived original that ``source``
    duplicates, or None. ``fingerprint`` (from the sandbox's probe) enables the behavioural test;
    ``exclude_id`` skips the candidate's own row when it is already stored."""
    original = archive.find_by_hash(source_hash(source), exclude_id=exclude_id)
    if original is not None:
        return "exact", original.id
    if fingerprint is not None:
        original = archive.find_by_fingerprint(fingerprint, rtol=rtol, atol=atol, exclude_id=exclude_id)
        if original is not None:
            return "behavioural", original.id
    return None
