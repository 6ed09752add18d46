"""Tables shared by the campaign summary and the archive browser."""

from __future__ import annotations

from rich.table import Table

from archive.store import Archive


def leaderboard(archive: Archive, limit: int = 8) -> Table:
    """Top evaluated programs, with the reference baselines among them for comparison."""
    table = Table(title="Leaderboard (fitness = geometric-mean speed-up over tuned AdamW)", title_justify="left")
    table.add_column("id", justify="right")
    table.add_column("program")
    table.add_column("fitness", justify="right")
    table.add_column("fresh seeds", justify="right")
    table.add_column("held-out", justify="right")
    table.add_column("stage")
    for rec in archive.best(limit):
        label = f"[dim]{rec.name} (baseline)[/]" if rec.proposer == "reference" else f"{rec.proposer} of " + \
            ",".join(f"#{p}" for p in rec.parent_ids)
        confirmed = rec.confirmed_fitness
        table.add_row(
            str(rec.id), label, f"{rec.fitness:.3f} ± {rec.fitness_spread or 0:.3f}",
            "-" if confirmed is None else f"{confirmed:.3f}",
            "-" if rec.heldout_fitness is None else f"{rec.heldout_fitness:.3f}",
            rec.stage or "-",
        )
    return table
