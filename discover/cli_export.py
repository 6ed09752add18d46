"""`discover export`: write a program as a standalone torch.optim optimizer module."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from discover.errors import UserError
from discover.output import write_user_file
from sandbox.contract import CandidateError

console = Console()


def export(
    program: str = typer.Argument(
        ..., metavar="FILE_OR_ID",
        help="a candidate program file, a reference optimizer name (e.g. adamw) or an archived "
             "program (campaign_dir:ID, ID or best)"),
    output: Path = typer.Option(..., "-o", "--output", help="where to write the module, e.g. my_opt.py"),
    class_name: Optional[str] = typer.Option(
        None, "--class-name", help="name of the optimizer class (default: from the program's name)"),
) -> None:
    """Export a program as a standalone torch.optim optimizer (the file imports only torch).

    The module holds the update rule exactly as the sandbox ran it, so the optimizer reproduces the sandbox's numbers; it supports parameter groups, closures, state_dict/load_state_dict and LR schedulers.
    """  # noqa: E501 (one line per paragraph: the help renderer wraps it)
    from archive.export import ExportError, class_name_for, export_source, resolve_source

    try:
        found = resolve_source(program)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    name = class_name or class_name_for(found.name)
    try:
        text = export_source(found.source, name, found.evidence)
    except ExportError as exc:
        raise UserError(str(exc)) from None
    except CandidateError as exc:
        raise UserError(f"{found.origin} is not a valid candidate program ({exc.reason}): {exc}") from None
    if output.suffix != ".py":
        raise UserError(f"{output}: the output must be a .py file so it can be imported")
    write_user_file(output, text, "my_opt.py")
    module = output.stem
    console.print(f"wrote {output} ({name}, from {found.origin})", highlight=False)
    console.print(f"{name} is a torch.optim.Optimizer; use it like one:", highlight=False, markup=False)
    console.print(f"    from {module} import {name}\n"
                  f"    optimizer = {name}(model.parameters())\n"
                  f"    loss.backward(); optimizer.step(); optimizer.zero_grad()",
                  highlight=False, markup=False)
    if found.evidence:
        console.print(f"what {found.origin} measured, and where to start lr: the docstring of {output}",
                      highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
