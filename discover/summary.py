"""Tables shared by the campaign summary and the archive browser."""

from __future__ import annotations

from rich.table import Table

from archive.store import Archive


def leaderboard(archive: Archive, limit: int = 8) -> Table:
    """Top evaluated programs, with the reference baselines among them for comparison."""
    table = Table(title="Leaderboard (fitness = geometric-mean speed-up to tuned AdamW's validation targets; "
                        "search picks parents, validation decides, test is reported only)", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("program")
    table.add_column("search", justify="right")
    table.add_column("validation", justify="right")
    table.add_column("test", justify="right")
    table.add_column("verdict")
    for rec in archive.best(limit):
        label = f"[dim]{rec.name} (baseline)[/]" if rec.proposer == "reference" else f"{rec.proposer} of " + \
            ",".join(f"#{p}" for p in rec.parent_ids)
        confirmed = rec.confirmed_fitness
        table.add_row(
            str(rec.id), label, f"{rec.fitness:.3f} ± {rec.fitness_spread or 0:.3f}",
            "-" if confirmed is None else f"{confirmed:.3f} ± {rec.meta.get('confirmed_spread') or 0:.3f}",
            "-" if rec.heldout_fitness is None else f"{rec.heldout_fitness:.3f}",
            verdict(rec),
        )
    return table


def verdict(rec) -> str:
    """What the campaign decided about a program, in a word or two."""
    meta = rec.meta or {}
    if rec.proposer == "reference":
        return "baseline"
    if meta.get("announced"):
        return "[bold green]announced[/]"
    if meta.get("short_horizon"):
        return "[yellow]short-horizon[/]"
    if rec.confirmed_fitness is not None:
        return "not beyond noise"
    return rec.stage or "-"
