"""Find campaigns and name archived programs: ``campaigns/run-1:42``, ``42``, ``best``.

Campaigns live in ``campaigns/<name>-<timestamp>/`` (each with its ``archive.db``), and the
campaign runner keeps a ``campaigns/latest`` symlink to the newest. Commands that take no
campaign use :func:`default_campaign_dir`: ``campaigns/latest`` when it exists, else the
campaign directory whose archive was written last.

A program reference is ``DIR:ID`` (a campaign directory or ``.db`` file, a colon, an id) or a
bare ``ID`` in the default campaign; ``ID`` may be ``best`` for the campaign's winner (the best
fitness confirmed on fresh seeds, see :meth:`archive.store.Archive.winner`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archive.store import DB_FILENAME, Archive, ArchiveError, ProgramRecord, db_path, open_archive

CAMPAIGNS_ROOT = Path("campaigns")
LATEST_LINK = "latest"
BEST = "best"


def campaign_dirs(root: str | Path = CAMPAIGNS_ROOT) -> list[Path]:
    """Campaign directories (those holding an ``archive.db``) directly under ``root``, by name;
    the ``latest`` link is left out so no campaign is listed twice."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir()
                  if p.name != LATEST_LINK and p.is_dir() and (p / DB_FILENAME).is_file())


def default_campaign_dir(root: str | Path = CAMPAIGNS_ROOT) -> Path:
    """``<root>/latest`` if it exists, else the campaign under ``root`` written most recently."""
    root = Path(root).expanduser()
    latest = root / LATEST_LINK
    if latest.exists():
        return latest
    found = campaign_dirs(root)
    if not found:
        raise ArchiveError(f"no campaign found under {root}/ (run `discover run` first, or name one with --db DIR)")
    return max(found, key=lambda p: (last_write_time(p), p.name))


def last_write_time(campaign: Path) -> float:
    """When the campaign's archive last changed (its WAL file counts)."""
    files = [campaign / DB_FILENAME, campaign / f"{DB_FILENAME}-wal"]
    return max(f.stat().st_mtime for f in files if f.exists())


@dataclass(frozen=True)
class ResolvedProgram:
    """An archived program found by reference."""

    campaign_dir: Path
    program_id: int
    source: str
    name: str | None


def parse_program_ref(ref: str, default_dir: str | Path | None = None) -> tuple[Path, str]:
    """Split ``DIR:ID`` (or a bare ``ID``) into a campaign path and the id text."""
    ref = ref.strip()
    location, sep, ident = ref.rpartition(":")
    if not sep:
        location, ident = "", ref
    ident = ident.strip()
    if not (ident.isdigit() or ident == BEST):
        raise ArchiveError(f"{ref!r} is not a program reference: expected DIR:ID, ID or best (e.g. campaigns/latest:12)")
    if location:
        return Path(location).expanduser(), ident
    return (Path(default_dir) if default_dir is not None else default_campaign_dir()), ident


def find_program(archive: Archive, ident: str) -> ProgramRecord:
    """The program ``ident`` (an id, or ``best``: :meth:`Archive.winner`) names in ``archive``."""
    if ident != BEST:
        return archive.program(int(ident))
    winner = archive.winner()
    if winner is None:
        raise ArchiveError(f"campaign {archive.path.parent} has no evaluated program yet")
    return winner


def resolve_program(ref: str, default_dir: str | Path | None = None) -> ResolvedProgram:
    """The source of the program ``ref`` names; :class:`ArchiveError` when there is none."""
    location, ident = parse_program_ref(ref, default_dir)
    with open_archive(location, readonly=True) as archive:
        record = find_program(archive, ident)
    campaign = db_path(location).parent
    return ResolvedProgram(campaign_dir=campaign, program_id=record.id, source=record.code,
                           name=record.name or f"{campaign.name}:{record.id}")
