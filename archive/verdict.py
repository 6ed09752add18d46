"""The campaign's decision about a program, read off its archive record (one place for it)."""

from __future__ import annotations


def verdict(rec) -> str:
    """The campaign's decision about a program in a word or two: ``announced``, ``short-horizon``,
    ``below AdamW`` (confirmed, and below tuned AdamW by more than its seed spread), ``not beyond
    noise`` (confirmed, within its seed spread of AdamW or above it by less), ``baseline`` (a
    confirmed reference), or ``""`` when none was taken. The leaderboard, ``archive`` views, the
    report and exported docstrings all read it here."""
    meta = rec.meta or {}
    if rec.proposer == "reference":
        return "baseline" if rec.confirmed_fitness is not None else ""
    if meta.get("announced"):
        return "announced"
    if meta.get("short_horizon"):
        return "short-horizon"
    if rec.confirmed_fitness is None:
        return ""
    # "Not beyond noise" for a program at 0.65 +/- 0.06 read as if it were a near miss.
    if rec.confirmed_fitness + max(meta.get("confirmed_spread") or 0.0, 0.0) < 1.0:
        return "below AdamW"
    return "not beyond noise"
