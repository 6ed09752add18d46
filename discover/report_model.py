"""The report's view model: the rows and figures the page template shows, and small formatting
helpers shared by the report's modules."""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from markupsafe import Markup

from archive.store import ProgramRecord
from discover.report_code import DiffLine
from sandbox.evaluate import BASELINES

@dataclass
class TaskRow:
    """One program on one task, as the per-task tables show it."""

    suite: str
    task: str
    score: float | None
    vs: dict[str, float | None]
    best_lr: float | None
    lr_at_edge: bool
    final_loss: float | None
    test_metric: float | None
    status: str
    message: str


@dataclass
class ProgramRow:
    """One leaderboard row."""

    id: int
    label: str
    origin: str
    is_baseline: bool
    is_winner: bool
    stage: str
    fitness: float | None
    spread: float | None
    confirmed: float | None
    confirmed_spread: float | None
    confirm_seeds: list[int]
    heldout: float | None
    heldout_spread: float | None
    heldout_note: str
    tasks: list[TaskRow]
    color: str | None = None
    verdict: str = ""


@dataclass
class LineageStep:
    """One program on the way to the winner, with what changed from its first parent."""

    id: int
    label: str
    proposer: str
    parent_ids: list[int]
    fitness: float | None
    parent_fitness: float | None
    edits: list[str]
    critique: str | None
    diff: list[DiffLine]


@dataclass
class TreeNode:
    """One program in the lineage tree; ``parents`` are its parents' trees."""

    id: int
    name: str | None
    origin: str
    fitness: float | None
    repeated: bool
    missing: list[int]
    parents: list[TreeNode] = field(default_factory=list)


@dataclass
class Figure:
    """An inline SVG figure, or the reason it could not be drawn."""

    svg: Markup | None
    error: str | None = None


# --- helpers ------------------------------------------------------------------------------


def _label(rec: ProgramRecord) -> str:
    if rec.proposer == "reference":
        return rec.name or f"#{rec.id}"
    return f"#{rec.id}"


def _origin(rec: ProgramRecord) -> str:
    if rec.proposer == "reference":
        return "baseline" if rec.name in BASELINES else "reference"
    parents = ", ".join(f"#{p}" for p in rec.parent_ids)
    return f"{rec.proposer} of {parents}" if parents else rec.proposer


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _when(text: str | None) -> str | None:
    """An archive timestamp as a person reads it: ``2026-11-24 06:49:34 UTC``."""
    value = _parse_time(text)
    return None if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


def _num(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _figure(draw: Callable[..., str], *args: Any, **kwargs: Any) -> Figure:
    """Draw a figure; a drawing error becomes a note on the page instead of a crash."""
    try:
        return Figure(Markup(draw(*args, **kwargs)))
    except Exception as exc:  # noqa: BLE001  (a report shows what it can)
        return Figure(None, f"{type(exc).__name__}: {exc}")


def _display_dir(directory: Path) -> str:
    """The campaign directory as a user would type it: resolved (``latest`` moves on), relative
    to the working directory when inside it."""
    resolved = directory.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def export_command(directory: Path, program_id: int) -> str:
    """The exact command that exports program ``program_id`` of the campaign in ``directory``."""
    return f"discover export {shlex.quote(f'{_display_dir(directory)}:{program_id}')} -o my_optimizer.py"
