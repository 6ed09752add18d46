"""`discover report`: write one self-contained HTML page about a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from archive.resolve import CAMPAIGNS_ROOT, LATEST_LINK


def report(
    campaign_dir: Optional[Path] = typer.Argument(
        None, metavar="CAMPAIGN_DIR", show_default=False,
        help=f"the campaign directory (default: {CAMPAIGNS_ROOT / LATEST_LINK})"),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="where to write the HTML page"),
) -> None:
    """Write an HTML report of a campaign: progress, leaderboard, loss curves, performance profile, the winner's lineage and code.

    The page is one file with everything inline (it opens offline). The archive is only read, so a report can be made while the campaign is still running.
    """  # noqa: E501  (one line per paragraph: the --help text reflows it to the terminal)
    from discover.report import write_report

    directory = campaign_dir if campaign_dir is not None else CAMPAIGNS_ROOT / LATEST_LINK
    path = write_report(directory, output)
    size = path.stat().st_size
    Console(highlight=False).print(f"wrote {path} ({size / 1024:.0f} KiB) from {directory}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
