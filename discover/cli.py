"""The `discover` command line: a thin layer over the Python APIs.

Each command group lives in its own module with a ``register(app)`` function; this file only
assembles them and turns user errors into one clear line and exit code 2 (never a traceback).
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from discover.errors import UserError
from sandbox.contract import CandidateError

app = typer.Typer(
    name="discover",
    help="Discover optimizer update rules: propose, evaluate in a sandbox, archive, report, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

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
