"""`discover report`: write one self-contained HTML page about a campaign."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from archive.resolve import CAMPAIGNS_ROOT, LATEST_LINK
from discover.errors import UserError


def report(
    campaign_dir: Optional[Path] = typer.Argument(
        None, metavar="CAMPAIGN_DIR", show_default=False,
        help=f"the campaign directory (default: {CAMPAIGNS_ROOT / LATEST_LINK})"),
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="where to write the HTML page"),
    run_cache: Optional[Path] = typer.Option(
        None, "--run-cache", metavar="FILE", show_default=False,
        help="the run cache (runs.sqlite) the campaign wrote, for LR sensitivity and baseline curves "
             "(default: $DISCOVER_CACHE_DIR/runs.sqlite or ~/.cache/optimizer-discovery/runs.sqlite)"),
) -> None:
    """Write an HTML report of a campaign: progress, a sortable leaderboard, loss curves against the baselines, LR sensitivity, performance profile, the population's family tree, the winner's lineage and code.

    The page is one file with everything inline (it opens offline). The archive and the run cache are only read, so a report can be made while the campaign is still running.
    """  # noqa: E501  (one line per paragraph: the --help text reflows it to the terminal)
    from discover.report import write_report

    directory = campaign_dir if campaign_dir is not None else CAMPAIGNS_ROOT / LATEST_LINK
    if run_cache is not None and not run_cache.is_file():
        raise UserError(f"no run cache at {run_cache} (it is the runs.sqlite file a campaign writes)")
    path = write_report(directory, output, run_cache=run_cache)
    size = path.stat().st_size
    Console(highlight=False).print(f"wrote {path} ({size / 1024:.0f} KiB) from {directory}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
