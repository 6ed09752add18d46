"""The campaign's decision about a program, read off its archive record (one place for it)."""

from __future__ import annotations


def verdict(rec) -> str:
    """The campaign's decision about a program in a word or two: ``announced``, ``short-horizon``,
    ``not beyond noise`` (confirmed, not announced), ``baseline`` (a confirmed reference), or ``""``
    when none was taken. The leaderboard, ``archive`` views, the report and exported docstrings
    all read it here."""
    meta = rec.meta or {}
    if rec.proposer == "reference":
        return "baseline" if rec.confirmed_fitness is not None else ""
    if meta.get("announced"):
        return "announced"
    if meta.get("short_horizon"):
        return "short-horizon"
    return "not beyond noise" if rec.confirmed_fitness is not None else ""
