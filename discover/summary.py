"""Tables shared by the campaign summary and the archive browser."""

from __future__ import annotations

from rich.table import Table

from archive.store import Archive
from archive.timings import TimeBreakdown, time_breakdown, time_line
from archive.verdict import verdict  # noqa: F401 - re-exported: callers read the verdict here too


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
            _verdict_cell(rec),
        )
    return table


_VERDICT_STYLE = {"announced": "bold green", "short-horizon": "yellow"}


def _verdict_cell(rec) -> str:
    if rec.proposer == "reference":
        return "baseline"
    word = verdict(rec)
    style = _VERDICT_STYLE.get(word)
    return f"[{style}]{word}[/]" if style else (word or rec.stage or "-")


def time_summary(archive: Archive, campaign_id: int | None = None) -> tuple[TimeBreakdown, str]:
    """Where a campaign's time went (worker seconds per stage, task and worker, idle worker
    time: :func:`archive.timings.time_breakdown`) and the one line the end-of-campaign summary
    prints for it. ``campaign_id`` None: the archive's latest campaign."""
    if campaign_id is None:
        found = archive.campaigns()
        campaign_id = found[-1].id if found else None
    breakdown = time_breakdown(archive, campaign_id)
    return breakdown, time_line(breakdown)
