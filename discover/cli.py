"""The `discover` command line: a thin layer over the Python APIs.

Each command group lives in its own module with a ``register(app)`` function; this file only
assembles them and turns user errors into one clear line and exit code 2 (never a traceback).
"""

from __future__ import annotations

import importlib
import sys

import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.markup import escape

from discover.errors import UserError
from sandbox.contract import CandidateError

COMMAND_ORDER = ("run", "campaigns", "archive", "report", "export", "eval", "tasks", "baselines", "llm-check",
                 "grammar")
"""`discover --help` lists commands in the order a user meets them: run a campaign, find and browse
it, report and export, then scoring outside a campaign, then the LLM and grammar helpers."""


class _OrderedGroup(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), names.index(name)))


def _hide_flag_types() -> None:
    """Typer's rich help prints a flag as ``--json <bool>``, though a flag takes no value; show
    it bare, as click does. The type column of every other option is unchanged."""
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_discover_patched", False):
        return  # a typer without this hook prints flags its own way

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_bool_flag", False) else shown(self, ctx)

    display_type_rich._discover_patched = True
    TyperOption.display_type_rich = display_type_rich


_hide_flag_types()

app = typer.Typer(
    name="discover",
    cls=_OrderedGroup,
    rich_markup_mode="markdown",  # joins a docstring's wrapped lines (rich mode keeps every line break)
    help="Discover optimizer update rules: propose, evaluate in a sandbox, archive, report, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from discover import __version__

        typer.echo(f"discover (optimizer-discovery) {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Discover optimizer update rules: propose, evaluate in a sandbox, archive, report, export."""

COMMAND_MODULES = (
    "discover.cli_export",
    "discover.cli_eval",
    "discover.cli_run",
    "discover.cli_archive",
    "discover.cli_report",
    "discover.cli_grammar",
)

for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)

err_console = Console(stderr=True)


def main() -> None:
    """Console-script entry point."""
    try:
        app(standalone_mode=True)
    except (UserError, CandidateError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
